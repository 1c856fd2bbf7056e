"""RESP, the Redis serialization protocol (RESP2, and RESP3 after ``HELLO 3``): parsers
and encoders, without any I/O.

What this module guarantees:

1. :class:`RequestParser` (the server's side) accepts what Redis accepts from clients: an
   array of bulk strings (``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nx\\r\\n``) or an inline
   command line (``PING\\r\\n``). Every length is validated **before** anything is sized
   by it: an array longer than ``max_args``, a bulk string longer than ``max_bulk``, a
   command whose bulk strings add up to more than ``max_request`` bytes, a length with a
   sign, spaces or more than 10 digits, or an inline line longer than ``max_inline`` is a
   :class:`ProtocolError` as soon as its header has arrived. The parser never buffers more
   than one command's declared size (plus one network read) of unparsed input.
2. :class:`ReplyParser` (the client's side) reads every RESP2 and RESP3 type. Error
   replies come back as :class:`ReplyError` values (not raised: an error can be an element
   of an array), RESP3 pushes as :class:`Push` lists. A reply that is a RESP3 boolean
   comes back as ``1``/``0``, as RESP2 sends it: ``False`` is ``gets()``'s "no complete
   reply" sentinel, so a ``#f`` reply must never be ``False`` (a boolean inside an array
   or map stays a ``bool``). :func:`reply_parser` picks the C parser of ``hiredis`` when
   it is installed.
3. The encoders write RESP2 or RESP3 (``proto``) for plain Python values: ``None``,
   ``bool``, ``int``, ``float``, ``str``/``bytes`` (bulk), ``list``/``tuple`` (array),
   ``dict`` (RESP3 map, flat array in RESP2), :class:`Simple`, :class:`ReplyError`.
   Error and simple-string text never contains CR or LF (they are replaced by spaces).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from octopus.errors import OctopusError

__all__ = [
    "ProtocolError",
    "Push",
    "ReplyError",
    "ReplyParser",
    "RequestParser",
    "Simple",
    "encode",
    "encode_command",
    "encode_error",
    "reply_parser",
]

CRLF = b"\r\n"
_MAX_DIGITS = 10             # lengths above 9,999,999,999 are refused without int()
_MAX_REPLY_DEPTH = 64        # nesting limit for replies (a server bug must not recurse forever)


class ProtocolError(OctopusError):
    """Raised when bytes on the wire are not valid RESP (or exceed a configured limit)."""


class Simple(str):
    """A RESP simple string (``+OK``)."""

    __slots__ = ()


class ReplyError(str):
    """A RESP error reply: ``code`` is its first word (``ERR``, ``NotFound``, ...)."""

    __slots__ = ()

    @property
    def code(self) -> str:
        return self.split(" ", 1)[0]

    @property
    def message(self) -> str:
        parts = self.split(" ", 1)
        return parts[1] if len(parts) > 1 else ""


class Push(list[Any]):
    """A RESP3 push frame (``>``): an out-of-band event, not the reply to a command."""

    __slots__ = ()


# --- the server's parser ---------------------------------------------------------------


class RequestParser:
    """Split a client's byte stream into commands (lists of ``bytes``).

    ``feed(data)`` then ``commands()``; the latter returns every complete command and
    keeps the incomplete rest. After a :class:`ProtocolError` the stream cannot be
    resynchronised: the connection must be closed (as Redis does).
    """

    def __init__(self, *, max_args: int = 65536, max_bulk: int = 1 << 20,
                 max_request: int = 4 << 20, max_inline: int = 64 << 10) -> None:
        self.max_args = max_args
        self.max_bulk = max_bulk
        self.max_request = max_request
        self.max_inline = max_inline
        # A read that holds whole commands is parsed where it lies (``_data`` from
        # ``_pos``): the arguments are slices of it, nothing else is copied. Only the
        # bytes of a command that arrives in several reads gather in ``_buf``, and are
        # copied once more when it is complete.
        self._data = b""
        self._pos = 0
        self._buf = bytearray()
        self._need = 0               # bytes that must be buffered before parsing again
        self._wanted = 0

    def set_limits(self, *, max_args: int, max_bulk: int, max_inline: int | None = None) -> None:
        self.max_args = max_args
        self.max_bulk = max_bulk
        if max_inline is not None:
            self.max_inline = max_inline

    @property
    def buffered(self) -> int:
        return len(self._buf) + len(self._data) - self._pos

    def feed(self, data: bytes) -> None:
        if not self._buf and self._pos == len(self._data):
            self._data = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        if not self._buf:            # the start of a command: keep it with what follows
            self._buf += memoryview(self._data)[self._pos:]
        self._data = b""
        self._pos = 0
        self._buf += data

    def commands(self, limit: int = 1 << 30) -> list[list[bytes]]:
        """Every complete command buffered (at most ``limit``); raises ProtocolError."""
        buf = self._buf
        if buf:
            if len(buf) < self._need:    # a long argument is still arriving: do not copy
                return []
            self._data = bytes(buf)      # the command is complete: one copy
            self._pos = 0
            buf.clear()
        self._need = 0
        data = self._data
        out: list[list[bytes]] = []
        pos = self._pos
        start = pos
        size = len(data)
        try:
            while pos < size and len(out) < limit:
                if data[pos] == 0x2A:  # '*'
                    parsed = self._multibulk(data, pos, size)
                else:
                    parsed = self._inline(data, pos, size)
                if parsed is None:
                    self._need = self._wanted - pos if self._wanted else 0
                    self._wanted = 0
                    break
                args, pos = parsed
                if args:
                    out.append(args)
        finally:
            if pos == size:
                self._data = b""
                self._pos = 0
            elif pos != start:
                self._pos = pos
        return out

    def _multibulk(self, data: bytes, pos: int, size: int
                   ) -> tuple[list[bytes], int] | None:
        # The hot path of the server: kept inline, one find per header.
        eol = data.find(b"\r\n", pos, pos + 3 + _MAX_DIGITS)
        if eol < 0:
            if size - pos >= 3 + _MAX_DIGITS:
                raise ProtocolError("invalid multibulk length")
            return None
        digits = data[pos + 1:eol]
        if not digits or not digits.isdigit():
            raise ProtocolError(f"invalid multibulk length {digits[:20]!r}")
        count = int(digits)
        if count > self.max_args:
            raise ProtocolError(f"invalid multibulk length {count} (limit {self.max_args})")
        pos = eol + 2
        args: list[bytes] = []
        total = 0
        max_bulk = self.max_bulk
        max_request = self.max_request
        for _ in range(count):
            if pos >= size:
                return None
            if data[pos] != 0x24:  # '$'
                raise ProtocolError(f"expected '$', got {chr(data[pos])!r}")
            eol = data.find(b"\r\n", pos, pos + 3 + _MAX_DIGITS)
            if eol < 0:
                if size - pos >= 3 + _MAX_DIGITS:
                    raise ProtocolError("invalid bulk length")
                return None
            digits = data[pos + 1:eol]
            if not digits or not digits.isdigit():
                raise ProtocolError(f"invalid bulk length {digits[:20]!r}")
            n = int(digits)
            if n > max_bulk:
                raise ProtocolError(f"invalid bulk length {n} (limit {max_bulk})")
            total += n
            if total > max_request:
                raise ProtocolError(f"request larger than {max_request} bytes")
            start = eol + 2
            end = start + n
            if end + 2 > size:
                self._wanted = end + 2
                return None
            if data[end:end + 2] != b"\r\n":
                raise ProtocolError("bulk string not terminated by CRLF")
            args.append(data[start:end])
            pos = end + 2
        return args, pos

    def _inline(self, data: bytes, pos: int, size: int) -> tuple[list[bytes], int] | None:
        eol = data.find(b"\n", pos, pos + self.max_inline + 1)
        if eol < 0:
            if size - pos > self.max_inline:
                raise ProtocolError(f"inline request longer than {self.max_inline} bytes")
            return None
        line = data[pos:eol].rstrip(b"\r")
        try:
            text = line.decode("utf-8")
            words = shlex.split(text, posix=True) if text.strip() else []
        except (UnicodeDecodeError, ValueError) as e:
            raise ProtocolError(f"unbalanced or invalid inline request: {e}") from None
        if len(words) > self.max_args:
            raise ProtocolError(f"too many arguments (limit {self.max_args})")
        return [w.encode("utf-8") for w in words], eol + 1


# --- encoders ---------------------------------------------------------------------------


def _line(text: str) -> bytes:
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


def encode_error(code: str, message: str) -> bytes:
    return b"-" + _line(f"{code} {message}" if message else code) + CRLF


def encode(value: Any, proto: int = 2) -> bytes:
    """``value`` as one RESP reply (see the module docstring for the mapping)."""
    out: list[bytes] = []
    _encode(value, proto, out)
    return b"".join(out)


def _encode(value: Any, proto: int, out: list[bytes]) -> None:
    t = type(value)
    if t is bytes:
        out.append(b"$%d\r\n%s\r\n" % (len(value), value))
    elif t is str:
        b = value.encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    elif t is int:
        out.append(b":%d\r\n" % value)
    elif value is None:
        out.append(b"_\r\n" if proto >= 3 else b"$-1\r\n")
    elif t is bool:
        if proto >= 3:
            out.append(b"#t\r\n" if value else b"#f\r\n")
        else:
            out.append(b":1\r\n" if value else b":0\r\n")
    elif t is Simple:
        out.append(b"+" + _line(value) + CRLF)
    elif t is ReplyError:
        out.append(b"-" + _line(value) + CRLF)
    elif t is list or t is tuple:
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode(item, proto, out)
    elif t is Push:
        out.append((b">%d\r\n" if proto >= 3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode(item, proto, out)
    elif t is dict:
        out.append((b"%%%d\r\n" % len(value)) if proto >= 3 else (b"*%d\r\n" % (2 * len(value))))
        for k, v in value.items():
            _encode(k, proto, out)
            _encode(v, proto, out)
    elif t is float:
        text = repr(value).encode()
        if proto >= 3:
            out.append(b"," + text + CRLF)
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(text), text))
    elif isinstance(value, int):
        out.append(b":%d\r\n" % int(value))
    elif isinstance(value, str):
        _encode(str(value), proto, out)
    else:
        raise TypeError(f"cannot encode {t.__name__} as RESP")


def encode_command(args: Iterable[str | bytes]) -> bytes:
    """A client's command: an array of bulk strings."""
    parts: list[bytes] = []
    n = 0
    for a in args:
        b = a.encode("utf-8") if isinstance(a, str) else a
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        n += 1
    return b"*%d\r\n" % n + b"".join(parts)


# --- the client's parser ----------------------------------------------------------------


class _Incomplete(Exception):
    pass


class ReplyParser:
    """Pure-Python RESP2/RESP3 reply reader: ``feed(data)``, then ``gets()`` until it
    returns the sentinel ``False`` (no complete reply buffered)."""

    def __init__(self, *, max_bulk: int = 512 << 20) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_bulk = max_bulk

    def feed(self, data: bytes) -> None:
        self._buf += data

    def gets(self) -> Any:
        if self._pos >= len(self._buf):
            return False
        try:
            value, pos = self._read(self._pos, 0)
        except _Incomplete:
            return False
        self._pos = pos
        if pos > 65536 or pos == len(self._buf):
            del self._buf[:pos]
            self._pos = 0
        return value

    def _header(self, pos: int) -> tuple[int, bytes, int]:
        buf = self._buf
        eol = buf.find(CRLF, pos)
        if eol < 0:
            raise _Incomplete
        return buf[pos], bytes(buf[pos + 1:eol]), eol + 2

    def _int(self, text: bytes) -> int:
        try:
            return int(text)
        except ValueError:
            raise ProtocolError(f"invalid integer {text[:20]!r}") from None

    def _read(self, pos: int, depth: int) -> tuple[Any, int]:
        if depth > _MAX_REPLY_DEPTH:
            raise ProtocolError("reply nested too deeply")
        kind, text, pos = self._header(pos)
        if kind in (0x24, 0x3D, 0x21):       # '$' bulk, '=' verbatim, '!' bulk error
            n = self._int(text)
            if n < 0:
                return None, pos
            if n > self.max_bulk:
                raise ProtocolError(f"bulk reply of {n} bytes exceeds the limit")
            end = pos + n
            if end + 2 > len(self._buf):
                raise _Incomplete
            data = bytes(self._buf[pos:end])
            if kind == 0x3D:
                data = data[4:]              # 'txt:' prefix
            if kind == 0x21:
                return ReplyError(data.decode("utf-8", "replace")), end + 2
            return data, end + 2
        if kind in (0x2A, 0x3E, 0x7E):       # '*' array, '>' push, '~' set
            n = self._int(text)
            if n < 0:
                return None, pos
            items = []
            for _ in range(n):
                item, pos = self._read(pos, depth + 1)
                items.append(item)
            return (Push(items) if kind == 0x3E else items), pos
        if kind == 0x25:                     # '%' map
            n = self._int(text)
            d: dict[Any, Any] = {}
            for _ in range(n):
                k, pos = self._read(pos, depth + 1)
                v, pos = self._read(pos, depth + 1)
                d[k if not isinstance(k, list) else tuple(k)] = v
            return d, pos
        if kind == 0x7C:                     # '|' attributes: skip, read the real reply
            n = self._int(text)
            for _ in range(2 * n):
                _, pos = self._read(pos, depth + 1)
            return self._read(pos, depth)
        if kind == 0x2B:                     # '+'
            return Simple(text.decode("utf-8", "replace")), pos
        if kind == 0x2D:                     # '-'
            return ReplyError(text.decode("utf-8", "replace")), pos
        if kind == 0x3A or kind == 0x28:     # ':' integer, '(' big number
            return self._int(text), pos
        if kind == 0x5F:                     # '_' null
            return None, pos
        if kind == 0x23:                     # '#' boolean (1/0 at the top: see gets)
            return (text == b"t") if depth else int(text == b"t"), pos
        if kind == 0x2C:                     # ',' double
            try:
                return float(text), pos
            except ValueError:
                raise ProtocolError(f"invalid double {text[:20]!r}") from None
        raise ProtocolError(f"unknown RESP type byte {chr(kind)!r}")


class _HiredisReplyParser:
    """The same interface over hiredis's C parser."""

    def __init__(self) -> None:
        import hiredis

        self._none = object()
        # hiredis returns what replyError makes of an error's text, Exception or not:
        # octopus's error replies are str values (ReplyError), not raised.
        self._reader = hiredis.Reader(replyError=ReplyError,  # type: ignore[arg-type]  # see above
                                      protocolError=ProtocolError, notEnoughData=self._none)
        self._push = hiredis.PushNotification

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def gets(self) -> Any:
        # Simple strings come back as bytes here, like bulk strings.
        value = self._reader.gets()
        if value is self._none:
            return False
        t = type(value)
        if t is bool:                        # a RESP3 boolean reply: 1/0, as the pure parser
            return int(value)
        return Push(value) if t is self._push else value


def reply_parser(prefer_hiredis: bool = True) -> ReplyParser | _HiredisReplyParser:
    """A reply parser: hiredis's when installed and wanted, else the pure-Python one."""
    if prefer_hiredis:
        try:
            return _HiredisReplyParser()
        except ImportError:
            pass
    return ReplyParser()

"""Records as text, one per line, read in bulk: the format that ``octopus data dump``
prints and ``Engine.load``, the server's ``LOAD`` and ``octopus load`` read
(docs/language.md, "Records in bulk").

The format: each record is its canonical text (``str(record)``, what ``GET`` sends),
or any record text the language accepts without conditions or placeholders, starting
on a new line. Blank lines are skipped. The canonical text keeps a newline inside a
string as it is, so a record continues on the next line while one of its quoted
strings is open; everything else is one line. Line breaks are ``\\n`` alone (a ``\\r``
before it is whitespace, as in the language).

Guarantees:

1. :func:`read_records` yields every record with the number of the line it starts on,
   and its name and values when the fast path
   (:class:`~octopus.query.fast.RecordReader`, proven equal to PLY by
   tests/query/test_fast.py) read it; otherwise the caller compiles the text the usual
   way, which raises PLY's error for bad text.
2. No record text longer than ``max_length`` is ever built: a quote left open
   stops joining lines at that length and the record's first line is handed on alone
   (its error is then the unterminated string, at the right line).
3. :func:`located` and :func:`shifted` give an error the line number in the whole input
   (``.line``) and the number of records loaded before it (``.loaded``), so a load that
   stops says where and how far it got.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import itertools
import os
import queue
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, TypeVar, cast

from octopus.errors import OctopusError, ParseError, QueryError
from octopus.query.compile import compile_record
from octopus.query.fast import RecordReader, Row
from octopus.record import Atom, Value

__all__ = [
    "Batch",
    "Parsed",
    "batches",
    "chunks",
    "encode_batch",
    "lines_as_blocks",
    "load_requests",
    "located",
    "prefetched",
    "read_file",
    "read_records",
    "shifted",
    "split_text",
]

#: A record read by the fast path: its name and attributes (sorted by key).
Parsed = tuple[str, dict[str, Value]]

# A quoted string or regex, escapes paired (as the lexer reads them): what is left of a
# text once they are removed holds a quote only if one is open.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*+'", re.S)
_READ = 1 << 20          # bytes read from a file at a time
#: The most text a client puts in one LOAD (a server refuses an argument over its
#: max_bulk, 1 MiB by default).
MAX_REQUEST_BYTES = 512 << 10


def batches(lines: Iterable[str], size: int, max_length: int) -> Iterator[Batch]:
    """The records of ``lines`` in batches of ``size``, in the form the store takes. A
    record the fast path declines is compiled the usual way; one that cannot be stored
    raises a :class:`QueryError` naming its line.

    Lines are taken :data:`_BLOCK` at a time: when every one of them is a record of
    the shape read last (what a bulk load is made of), one expression reads them all
    (:meth:`~octopus.query.fast.RecordReader.read_lines`); otherwise they are read
    one by one as :func:`read_records` reads them. An error of ``lines`` itself (a
    file's line too long, not UTF-8) is raised after the lines before it were read, so
    the first bad line is the one reported."""
    reader = RecordReader(max_length)
    state = _Lines(reader, max_length)
    batch = Batch()
    source = iter(lines)
    number = 0
    while True:
        chunk: list[str] = []
        failed: BaseException | None = None
        try:
            chunk.extend(itertools.islice(source, min(_BLOCK, size - len(batch))))
        except BaseException as e:      # raised once the lines before it are read
            failed = e
        if not chunk and failed is None:
            break
        got = None
        if failed is None and state.pending is None:
            got = reader.read_lines(chunk if not chunk[0].endswith("\n") else
                                    [line[:-1] if line.endswith("\n") else line
                                     for line in chunk])
        if got is not None:
            batch.add_columns(*got)
            number += len(chunk)
        else:
            for line in chunk:
                number += 1
                record = state.line(number, line)
                if record is not None:
                    _add(batch, record, max_length)
        if failed is not None:
            raise failed
        if len(batch) >= size:
            yield _finished(batch)
            batch = Batch()
    record = state.end()
    if record is not None:
        _add(batch, record, max_length)
    if batch.names:
        yield _finished(batch)


#: Lines read at once by :func:`batches` (a few hundred microseconds of work with the
#: GIL held, so the thread storing the batch before is not kept waiting long).
_BLOCK = 512


def _add(batch: Batch, record: tuple[int, str, Row | None], max_length: int) -> None:
    """Add a record of :func:`read_records` to ``batch``, compiling it the usual way if
    the fast path declined it."""
    line, text, row = record
    if row is None:
        try:
            cr = compile_record(text, max_length=max_length)
            if cr.conditions:
                raise QueryError("a loaded record cannot have conditions")
        except QueryError as e:
            raise located(e, line, 0) from None
        batch.add(cr.name, cr.attributes)
    else:
        batch.add_row(row)


def _finished(batch: Batch) -> Batch:
    """``batch`` with :attr:`Batch.distinct` worked out: by the thread that reads, so
    that the thread that stores (the slower one) does not spend its time on it."""
    batch._distinct = len(set(batch.names)) == len(batch.names)
    return batch


T = TypeVar("T")
_DONE = object()


@contextlib.contextmanager
def prefetched(items: Iterator[T], ahead: int = 1) -> Iterator[Iterator[T]]:
    """``items`` as they come, the first one made on the calling thread and the others
    on a helper thread, at most ``ahead`` ahead of the consumer (so a batch is parsed
    while the one before it is stored). An exception of ``items`` is raised where its
    item would have been. Leaving the block stops the helper (it stops making items
    and is joined)."""
    try:
        first = next(items)
    except StopIteration:
        yield iter(())
        return
    out: queue.Queue[Any] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as e:  # handed over, raised by the consumer
            put(_Raised(e))
            return
        put(_DONE)

    def consume() -> Iterator[T]:
        yield first
        while True:
            item = out.get()
            if item is _DONE:
                return
            if type(item) is _Raised:
                raise item.error
            yield item

    helper = threading.Thread(target=produce, name="octopus-load-reader", daemon=True)
    with _quick_switches():
        helper.start()
        try:
            yield consume()
        finally:
            stop.set()
            helper.join()


#: The interpreter's switch interval while a load's reader runs (see _quick_switches).
_SWITCH_INTERVAL = 0.0005
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


@contextlib.contextmanager
def _quick_switches() -> Iterator[None]:
    """Run the block with the interpreter's switch interval at most 0.5 ms (restored
    when the last such block ends, unless someone else changed it meanwhile).

    The thread that stores runs in Prolog without the GIL, but needs it at three
    moments of each batch (Prolog fetching the batch, the call's return, the trim
    after it). Each time the reader thread holds it, and gives it up only when the
    switch interval (5 ms by default) has passed: up to 15 ms of waiting per batch of
    10,000 records on the thread that sets the pace, 1.5 µs a record, about a third
    of the time storing takes (bench/load.py). With a 0.5 ms interval the wait is a
    tenth; the reader, which is faster, absorbs the extra switches."""
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, _SWITCH_INTERVAL))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0 and \
                    sys.getswitchinterval() == min(_switch_saved, _SWITCH_INTERVAL):
                sys.setswitchinterval(_switch_saved)


class _Raised:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Batch:
    """Records to store in one all-or-nothing call, in the form prolog/store.pl's
    store_bulk/7 takes (flat lists: what janus converts fastest): :attr:`shapes`, the
    sorted key lists of its records; :attr:`flat`, per record its shape's 1-based
    number, its name and its values in key order, in stored form (an identifier as
    ``[text]``); :attr:`names`, its records' names in order. The records as (name,
    attributes) are made only when asked for (:meth:`records`: the ordered indexes, the
    change stream and replication need them, a plain load does not)."""

    __slots__ = ("_distinct", "_ids", "_last", "_records", "flat", "names", "shapes")

    def __init__(self) -> None:
        self.shapes: list[list[str]] = []
        self.flat: list[Any] = []
        self.names: list[str] = []
        self._ids: dict[tuple[str, ...], int] = {}
        self._last: tuple[tuple[str, ...] | None, int] = (None, 0)
        self._records: list[Parsed] | None = None
        self._distinct: bool | None = None

    def __len__(self) -> int:
        return len(self.names)

    def add_row(self, row: Row) -> None:
        """Add a record as :class:`~octopus.query.fast.RecordReader` reads it."""
        keys, values = row
        last_keys, shape = self._last
        if keys is not last_keys:
            shape = self._ids.get(keys, 0)
            if not shape:
                self.shapes.append(list(keys))
                shape = self._ids[keys] = len(self.shapes)
            self._last = (keys, shape)
        self.flat.append(shape)
        self.flat.extend(values)
        self.names.append(values[0])
        self._records = None
        self._distinct = None

    def add_columns(self, keys: tuple[str, ...], columns: list[list[Any]]) -> None:
        """Add records of one shape as
        :meth:`~octopus.query.fast.RecordReader.read_lines` reads them: ``columns[0]``
        their names, then the values of each key (the flat list is filled a column at
        a time, by slices)."""
        shape = self._ids.get(keys, 0)
        if not shape:
            self.shapes.append(list(keys))
            shape = self._ids[keys] = len(self.shapes)
        self._last = (keys, shape)
        count = len(columns[0])
        width = len(keys) + 2
        flat = self.flat
        start = len(flat)
        flat += itertools.repeat(shape, count * width)
        for offset, column in enumerate(columns, start + 1):
            flat[offset::width] = column
        self.names += columns[0]
        self._records = None
        self._distinct = None

    def add(self, name: str, attrs: dict[str, Value]) -> None:
        """Add a record given as its name and attributes (sorted by key)."""
        values: list[Any] = [name]
        values += attrs.values()
        if Atom in map(type, attrs.values()):
            values[1:] = [[str.__str__(v)] if type(v) is Atom else v for v in attrs.values()]
        self.add_row((tuple(attrs), values))

    @property
    def distinct(self) -> bool:
        """Whether no name comes twice."""
        if self._distinct is None:
            self._distinct = len(set(self.names)) == len(self.names)
        return self._distinct

    def records(self) -> list[Parsed]:
        """The records as (name, attributes sorted by key)."""
        if self._records is None:
            out: list[Parsed] = []
            flat, shapes = self.flat, self.shapes
            i = 0
            while i < len(flat):
                keys = shapes[flat[i] - 1]
                start = i + 2
                i = start + len(keys)
                values = [Atom(v[0]) if type(v) is list else v for v in flat[start:i]]
                out.append((flat[start - 1], dict(zip(keys, values, strict=True))))
            self._records = out
        return self._records


def encode_batch(records: Iterable[Parsed]) -> Batch:
    """A :class:`Batch` of (name, attributes sorted by key) pairs."""
    batch = Batch()
    kept = list(records)
    for name, attrs in kept:
        batch.add(name, attrs)
    batch._records = kept
    return batch


def _quote_open(text: str) -> bool:
    return "'" in _QUOTED.sub("", text)


def read_records(lines: Iterable[str], max_length: int
                 ) -> Iterator[tuple[int, str, Row | None]]:
    """``(line number, text, row or None)`` for every record of ``lines`` (each a
    line, with or without its ``\\n``), numbered from 1; the row is what
    :class:`~octopus.query.fast.RecordReader` reads, None when it declines."""
    state = _Lines(RecordReader(max_length), max_length)
    for number, line in enumerate(lines, 1):
        record = state.line(number, line)
        if record is not None:
            yield record
    record = state.end()
    if record is not None:
        yield record


class _Lines:
    """Lines to records, one line at a time: a record whose quoted string is still
    open at the end of its line goes on over the next lines (:attr:`pending`)."""

    __slots__ = ("_first", "_max_length", "_read", "_start", "pending")

    def __init__(self, reader: RecordReader, max_length: int) -> None:
        self._read = reader.read
        self._max_length = max_length
        self.pending: str | None = None
        self._start = 0
        self._first = ""

    def line(self, number: int, line: str) -> tuple[int, str, Row | None] | None:
        """The record that ends with line ``number``, if one does."""
        if line.endswith("\n"):
            line = line[:-1]
        pending = self.pending
        if pending is None:
            row = self._read(line)
            if row is not None:
                return number, line, row
            if not line or line.isspace():
                return None
            if _quote_open(line) and len(line) < self._max_length:
                self.pending, self._start, self._first = line, number, line
                return None
            return number, line, None
        pending += "\n" + line
        if len(pending) > self._max_length:
            self.pending = None
            return self._start, self._first, None    # its error: the unterminated string
        if not _quote_open(pending):
            self.pending = None
            return self._start, pending, self._read(pending)
        self.pending = pending
        return None

    def end(self) -> tuple[int, str, Row | None] | None:
        """The record left open at the end of the lines, if any."""
        if self.pending is None:
            return None
        pending, self.pending = self.pending, None
        return self._start, pending, None


def split_text(text: str) -> list[str]:
    """The lines of a block of text (``\\n`` only: other line breaks are characters of
    a record's strings, or whitespace)."""
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def read_file(f: BinaryIO, max_length: int) -> Iterator[str]:
    """The lines of a UTF-8 file (without their ``\\n``), read in large blocks. A line
    longer than ``max_length`` characters (plus room for whitespace) or not valid
    UTF-8 raises a :class:`QueryError` naming it."""
    limit = max_length + 4096
    decoder = codecs.getincrementaldecoder("utf-8")()
    rest = ""
    number = 0
    while True:
        block = f.read(_READ)
        try:
            text = rest + decoder.decode(block, final=not block)
        except UnicodeDecodeError as e:
            seen = rest.count("\n") + block[:e.start].count(b"\n")
            error = QueryError(f"line {number + seen + 1}: the text is not valid UTF-8")
            error.line = number + seen + 1   # type: ignore[attr-defined]
            raise error from None
        lines = text.split("\n")
        rest = lines.pop()
        for line in lines:
            number += 1
            if len(line) > limit:
                _too_long(number, max_length)
            yield line
        if len(rest) > limit:
            _too_long(number + 1, max_length)
        if not block:
            break
    if rest:
        yield rest


# The same over bytes, or a quote no string closes (from there on, a quote is open).
_QUOTED_OR_OPEN = re.compile(rb"'(?:[^'\\]|\\.)*+'|'", re.S)


def _safe_cut(piece: bytes) -> int:
    """The end of the last line of ``piece`` after which no quoted string is open (so a
    record may start there), or 0 if there is none."""
    cut = piece.rfind(b"\n") + 1
    if b"\\" not in piece and piece.count(b"'", 0, cut) % 2 == 0:
        return cut          # without escapes, each quote opens or closes a string
    safe = pos = 0
    for m in _QUOTED_OR_OPEN.finditer(piece):
        newline = piece.rfind(b"\n", pos, m.start())
        if newline >= 0:
            safe = newline + 1
        if m.end() - m.start() == 1:
            return safe
        pos = m.end()
    newline = piece.rfind(b"\n", pos)
    return newline + 1 if newline >= 0 else safe


def chunks(blocks: Iterable[bytes], max_bytes: int,
           max_lines: int = 1 << 62) -> Iterator[tuple[int, bytes]]:
    """The text of ``blocks`` (UTF-8, read in any sizes) cut into pieces of at most
    ``max_bytes`` and about ``max_lines`` lines (more only when a record goes on over
    the cut) that end at a line end where no record goes on: ``(number of the piece's
    first line, piece)``. A line longer than ``max_bytes`` raises a :class:`QueryError`
    naming it. (``Client.load``: each piece is one ``LOAD``.)"""
    buf = b""
    line = 1
    for block in itertools.chain(blocks, [None]):
        final = block is None
        if block is not None:
            buf += block
        while buf:
            head = buf[:max_bytes]
            cut = 0
            if head.count(b"\n") >= max_lines:
                rest = head.split(b"\n", max_lines)[-1]
                cut = _safe_cut(head[:len(head) - len(rest)])
            elif len(buf) <= max_bytes:
                if not final:
                    break                   # wait for more text
                head = buf
                if not buf.endswith(b"\n"):
                    yield line, buf         # the last line, without its line end
                    buf = b""
                    break
            if not cut:
                cut = _safe_cut(head) or head.rfind(b"\n") + 1
            if not cut:
                _too_long(line + head.count(b"\n"), max_bytes)
            piece, buf = buf[:cut], buf[cut:]
            yield line, piece
            line += piece.count(b"\n")


def load_requests(source: str | os.PathLike[str] | BinaryIO | Iterable[str], records: int,
                  max_bytes: int = MAX_REQUEST_BYTES) -> Iterator[tuple[int, bytes]]:
    """A load's source (a file name, a binary file, or lines of text) as the texts of
    ``LOAD`` requests of about ``records`` lines and at most ``max_bytes``: ``(number of
    the first line, text)``."""
    if isinstance(records, bool) or not isinstance(records, int) or records < 1:
        raise QueryError(f"batch must be a positive int, got {records!r}")
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            yield from chunks(iter(lambda: f.read(_READ), b""), max_bytes, records)
    elif hasattr(source, "read") and not isinstance(source, io.TextIOBase):
        reader = cast(BinaryIO, source)
        yield from chunks(iter(lambda: reader.read(_READ), b""), max_bytes, records)
    elif isinstance(source, bytes | bytearray):
        raise QueryError("load takes a file name or lines of text, not bytes")
    else:
        yield from chunks(lines_as_blocks(source), max_bytes, records)


def lines_as_blocks(lines: Iterable[str], size: int = _READ) -> Iterator[bytes]:
    """Lines of text (with or without their ``\n``) as UTF-8 blocks of about ``size``
    bytes; a line that is not valid Unicode raises a :class:`QueryError` naming it."""
    part: list[str] = []
    length = 0
    number = 0
    for line in lines:
        number += 1
        if not line.endswith("\n"):
            line += "\n"
        part.append(line)
        length += len(line)
        if length >= size:
            yield _encoded(part, number)
            part, length = [], 0
    if part:
        yield _encoded(part, number)


def _encoded(part: list[str], last: int) -> bytes:
    try:
        return "".join(part).encode("utf-8")
    except UnicodeEncodeError:
        for i, line in enumerate(part):
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:
                number = last - len(part) + 1 + i
                error = QueryError(f"line {number}: the text is not valid Unicode "
                                   "(lone surrogate)")
                error.line = number     # type: ignore[attr-defined]
                raise error from None
        raise


def _too_long(line: int, max_length: int) -> None:
    error = QueryError(f"line {line}: longer than the limit of {max_length} bytes a record")
    error.line = line       # type: ignore[attr-defined]
    raise error


def located(error: QueryError, line: int, loaded: int) -> QueryError:
    """The error of the record that starts on ``line`` (its own lines counted from 1),
    as the error of the load: numbered in the whole input, with ``loaded`` records
    loaded before it."""
    if isinstance(error, ParseError):
        moved = shifted(error, line - 1, loaded)
        assert isinstance(moved, ParseError)
        return moved
    reason = getattr(error, "reason", None) or str(error)
    out = QueryError(f"line {line}: {reason}")
    out.line = line             # type: ignore[attr-defined]
    out.reason = reason         # type: ignore[attr-defined]
    out.loaded = loaded         # type: ignore[attr-defined]
    return out


def shifted(error: OctopusError, lines_before: int, loaded_before: int) -> OctopusError:
    """An error of a part of the input (a server's ``LOAD`` of some of a file's lines)
    as the error of the whole: its ``line`` moved down by ``lines_before`` and its
    ``loaded`` count raised by ``loaded_before``."""
    loaded = loaded_before + int(getattr(error, "loaded", 0) or 0)
    line = getattr(error, "line", None)
    if isinstance(error, ParseError) and isinstance(line, int):
        out: OctopusError = ParseError(error.reason, line=line + lines_before,
                                       column=error.column, text=error.text)
    elif isinstance(error, QueryError) and isinstance(line, int):
        reason = getattr(error, "reason", None) or str(error)
        out = QueryError(f"line {line + lines_before}: {reason}")
        out.line = line + lines_before      # type: ignore[attr-defined]
        out.reason = reason                 # type: ignore[attr-defined]
    else:
        error.loaded = loaded               # type: ignore[attr-defined]
        return error
    out.loaded = loaded         # type: ignore[attr-defined]
    return out

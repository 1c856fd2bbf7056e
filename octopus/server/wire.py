"""Records, trigger modes and errors as the server sends them (docs/server.md): a record
as its text or in the TAGGED format (``[name, revision, key, typed value, ...]``), a mode
as ``ON_DEL|REMOVED``, an explanation (``WHY``) and a derived watch's row (``RWATCH``)
in the shapes docs/server.md gives, an exception as a Redis-style error line with a structured tail
(:func:`error_line`, :func:`error_from_line`). Pure functions, no I/O; the client's
decoders are their inverse.

What the error format guarantees: an :class:`~octopus.errors.OctopusError` raised on the
server comes back from :func:`error_from_line` with the same class (or, for a class the
client does not know, its nearest ancestor in :mod:`octopus.errors`), the same ``str()``
and ``args``, and the same public scalar attributes (a ``ParseError``'s ``reason``,
``line``, ``column`` and ``text``; a ``PersistenceError``'s ``applied``; ...).
"""

from __future__ import annotations

import importlib
import json
import math
from functools import lru_cache
from typing import Any

from octopus import errors
from octopus.errors import OctopusError
from octopus.events import Mode
from octopus.explain import SessionInfo, WaitExplanation
from octopus.record import Atom, Record, format_value

__all__ = ["ERROR_TAIL", "error_from_line", "error_line", "explanation_reply", "mode_text",
           "record_tagged", "record_text", "row_reply", "tag_value", "untag_value"]

_MODE_NAMES = ("ON_SET", "ON_DEL", "REMOVED", "ON_PUBLISH")


@lru_cache(maxsize=64)
def mode_text(mode: Mode) -> bytes:
    """``Mode.ON_DEL | Mode.REMOVED`` -> ``b"ON_DEL|REMOVED"``."""
    return "|".join(n for n in _MODE_NAMES if mode & Mode[n]).encode()


def tag_value(value: object) -> bytes:
    """A typed attribute value in the TAGGED record format (docs/server.md)."""
    if value is True:
        return b"b1"
    if value is False:
        return b"b0"
    if isinstance(value, Atom):
        return b"a" + str.__str__(value).encode()
    if isinstance(value, str):
        return b"s" + value.encode()
    if isinstance(value, int):
        return b"i%d" % value
    return b"f" + repr(value).encode()


def record_text(record: Record) -> bytes:
    """``str(record).encode()``, made without a call per value for the common types (a
    GET that misses the reply cache spends a fifth of its engine-thread time here).
    Equal to it for every record: tests/server/test_wire_text.py."""
    parts = []
    for key, value in record._attrs.items():
        if type(value) is str:
            if "'" in value or "\\" in value:
                parts.append(f"{key}: {format_value(value)}")
            else:
                parts.append(f"{key}: '{value}'")
        elif type(value) is int and -_SMALL < value < _SMALL:
            parts.append(f"{key}: {int.__repr__(value)}")
        else:
            parts.append(f"{key}: {format_value(value)}")
    if not parts:
        return f"{record._name} {{}}".encode()
    return f"{record._name} {{ {', '.join(parts)} }}".encode()


# Integers below this print with int.__repr__ whatever the interpreter's digit limit
# (format_value handles the rest: octopus.record.int_text).
_SMALL = 10 ** 18


def record_tagged(record: Record) -> list[object]:
    out: list[object] = [record.name.encode(), record.revision]
    for k, v in record.attributes.items():
        out.append(k.encode())
        out.append(tag_value(v))
    return out


def untag_value(tagged: bytes) -> object:
    """A value in the TAGGED format (``a``, ``s``, ``i``, ``f``, ``b`` and its text), or
    ``_`` for None; ValueError if it is none of them."""
    if tagged == b"_":
        return None
    tag, body = tagged[:1], tagged[1:]
    text = body.decode("utf-8")
    if tag == b"a":
        return Atom(text)
    if tag == b"s":
        return text
    if tag == b"i" and body.lstrip(b"-").isdigit():
        return int(body)
    if tag == b"f":
        return float(body)
    if tag == b"b" and body in (b"0", b"1"):
        return body == b"1"
    raise ValueError(f"not a tagged value: {tagged[:20]!r}")


def _session(info: SessionInfo | None) -> object:
    return None if info is None else [info.id, info.name]


def explanation_reply(x: WaitExplanation, tagged: bool) -> list[object]:
    """``WHY``'s reply: ``[query, [[record, session], ...], record or nil, [unmet, ...],
    [session, ...], truncated, exact name or nil]``, a session ``[id, name or nil]``."""
    rec = record_tagged if tagged else record_text
    return [x.query, [[rec(h.record), _session(h.session)] for h in x.matching],
            None if x.record is None else rec(x.record), list(x.unmet),
            [_session(s) for s in x.waiters], int(x.truncated), x.exact_name]


def row_reply(names: tuple[str, ...], row: tuple[Any, ...] | None,
              tagged: bool) -> object:
    """A derived watch's row in a ``row`` push: ``[[name, ...], [value, ...]]`` (values
    tagged, or as the language writes them), nil for REMOVED."""
    if row is None:
        return None
    values = [tag_value(v) if tagged else format_value(v)
              for v in row]
    return [list(names), values]


# --- errors ------------------------------------------------------------------------------

#: Where the structured tail of an error line starts: `` ~{`` then a JSON object to the end
#: of the line. The human part before it never contains this sequence (nor CR or LF).
ERROR_TAIL = " ~{"

# Modules whose OctopusError subclasses a client recognises by name. Any other class
# arrives as its nearest ancestor among these (the tail's "is" says which).
_ERROR_MODULES = ("octopus.errors", "octopus.server.resp", "octopus.server.client_base",
                  "octopus.cluster.etcd")
_SCALARS = (str, int, float, bool, type(None))


def _human(message: str) -> str:
    # One line, and no tail marker: the first ERROR_TAIL of a line is always the tail's;
    # text that UTF-8 cannot carry (lone surrogates) as "?" (the tail keeps it exactly).
    line = message.replace("\r", " ").replace("\n", " ").replace("~{", "~ {")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = line.encode("utf-8", "replace").decode("utf-8")
    return line


def error_line(exc: OctopusError) -> str:
    """``exc`` as the text of a RESP error reply (without ``-`` and CRLF):
    ``Class human message`` followed, when the message alone does not say everything,
    by `` ~{json}`` with the full message (``m``), the exception's public scalar
    attributes, and (``is``) the nearest class of :mod:`octopus.errors` when the
    client might not know ``Class``."""
    cls = type(exc)
    message = str(exc)
    human = _human(message)
    tail: dict[str, Any] = {}
    if human != message:
        tail["m"] = message
    for key, value in vars(exc).items():
        if key.startswith("_") or key in ("m", "is") or type(value) not in _SCALARS:
            continue
        if type(value) is float and not math.isfinite(value):
            continue
        tail[key] = value
    if cls.__module__ != "octopus.errors":
        tail["is"] = _known_ancestor(cls).__name__
    code = cls.__name__
    if not tail:
        return f"{code} {human}" if human else code
    encoded = json.dumps(tail, ensure_ascii=True, separators=(",", ":"))
    return f"{code} {human}{ERROR_TAIL[:2]}{encoded}"


def error_from_line(text: str) -> OctopusError | None:
    """The exception an error reply's text stands for, or None if its first word is not
    an Octopus error class (a Redis-style ``ERR ...``, ``NOAUTH ...``)."""
    code, _, rest = text.partition(" ")
    known = _error_classes()
    tail: dict[str, Any] = {}
    at = rest.find(ERROR_TAIL)
    if at >= 0:
        try:
            decoded = json.loads(rest[at + 2:])
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            tail = decoded
            rest = rest[:at]
    cls = known.get(code)
    if cls is None:
        base = tail.get("is")
        cls = known.get(base) if isinstance(base, str) else None
        if cls is None:
            return None
    message = tail.pop("m", rest)
    if not isinstance(message, str):
        message = rest
    tail.pop("is", None)
    exc = cls.__new__(cls)
    BaseException.__init__(exc, message)
    for key, value in tail.items():
        if isinstance(key, str) and key.isidentifier() and not key.startswith("_") and \
                type(value) in _SCALARS:
            setattr(exc, key, value)
    return exc


@lru_cache(maxsize=1)
def _error_classes() -> dict[str, type[OctopusError]]:
    for module in _ERROR_MODULES:
        importlib.import_module(module)
    out: dict[str, type[OctopusError]] = {}
    todo: list[type[OctopusError]] = [OctopusError]
    while todo:
        cls = todo.pop()
        if cls.__module__ in _ERROR_MODULES:
            out.setdefault(cls.__name__, cls)
        todo.extend(cls.__subclasses__())
    return out


def _known_ancestor(cls: type[OctopusError]) -> type[OctopusError]:
    for base in cls.__mro__:
        if base.__module__ == "octopus.errors" and getattr(errors, base.__name__, None) is base:
            return base  # type: ignore[no-any-return]  # `is` getattr's Any made it Any
    return OctopusError

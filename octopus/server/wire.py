"""Records and trigger modes as the server sends them (docs/server.md): a record as its
text or in the TAGGED format (``[name, revision, key, typed value, ...]``), a mode as
``ON_DEL|REMOVED``; an explanation (``WHY``) and a derived watch's row (``RWATCH``) in
the shapes docs/server.md gives. Pure functions, no I/O; the client's decoders are their
inverse."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from octopus.events import Mode
from octopus.explain import SessionInfo, WaitExplanation
from octopus.record import Atom, Record, format_value

__all__ = ["explanation_reply", "mode_text", "record_tagged", "record_text", "row_reply",
           "tag_value", "untag_value"]

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
    return str(record).encode()


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
    values = [tag_value(v) if tagged else format_value(v)  # type: ignore[arg-type]
              for v in row]
    return [list(names), values]

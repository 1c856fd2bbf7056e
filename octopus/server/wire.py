"""Records and trigger modes as the server sends them (docs/server.md): a record as its
text or in the TAGGED format (``[name, revision, key, typed value, ...]``), a mode as
``ON_DEL|REMOVED``. Pure functions, no I/O; the client's decoders are their inverse."""

from __future__ import annotations

from functools import lru_cache

from octopus.events import Mode
from octopus.record import Atom, Record

__all__ = ["mode_text", "record_tagged", "record_text", "tag_value"]

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

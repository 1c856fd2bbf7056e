"""The on-disk formats of a durable engine's data directory (docs/durability.md).

Nothing here touches Prolog or an engine: ``octopus data check`` reads journals and
snapshot footers with this module alone. Each format has its version (the journal's is
1, the snapshot's 2):

Journal file ``journal-<generation>.log`` (version 1): a header, then entries, appended::

    header  b"OCTJRNL\\n" | version u16 | generation u64 | crc32 of the 18 bytes before, u32
    entry   b"\\xe7\\x0c" | length u32 | crc32(length bytes + payload) u32 | payload

All integers little-endian. The payload is UTF-8 JSON, an array whose first element
says what the entry is:

    ["s", rev, name, attrs, flags, counter]  a set: attrs is {key: value}, an
                                             identifier as [text]; flags 1 = ephemeral;
                                             counter [base, next] after a sequential set
    ["d", rev, name]                         a delete (of a record that existed)
    ["b", rev0, [[name, attrs], ...]]        a set_many batch: the i-th (from 1) at rev0+i
    ["k", key, text]                         knowledge-base text added (key: the file a
                                             consult replaces, or null for add_facts)
    ["r", predicate, rows]                   knowledge-base rows (tuples as {"t": [...]},
                                             dicts as {"d": {...}})
    ["x"]                                    the knowledge-base entry before this one
                                             failed to apply: skip it

The two sync bytes let a reader tell a torn last entry (nothing valid follows it) from
corruption in the middle (a valid entry follows): the first is cut with a warning, the
second refuses to start.

Snapshot file ``snapshot-<generation>.snap`` (version 2): the data section written by
prolog/store.pl (``store_snapshot/4``: fast_write terms), then a JSON footer and a
16-byte trailer::

    data | footer | footer length u32 | crc32(footer) u32 | b"OCTSNAP\\n"

The data section holds the records and counters and, from byte ``index_at`` on (0:
none), the columns of the keys that had an ordered index (``index_keys``), from which a
restart builds those indexes while the records load. The footer holds the revision the
journal of the same generation starts after, the names of the ephemeral records at
that revision, the knowledge-base entries, and a crc32 per 1 MiB block of the data
section. Version 1 (no columns, no ``index_at``) is read as well: its indexes are built
by the first query on each key, as before.
"""

from __future__ import annotations

import json
import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octopus.errors import PersistenceError
from octopus.record import Atom, Value, int_from_decimal, int_text

__all__ = [
    "BLOCK",
    "ENTRY_HEAD",
    "FORMAT_VERSION",
    "JOURNAL_HEADER",
    "SNAPSHOT_VERSION",
    "Footer",
    "JournalScan",
    "decode_attrs",
    "decode_rows",
    "encode_attrs",
    "encode_rows",
    "entry",
    "journal_header",
    "json_attrs",
    "payloads",
    "read_footer",
    "scan_journal",
    "set_entry",
    "snapshot_trailer",
    "verify_snapshot",
]

FORMAT_VERSION = 1              # the journal's
SNAPSHOT_VERSION = 2            # the snapshot's
SNAPSHOT_VERSIONS_READ = (1, 2)
JOURNAL_MAGIC = b"OCTJRNL\n"
SNAPSHOT_MAGIC = b"OCTSNAP\n"
SYNC = b"\xe7\x0c"
_HEADER = struct.Struct("<8sHQ")
_HEADER_CRC = struct.Struct("<I")
JOURNAL_HEADER = _HEADER.size + _HEADER_CRC.size          # 22 bytes
_ENTRY = struct.Struct("<2sII")
ENTRY_HEAD = _ENTRY.size                                   # 10 bytes
_LENGTH = struct.Struct("<I")
_TRAILER = struct.Struct("<II8s")
MAX_ENTRY = 1 << 30          # a length beyond this is corruption, not an entry
BLOCK = 1 << 20              # snapshot data checksummed per block

_encoder = json.JSONEncoder(ensure_ascii=False, check_circular=False, allow_nan=False,
                            separators=(",", ":"))
# Integers are read with the record module's own conversion, so a journal reads back
# even where a program lowered the interpreter's int/str digit limit.
_decoder = json.JSONDecoder(parse_int=int_from_decimal)
_string: Any = json.encoder.encode_basestring


# --- entries -----------------------------------------------------------------------------

def journal_header(generation: int) -> bytes:
    head = _HEADER.pack(JOURNAL_MAGIC, FORMAT_VERSION, generation)
    return head + _HEADER_CRC.pack(zlib.crc32(head))


def entry(payload: list[Any], _encode: Any = _encoder.encode, _pack: Any = _LENGTH.pack,
          _crc: Any = zlib.crc32) -> bytes:
    """One framed journal entry for ``payload`` (a JSON array)."""
    data = _encode(payload).encode()
    length = _pack(len(data))
    return b"".join((SYNC, length, _pack(_crc(data, _crc(length))), data))


def _json_value(v: Value) -> str:
    kind = type(v)
    if kind is str:
        return str(_string(v))
    if kind is int:
        return int_text(v)                  # type: ignore[arg-type]  # kind is type(v): not narrowed
    if kind is bool:
        return "true" if v else "false"
    if kind is float:
        return float.__repr__(v)
    return '["' + str.__str__(v) + '"]'     # an Atom: a name, nothing to escape


def json_attrs(attrs: dict[str, Value]) -> str:
    """``encode_attrs(attrs)`` as JSON text, written directly: keys and identifiers are
    names (``[a-z][A-Za-z0-9._-]*``, nothing to escape), strings go through json's own
    escaping, floats and ints print as json prints them. Equal to the encoder's output
    (tests/durable/test_format.py), three times faster."""
    return "{" + ",".join(['"' + k + '":' + _json_value(v) for k, v in attrs.items()]) + "}"


def set_entry(revision: int, name: str, attrs: dict[str, Value], flags: int,
              counter: tuple[str, int] | None) -> bytes:
    """The framed entry of a set: ``["s", revision, name, attrs, flags, counter]``."""
    tail = "null]" if counter is None else f'["{counter[0]}",{counter[1]}]]'
    data = f'["s",{revision},"{name}",{json_attrs(attrs)},{flags},{tail}'.encode()
    length = _LENGTH.pack(len(data))
    return b"".join((SYNC, length, _LENGTH.pack(zlib.crc32(data, zlib.crc32(length))), data))


def encode_attrs(attrs: dict[str, Value]) -> dict[str, Any]:
    """Record attributes as JSON: an identifier as a one-element list."""
    return {k: [str.__str__(v)] if type(v) is Atom else v for k, v in attrs.items()}


def decode_attrs(attrs: dict[str, Any]) -> list[tuple[str, Any]]:
    """JSON attributes as the (key, value) pairs the store takes (identifiers stay
    one-element lists, the store's own form)."""
    return list(attrs.items())


def encode_rows(value: Any) -> Any:
    """Knowledge-base row values as JSON: tuples and dicts tagged (janus passes a tuple
    as a Prolog pair and a list as a list, so the difference must survive)."""
    if isinstance(value, tuple):
        return {"t": [encode_rows(v) for v in value]}
    if isinstance(value, list):
        return [encode_rows(v) for v in value]
    if isinstance(value, dict):
        return {"d": {k: encode_rows(v) for k, v in value.items()}}
    return value


def decode_rows(value: Any) -> Any:
    if isinstance(value, list):
        return [decode_rows(v) for v in value]
    if isinstance(value, dict):
        if "t" in value:
            return tuple(decode_rows(v) for v in value["t"])
        return {k: decode_rows(v) for k, v in value["d"].items()}
    return value


# --- reading journals ------------------------------------------------------------------

@dataclass
class JournalScan:
    """What a journal file holds: its entries (offsets, payloads if decoded) up to the
    first bad one; ``bad_offset`` is where that is (None: the file is whole) and
    ``torn`` whether it is a torn tail (no valid entry after it) rather than
    corruption before the tail (``valid_after`` entries follow)."""

    path: Path
    generation: int
    size: int
    entries: list[tuple[int, list[Any] | None]] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)   # payload bytes of each entry
    end: int = JOURNAL_HEADER            # offset after the last good entry
    bad_offset: int | None = None
    reason: str = ""
    torn: bool = False
    valid_after: int = 0

    def problem(self) -> str:
        if self.bad_offset is None:
            return ""
        where = f"{self.path} at offset {self.bad_offset}"
        if self.torn:
            return (f"{where}: torn last entry ({self.reason}); {self.size - self.bad_offset} "
                    "bytes to cut")
        return (f"{where}: corrupt entry ({self.reason}) followed by {self.valid_after} valid "
                f"entries")


def _frame_at(data: bytes, pos: int) -> tuple[int, str]:
    """The length of the valid entry at ``pos``, or (-1, why not)."""
    if len(data) - pos < ENTRY_HEAD:
        return -1, "incomplete entry header"
    sync, length, crc = _ENTRY.unpack_from(data, pos)
    if sync != SYNC:
        return -1, "no entry marker"
    if length > MAX_ENTRY:
        return -1, f"impossible length {length}"
    start = pos + ENTRY_HEAD
    if start + length > len(data):
        return -1, f"entry of {length} bytes runs past the end of the file"
    if zlib.crc32(data[start:start + length], zlib.crc32(data[pos + 2:pos + 6])) != crc:
        return -1, "checksum mismatch"
    return length, ""


def _parse_header(data: bytes, path: Path) -> int:
    if len(data) < JOURNAL_HEADER:
        raise PersistenceError(f"{path}: journal header missing or torn ({len(data)} bytes)")
    magic, version, generation = _HEADER.unpack_from(data, 0)
    (crc,) = _HEADER_CRC.unpack_from(data, _HEADER.size)
    if magic != JOURNAL_MAGIC or zlib.crc32(data[:_HEADER.size]) != crc:
        raise PersistenceError(f"{path}: not an octopus journal, or its header is corrupt "
                               "(offset 0)")
    if version != FORMAT_VERSION:
        raise PersistenceError(f"{path}: journal format version {version}; this octopus "
                               f"reads version {FORMAT_VERSION}")
    return int(generation)


def scan_journal(path: Path, *, decode: bool = True) -> JournalScan:
    """Read a journal file: every good entry, and what is wrong after them if
    anything. Raises PersistenceError only for a missing or corrupt header. Without
    ``decode`` the entries are only checked (payloads None; :func:`payloads` reads them
    one by one later, so a large journal is never all in memory as Python objects)."""
    with path.open("rb") as f:
        try:
            data: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:                  # an empty file cannot be mapped
            data = b""
    try:
        return _scan(path, data, decode)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def _scan(path: Path, data: Any, decode: bool) -> JournalScan:
    generation = _parse_header(data, path)
    scan = JournalScan(path, generation, len(data))
    pos = JOURNAL_HEADER
    while pos < len(data):
        length, why = _frame_at(data, pos)
        if length < 0:
            if not any(data[pos:]):
                why = "zeros to the end of the file"
            scan.bad_offset, scan.reason = pos, why
            break
        start = pos + ENTRY_HEAD
        scan.entries.append((pos, _decode(path, pos, data[start:start + length])
                             if decode else None))
        scan.lengths.append(length)
        pos = start + length
        scan.end = pos
    if scan.bad_offset is not None:
        scan.valid_after = _count_valid_after(data, scan.bad_offset + 1)
        scan.torn = scan.valid_after == 0
    return scan


def _count_valid_after(data: bytes, start: int) -> int:
    """How many valid entries follow a bad one (resynchronising on the marker)."""
    count = 0
    pos = data.find(SYNC, start)
    while pos >= 0:
        length, _ = _frame_at(data, pos)
        if length >= 0:
            count += 1
            pos = data.find(SYNC, pos + ENTRY_HEAD + length)
        else:
            pos = data.find(SYNC, pos + 1)
    return count


def _decode(path: Path, offset: int, raw: bytes) -> list[Any]:
    try:
        payload = _decoder.decode(raw.decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise PersistenceError(f"{path}: entry at offset {offset} has a good checksum but "
                               f"cannot be read ({e})") from None
    if not isinstance(payload, list) or not payload:
        raise PersistenceError(f"{path}: entry at offset {offset} is not a journal entry")
    return payload


def payloads(scan: JournalScan) -> Iterator[tuple[int, list[Any]]]:
    """The entries of a scanned journal as (offset, payload), decoded one at a time
    from the file (the scan checked them)."""
    if all(p is not None for _, p in scan.entries):
        yield from scan.entries                         # type: ignore[misc]  # all() checked: no None
        return
    with scan.path.open("rb") as f, \
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for (offset, _), length in zip(scan.entries, scan.lengths, strict=True):
            start = offset + ENTRY_HEAD
            yield offset, _decode(scan.path, offset, data[start:start + length])


# --- snapshots ---------------------------------------------------------------------------

@dataclass
class Footer:
    """A snapshot's footer: what the data section cannot say itself."""

    generation: int
    revision: int
    records: int
    data_bytes: int
    crcs: list[int]
    ephemeral: list[str]
    kb: list[list[Any]]
    created: float
    prolog: str = ""
    index_at: int = 0               # where the columns of index_keys start (0: none)
    index_keys: list[str] = field(default_factory=list)
    version: int = SNAPSHOT_VERSION

    def to_json(self) -> bytes:
        return _encoder.encode({
            "format": SNAPSHOT_VERSION, "generation": self.generation,
            "revision": self.revision, "records": self.records,
            "data_bytes": self.data_bytes, "block": BLOCK, "crcs": self.crcs,
            "ephemeral": self.ephemeral, "kb": self.kb, "created": self.created,
            "prolog": self.prolog, "index_at": self.index_at,
            "index_keys": self.index_keys}).encode()


def block_crcs(path: Path, size: int) -> list[int]:
    crcs = []
    with path.open("rb") as f:
        done = 0
        while done < size:
            block = f.read(min(BLOCK, size - done))
            if not block:
                break
            crcs.append(zlib.crc32(block))
            done += len(block)
    return crcs


def snapshot_trailer(footer: Footer) -> bytes:
    data = footer.to_json()
    return data + _TRAILER.pack(len(data), zlib.crc32(data), SNAPSHOT_MAGIC)


def read_footer(path: Path) -> Footer:
    """The footer of a snapshot file (PersistenceError naming the file if it is not a
    complete snapshot)."""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        if size < _TRAILER.size:
            raise PersistenceError(f"{path}: not a complete snapshot ({size} bytes)")
        f.seek(size - _TRAILER.size)
        length, crc, magic = _TRAILER.unpack(f.read(_TRAILER.size))
        start = size - _TRAILER.size - length
        if magic != SNAPSHOT_MAGIC or start < 0:
            raise PersistenceError(f"{path}: not a complete snapshot (no trailer at offset "
                                   f"{size - _TRAILER.size})")
        f.seek(start)
        data = f.read(length)
    if zlib.crc32(data) != crc:
        raise PersistenceError(f"{path}: snapshot footer corrupt (offset {start})")
    try:
        d = json.loads(data)
        if d["format"] not in SNAPSHOT_VERSIONS_READ:
            raise PersistenceError(f"{path}: snapshot format version {d['format']}; this "
                                   f"octopus reads versions "
                                   f"{', '.join(map(str, SNAPSHOT_VERSIONS_READ))}")
        footer = Footer(int(d["generation"]), int(d["revision"]), int(d["records"]),
                        int(d["data_bytes"]), [int(c) for c in d["crcs"]],
                        list(d["ephemeral"]), list(d["kb"]), float(d["created"]),
                        str(d.get("prolog", "")), int(d.get("index_at", 0)),
                        [str(k) for k in d.get("index_keys", [])], int(d["format"]))
    except (KeyError, TypeError, ValueError) as e:
        raise PersistenceError(f"{path}: snapshot footer unreadable ({e})") from None
    if footer.data_bytes != start:
        raise PersistenceError(f"{path}: snapshot footer says {footer.data_bytes} data "
                               f"bytes, the file has {start}")
    if not 0 <= footer.index_at < footer.data_bytes or \
            (footer.index_at == 0) != (not footer.index_keys):
        raise PersistenceError(f"{path}: snapshot footer has an impossible index offset "
                               f"{footer.index_at} for keys {footer.index_keys}")
    return footer


def verify_snapshot(path: Path, footer: Footer) -> None:
    """Check every block of the data section (PersistenceError naming file and offset)."""
    crcs = block_crcs(path, footer.data_bytes)
    for i, (got, want) in enumerate(zip(crcs, footer.crcs, strict=False)):
        if got != want:
            raise PersistenceError(f"{path}: snapshot data corrupt in the block at offset "
                                   f"{i * BLOCK} (checksum mismatch)")
    if len(crcs) != len(footer.crcs):
        raise PersistenceError(f"{path}: snapshot has {len(crcs)} data blocks, its footer "
                               f"{len(footer.crcs)}")

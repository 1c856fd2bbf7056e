"""``octopus data check|dump|repair DIR``: look at and mend a data directory.

``check`` reads every file (journal entries and snapshot blocks by their checksums) and
says what a start would do. ``dump`` prints the records a start would recover, as
canonical text in natural name order (or JSON lines), without locking the directory:
it may run beside a live server and shows what is on disk. ``repair`` takes the
directory's lock (no engine may have it open), says what it drops, then cuts the
journal at its first bad entry and removes the journals after it (their entries
would apply on top of a gap). A corrupt snapshot cannot be repaired: restore it from
a backup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from octopus.errors import PersistenceError
from octopus.record import Atom, natural_key

from . import files
from .format import payloads
from .recovery import DataState, inspect

__all__ = ["check", "dump", "repair"]


def _describe(state: DataState) -> list[str]:
    lines = [f"data directory {state.directory}"]
    if state.footer is not None and state.snapshot is not None:
        f = state.footer
        lines.append(f"  snapshot {state.snapshot.name}: {f.records} records, revision "
                     f"{f.revision}, {state.snapshot.stat().st_size} bytes, "
                     f"{len(f.ephemeral)} ephemeral, {len(f.kb)} knowledge-base loads")
        lines.append(f"    format version {f.version}; ordered indexes kept: "
                     f"{', '.join(f.index_keys) or 'none'}")
    else:
        lines.append("  no snapshot")
    for scan in state.journals:
        lines.append(f"  journal {scan.path.name}: {len(scan.entries)} entries, "
                     f"{scan.size} bytes")
    for path in state.leftovers:
        lines.append(f"  leftover {path.name} (removed by the next snapshot)")
    return lines


def check(directory: Path, out: TextIO) -> int:
    """Print what the directory holds; 0 if a start would load it as it is, 1 if it
    would cut a torn tail first; PersistenceError if a start would refuse."""
    state = inspect(directory, decode=False)
    for line in _describe(state):
        print(line, file=out)
    refusal = state.refusal()
    if refusal is not None:
        raise PersistenceError(refusal)
    for scan in state.journals:
        for _ in payloads(scan):        # each entry's JSON, read one at a time
            pass
    problems = state.problems()
    for problem in problems:
        print(f"  warning: {problem} (a start cuts it)", file=out)
    print("ok" if not problems else "ok after cutting the torn tail", file=out)
    return 1 if problems else 0


def dump(directory: Path, out: TextIO, *, as_json: bool = False) -> int:
    """Print the records a start would recover; the number printed."""
    from octopus.core import Core
    from octopus.query.parser import DEFAULT_MAX_LENGTH

    from .persistence import Persistence

    state = inspect(directory, decode=False)
    refusal = state.refusal()
    if refusal is not None:
        raise PersistenceError(refusal)
    core = Core(DEFAULT_MAX_LENGTH)
    try:
        persistence = Persistence(core, directory, fsync="no", compact_ratio=1.0,
                                  compact_min_bytes=0)
        ephemeral = persistence._recover(state)
        records = [r for r in core.store.all(None, []) if r.name not in ephemeral]
        records.sort(key=lambda r: natural_key(r.name))
        for r in records:
            if as_json:
                print(json.dumps({"name": r.name, "revision": r.revision,
                                  "attributes": {k: (str(v) if isinstance(v, Atom) else v)
                                                 for k, v in r.attributes.items()}}),
                      file=out)
            else:
                print(r, file=out)
        return len(records)
    finally:
        core.close()


def repair(directory: Path, out: TextIO) -> int:
    """Cut the journal at its first bad entry (saying what goes); the number of
    readable entries dropped with it."""
    try:
        lock = files.DirectoryLock(directory)
    except BlockingIOError:
        raise PersistenceError(f"{directory} is in use by an engine: stop it first") from None
    try:
        state = inspect(directory, decode=False)
        bad = next((i for i, s in enumerate(state.journals) if s.bad_offset is not None), None)
        if bad is None:
            print(f"{directory}: nothing to repair", file=out)
            return 0
        scan = state.journals[bad]
        assert scan.bad_offset is not None
        later = state.journals[bad + 1:]
        dropped = scan.valid_after + sum(len(s.entries) for s in later)
        print(f"{scan.problem()}", file=out)
        print(f"cutting {scan.path.name} at offset {scan.bad_offset}: dropping "
              f"{scan.size - scan.bad_offset} bytes ({scan.valid_after} readable entries "
              "after the bad one)", file=out)
        for s in later:
            print(f"removing {s.path.name}: dropping its {len(s.entries)} entries (they "
                  "follow the cut)", file=out)
        fd = files.ops.open_append(scan.path, create=False)
        try:
            files.ops.ftruncate(fd, scan.bad_offset)
            files.ops.fdatasync(fd)
        finally:
            files.ops.close(fd)
        for s in later:
            files.ops.unlink(s.path)
        files.ops.sync_directory(directory)
        print(f"repaired: dropped the bad entry and {dropped} readable entries after it",
              file=out)
        return dropped
    finally:
        lock.release()

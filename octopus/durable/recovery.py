"""Reading a data directory: which snapshot and journals hold the state, and whether
they are whole. Shared by an engine opening the directory and by ``octopus data``.

A directory holds ``snapshot-G.snap`` files (the state at the start of journal G),
``journal-G.log`` files, at most one of each generation, and ``LOCK``. The state is
the newest complete snapshot, S, followed by the journals of generations S, S+1, ...
in order (no snapshot: every journal from the oldest). Journals older than S and
``.tmp`` files are leftovers of an interrupted rewrite and are ignored (an engine
removes them). A gap in the generations, a corrupt snapshot, or a journal that is
corrupt anywhere but at the very end of the newest one, is refused with the file and
the offset named.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from octopus.errors import PersistenceError

from .format import (
    JOURNAL_HEADER,
    Footer,
    JournalScan,
    read_footer,
    scan_journal,
    verify_snapshot,
)

__all__ = ["DataState", "inspect", "snapshot_path"]

_SNAPSHOT = re.compile(r"snapshot-(\d{8})\.snap\Z")
_JOURNAL = re.compile(r"journal-(\d{8})\.log\Z")


def snapshot_path(directory: Path, generation: int) -> Path:
    return directory / f"snapshot-{generation:08d}.snap"


@dataclass
class DataState:
    """What a data directory holds (see the module docstring)."""

    directory: Path
    snapshot: Path | None = None
    footer: Footer | None = None
    journals: list[JournalScan] = field(default_factory=list)
    leftovers: list[Path] = field(default_factory=list)

    @property
    def generation(self) -> int:
        if self.journals:
            return self.journals[-1].generation
        return self.footer.generation if self.footer is not None else 0

    def problems(self) -> list[str]:
        """Every journal problem, the refused ones and the torn tail alike."""
        return [j.problem() for j in self.journals if j.bad_offset is not None]

    def refusal(self) -> str | None:
        """Why an engine must not start on this state (None: it may; a torn tail at
        the end of the newest journal is cut with a warning instead)."""
        for i, scan in enumerate(self.journals):
            if scan.bad_offset is None:
                continue
            if scan.torn and i == len(self.journals) - 1:
                continue
            return (f"{scan.problem()}; refusing to start. `octopus data repair "
                    f"{self.directory}` cuts the journal there (saying what it drops)")
        return None


def inspect(directory: Path, *, decode: bool = True, verify: bool = True) -> DataState:
    """Read the directory's snapshot footer (and check its data blocks with
    ``verify``) and scan its journals. PersistenceError for a corrupt snapshot, an
    unreadable journal header or a gap in the generations."""
    state = DataState(directory)
    snapshots: dict[int, Path] = {}
    journals: dict[int, Path] = {}
    try:
        names = sorted(p.name for p in directory.iterdir())
    except OSError as e:
        raise PersistenceError(f"cannot read the data directory {directory}: "
                               f"{e.strerror or e}") from None
    for name in names:
        path = directory / name
        if m := _SNAPSHOT.match(name):
            snapshots[int(m.group(1))] = path
        elif m := _JOURNAL.match(name):
            journals[int(m.group(1))] = path
        elif name.endswith(".tmp"):
            state.leftovers.append(path)
    if snapshots:
        newest = max(snapshots)
        state.snapshot = snapshots[newest]
        state.footer = read_footer(state.snapshot)
        if state.footer.generation != newest:
            raise PersistenceError(f"{state.snapshot}: its footer says generation "
                                   f"{state.footer.generation}")
        if verify:
            verify_snapshot(state.snapshot, state.footer)
        state.leftovers += [p for g, p in snapshots.items() if g < newest]
        state.leftovers += [p for g, p in journals.items() if g < newest]
        wanted = sorted(g for g in journals if g >= newest)
        if wanted and wanted[0] != newest:
            raise PersistenceError(f"{directory}: snapshot generation {newest} has no "
                                   f"journal-{newest:08d}.log (found {wanted[0]:08d})")
    else:
        wanted = sorted(journals)
    for previous, generation in itertools.pairwise(wanted):
        if generation != previous + 1:
            raise PersistenceError(f"{directory}: journal generations jump from {previous} "
                                   f"to {generation}: journal-{previous + 1:08d}.log is "
                                   "missing")
    if wanted:
        last = journals[wanted[-1]]
        try:
            torn_header = last.stat().st_size < JOURNAL_HEADER
        except OSError:
            torn_header = False
        if torn_header:
            # Created by a rewrite that died before its header was on disk: it holds
            # nothing, and no snapshot of its generation exists.
            state.leftovers.append(last)
            wanted.pop()
    for generation in wanted:
        scan = scan_journal(journals[generation], decode=decode)
        if scan.generation != generation:
            raise PersistenceError(f"{journals[generation]}: its header says generation "
                                   f"{scan.generation}")
        state.journals.append(scan)
    return state

"""A durable engine's persistence: it recovers the state of a data directory into a
core, then journals every change before the store applies it (the core's write-ahead),
and rewrites the journal into a snapshot when it grows.

Theory of operation (what survives, and the formats, are in docs/durability.md):

1. **Open.** Lock the directory (:class:`~octopus.durable.files.DirectoryLock`), read
   it (:mod:`octopus.durable.recovery`), load the newest snapshot into the empty store
   through prolog/store.pl's restore path while a thread builds the ordered indexes
   from the columns the snapshot kept (:class:`_IndexLoader`), replay the journals
   after it in batches (``store_replay/4``: every entry is idempotent; the indexes
   follow), replay the knowledge-base entries, warm the clause index. A torn last
   entry is cut with a warning; anything worse refuses to start. The revision is the
   larger of the snapshot's and the last entry's. Ephemeral records left by the
   sessions of the previous run are then deleted, each an ordinary journaled delete
   with a new revision (like ZooKeeper expiring the sessions of a restarted server):
   they never come back.
2. **Write-ahead.** :meth:`log` encodes the changes of one call as one journal entry
   and appends it (:class:`~octopus.durable.journal.Journal`); the core applies them
   only if that succeeded. :meth:`acknowledge` waits for the fsync under
   ``fsync="always"``. Knowledge-base loads are journaled the same way, as their own
   entry kinds, before they are committed.
3. **Snapshots.** When the journal outgrows ``compact_ratio`` times the last snapshot
   (and ``compact_min_bytes``), a background thread rewrites: it starts the next
   journal generation under the core's lock (the only pause writers see: a file
   switch and one fsync), then copies the store from a Prolog ``snapshot/1`` view
   while writers go on, writes it as ``snapshot-G.tmp``, syncs, renames it into place
   and removes the older generation. The view may be a little later than the switch:
   replaying journal G on top of it is still exact, because every entry is idempotent
   and replay runs to the end (ZooKeeper's fuzzy snapshots). A crash at any point
   leaves either the old generation or the new one complete.
4. **Faults.** A write that fails is refused and changes nothing; a failed fsync
   breaks the journal (see :mod:`octopus.durable.journal`). While it is broken, or
   while the directory cannot be written at all, reads go on, writes raise
   PersistenceError, and the background thread tries once a second to write a
   snapshot of the whole memory state into a fresh generation; when that succeeds,
   writes work again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from octopus.core import RULES_KEY, ChangeOp
from octopus.errors import KnowledgeBaseError, OctopusError, PersistenceError, QueryError
from octopus.record import natural_key

from . import files
from .format import (
    Footer,
    block_crcs,
    decode_attrs,
    decode_rows,
    encode_attrs,
    encode_rows,
    entry,
    payloads,
    set_entry,
    snapshot_trailer,
)
from .journal import Journal, journal_path
from .recovery import DataState, inspect, snapshot_path

if TYPE_CHECKING:
    from octopus.core import Change, Core
    from octopus.ordered import KeyIndex

_SET = ChangeOp.SET

__all__ = ["Persistence"]

log = logging.getLogger("octopus.durable")

_REPLAY_BATCH = 5000        # journal operations per store_replay/4 call
_RETRY_SECONDS = 1.0        # while broken: how often to try a rescue snapshot


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


class Persistence:
    """The write-ahead journal and snapshots of one core (see the module docstring)."""

    def __init__(self, core: Core, directory: str | os.PathLike[str], *, fsync: str,
                 compact_ratio: float, compact_min_bytes: int) -> None:
        if isinstance(compact_ratio, bool) or not isinstance(compact_ratio, int | float) \
                or not compact_ratio > 0:
            raise QueryError(f"compact_ratio must be a positive number, got "
                             f"{compact_ratio!r}")
        if isinstance(compact_min_bytes, bool) or not isinstance(compact_min_bytes, int) \
                or compact_min_bytes < 0:
            raise QueryError(f"compact_min_bytes must be an int >= 0, got "
                             f"{compact_min_bytes!r}")
        self.core = core
        self.directory = Path(directory)
        self.journal = Journal(self.directory, fsync)
        self.compact_ratio = float(compact_ratio)
        self.compact_min_bytes = compact_min_bytes
        self._lock: files.DirectoryLock | None = None
        self._last: tuple[int, int] = (0, 0)        # (position, size) of the last entry
        self._kb_entries: list[list[Any]] = []      # the knowledge base, as entries
        self._kb_before: list[list[Any]] = []       # ... before the last one was logged
        self._kb_lock = threading.Lock()
        self._compact_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.journal.on_failure = self._wake.set
        self._snapshot_bytes = 0
        self._compact_at = 0.0
        self.snapshot_bytes = 0
        self.snapshot_records = 0
        self.last_snapshot = 0.0
        self.last_snapshot_seconds = 0.0
        self.last_snapshot_pause = 0.0
        self.max_snapshot_pause = 0.0
        self.snapshots = 0
        self.snapshot_errors = 0
        self.recovery_seconds = 0.0
        self.recovered_revision = 0
        self.torn_bytes_cut = 0
        self.ephemeral_expired = 0

    # --- open ------------------------------------------------------------------------------

    def open(self) -> None:
        """Lock and recover the directory into the (empty) core, then journal from
        now on (point 1)."""
        started = time.perf_counter()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PersistenceError(f"cannot create the data directory {self.directory}: "
                                   f"{_reason(e)}") from None
        try:
            self._lock = files.DirectoryLock(self.directory)
        except BlockingIOError:
            raise PersistenceError(f"{self.directory} is in use by another engine (its "
                                   f"{self.directory / 'LOCK'} is locked); one directory, one "
                                   "engine") from None
        except OSError as e:
            raise PersistenceError(f"cannot lock the data directory {self.directory}: "
                                   f"{_reason(e)}") from None
        try:
            state = inspect(self.directory, decode=False)
            refusal = state.refusal()
            if refusal is not None:
                raise PersistenceError(refusal)
            ephemeral = self._recover(state)
            for leftover in state.leftovers:    # of a rewrite that did not finish
                with contextlib.suppress(OSError):
                    files.ops.unlink(leftover)
            self._open_journal(state)
        except OctopusError as e:
            self._lock.release()
            self._lock = None
            if isinstance(e, PersistenceError):
                raise
            raise PersistenceError(f"cannot recover {self.directory}: {e}") from None
        except BaseException:
            self._lock.release()
            self._lock = None
            raise
        self.core.set_write_ahead(self)
        self.core.knowledge_base().journal = self
        self.recovery_seconds = time.perf_counter() - started
        self.recovered_revision = self.core.revision
        if ephemeral:
            # The sessions of the previous run are gone: so are their records.
            self.ephemeral_expired = self.core.expire(sorted(ephemeral, key=natural_key))
        self._thread = threading.Thread(target=self._maintain, daemon=True,
                                        name=f"octopus-snapshots-{self.directory.name}")
        self._thread.start()
        log.info("opened %s at revision %d in %.2f s (%d records, fsync=%s)", self.directory,
                 self.core.revision, self.recovery_seconds, self.core.store.count(),
                 self.journal.fsync)

    def _recover(self, state: DataState) -> set[str]:
        """Load the snapshot and replay the journals; the ephemeral records left."""
        core = self.core
        revision = 0
        ephemeral: set[str] = set()
        kb: list[list[Any]] = []
        if state.snapshot is not None and state.footer is not None:
            loader = None
            if state.footer.index_at:
                loader = _IndexLoader(core, state.snapshot, state.footer.index_at)
            try:
                count = core.store.restore(str(state.snapshot))
            except Exception as e:
                raise PersistenceError(f"{state.snapshot}: cannot load the snapshot ({e})") \
                    from None
            finally:
                indexes, names = loader.result() if loader is not None else ({}, [])
            # Before the journal: its replay keeps them up to date from here on.
            core.store.adopt_indexes(indexes, names)
            if count != state.footer.records:
                raise PersistenceError(f"{state.snapshot}: {count} records loaded, the "
                                       f"footer says {state.footer.records}")
            revision = state.footer.revision
            ephemeral = set(state.footer.ephemeral)
            kb = list(state.footer.kb)
            self.snapshot_bytes = state.snapshot.stat().st_size
            self.snapshot_records = count
            self.last_snapshot = state.footer.created
        for payload in kb:
            self._replay_kb(payload)
        ops: list[list[Any]] = []
        # A knowledge-base entry is applied when the next one is met (or at the end):
        # an "x" right after it means its load failed when it was made. Loads are
        # serialised, and records do not depend on the knowledge base, so holding one
        # back across record entries changes nothing.
        held: list[Any] | None = None
        for scan in state.journals:
            for offset, payload in payloads(scan):
                try:
                    revision = max(revision, self._replay(payload, ops, ephemeral))
                except (KeyError, IndexError, TypeError, ValueError) as e:
                    raise PersistenceError(f"{scan.path}: entry at offset {offset} is not a "
                                           f"journal entry ({e!r})") from None
                if len(ops) >= _REPLAY_BATCH:
                    core.store.replay(ops)
                    ops = []
                if payload[0] in ("k", "r", "x"):
                    if held is not None and payload[0] != "x":
                        self._replay_kb(held)
                        _remember_kb(kb, held)
                    held = payload if payload[0] != "x" else None
        if held is not None:
            self._replay_kb(held)
            _remember_kb(kb, held)
        if ops:
            core.store.replay(ops)
        self._kb_entries = kb
        core.revision = revision
        core.store.warm()
        return ephemeral

    def _replay(self, payload: list[Any], ops: list[list[Any]], ephemeral: set[str]) -> int:
        """Queue the record operations of one entry; its (last) revision, or 0."""
        kind = payload[0]
        if kind == "s":
            _, rev, name, attrs, flags, counter = payload
            ops.append(["s", rev, name, decode_attrs(attrs), counter])
            if flags & 1:
                ephemeral.add(name)
            else:
                ephemeral.discard(name)
            return int(rev)
        if kind == "d":
            _, rev, name = payload
            ops.append(["d", name])
            ephemeral.discard(name)
            return int(rev)
        if kind == "b":
            _, rev0, rows = payload
            for i, (name, attrs) in enumerate(rows, start=1):
                ops.append(["s", rev0 + i, name, decode_attrs(attrs), None])
                ephemeral.discard(name)
            return int(rev0) + len(rows)
        if kind in ("k", "r", "x"):
            return 0
        raise ValueError(f"unknown entry kind {kind!r}")

    def _replay_kb(self, payload: list[Any]) -> None:
        kb = self.core.knowledge_base()
        try:
            if payload[0] == "k" and isinstance(payload[1], str) \
                    and payload[1].startswith(RULES_KEY):
                self.core.load_rules(payload[2], replay=True)    # declared again, too
            elif payload[0] == "k":
                kb.replay_text(payload[1], payload[2])
            else:
                kb.replay_rows(payload[1], decode_rows(payload[2]))
        except KnowledgeBaseError as e:
            log.warning("a journaled knowledge-base load fails again on replay: %s", e)

    def _open_journal(self, state: DataState) -> None:
        """Append to the newest journal (its torn tail cut), or start one."""
        if state.journals:
            last = state.journals[-1]
            try:
                fd = files.ops.open_append(last.path, create=False)
            except OSError as e:
                self._read_only(e, state)
                return
            if last.bad_offset is not None:
                log.warning("%s; cutting it", last.problem())
                try:
                    files.ops.ftruncate(fd, last.end)
                    files.ops.fdatasync(fd)
                except OSError as e:
                    files.ops.close(fd)
                    self._read_only(e, state)
                    return
                self.torn_bytes_cut = last.size - last.end
            os.lseek(fd, 0, os.SEEK_END)
            self.journal.attach(last.generation, fd, last.end, len(last.entries))
            return
        generation = state.footer.generation if state.footer is not None else 1
        try:
            fd = Journal.create_file(self.directory, generation)
        except OSError as e:
            self._read_only(e, state)
            return
        self.journal.attach(generation, fd, os.fstat(fd).st_size, 0)

    def _read_only(self, e: OSError, state: DataState) -> None:
        """The directory cannot be written: serve reads; refuse writes until it can."""
        log.error("cannot write in %s (%s): serving reads; writes are refused until it "
                  "can be written", self.directory, _reason(e))
        self.journal.generation = state.generation
        self.journal.failure = f"{self.directory} cannot be written: {_reason(e)}"

    # --- the write-ahead (octopus.core.WriteAhead) --------------------------------------------

    def log(self, changes: Sequence[Change]) -> int:
        first = changes[0]
        if len(changes) > 1:
            payload: list[Any] = ["b", first.revision - 1,
                                  [[c.name, encode_attrs(c.record._attrs)] for c in changes]]
        elif first.op is _SET:
            return self._append(set_entry(first.revision, first.name, first.record._attrs,
                                          0 if first.owner is None else 1, first.counter))
        else:
            payload = ["d", first.revision, first.name]
        return self._append(entry(payload))

    def _append(self, data: bytes) -> int:
        journal = self.journal
        position = journal.append(data)
        self._last = (position, len(data))
        if journal.offset > self._compact_at and not self._wake.is_set():
            self._wake.set()
        return position

    def retract(self, ticket: int) -> None:
        position, size = self._last
        if position == ticket:
            self.journal.retract(position, size)
        else:
            self.journal.behind("an entry that was not applied is in the journal")

    def behind(self, change: Change) -> None:
        self.journal.behind(f"the deletion of {change.name} at revision {change.revision} "
                            "is not in the journal")

    def acknowledge(self, ticket: int) -> None:
        if self.journal.fsync == "always":
            self.journal.wait(ticket)

    # --- the knowledge base's journal (octopus.kb.KnowledgeJournal) ----------------------

    def log_kb_text(self, key: str | None, text: str) -> int:
        return self._log_kb(["k", key, text])

    def log_kb_rows(self, predicate: str, rows: list[list[object]]) -> int:
        return self._log_kb(["r", predicate, encode_rows(rows)])

    def _log_kb(self, payload: list[Any]) -> int:
        try:
            data = entry(payload)
        except ValueError as e:         # NaN or infinity: JSON has no such number
            raise KnowledgeBaseError(f"cannot journal the load: {e}") from None
        with self._kb_lock:
            position = self._append(data)
            self._kb_before = list(self._kb_entries)
            _remember_kb(self._kb_entries, payload)
            return position

    def cancel_kb(self) -> None:
        """The entry just logged could not be applied (KB loads are serialised)."""
        with self._kb_lock:
            self._kb_entries = self._kb_before
            try:
                self._append(entry(["x"]))
            except PersistenceError:
                self.journal.behind("a failed knowledge-base load could not be cancelled")

    # --- snapshots ---------------------------------------------------------------------------

    def _threshold(self) -> float:
        return max(self.compact_min_bytes, self.compact_ratio * self.snapshot_bytes)

    @property
    def snapshot_bytes(self) -> int:
        return self._snapshot_bytes

    @snapshot_bytes.setter
    def snapshot_bytes(self, size: int) -> None:
        self._snapshot_bytes = size
        self._compact_at = self._threshold()

    def _maintain(self) -> None:
        while not self._stop.is_set():
            broken = self.journal.failure is not None
            self._wake.wait(_RETRY_SECONDS if broken else None)
            if self._stop.is_set():
                return
            self._wake.clear()
            if self.journal.failure is not None or \
                    self.journal.offset > self._threshold():
                try:
                    self.compact()
                except PersistenceError as e:
                    log.warning("snapshot not written: %s", e)
                except Exception:       # a bug: say so, and keep the thread alive
                    log.exception("snapshot not written")
                else:
                    continue
                if self.journal.failure is None:
                    self._stop.wait(_RETRY_SECONDS)   # do not spin on a full disk

    def compact(self) -> None:
        """Write a snapshot of the whole state and start the next journal generation
        (point 3); the older generation is removed. PersistenceError if it cannot."""
        with self._compact_lock:
            if self._lock is None or self._stop.is_set():
                raise PersistenceError("the engine is closing")
            generation = self.journal.generation + 1
            directory = self.directory
            tmp = directory / f"snapshot-{generation:08d}.tmp"
            started = time.perf_counter()
            try:
                with contextlib.suppress(FileNotFoundError):
                    files.ops.unlink(journal_path(directory, generation))
                fd = Journal.create_file(directory, generation)
            except OSError as e:
                self.snapshot_errors += 1
                raise PersistenceError(f"cannot start journal generation {generation} in "
                                       f"{directory}: {_reason(e)}") from None
            core = self.core
            broken = self.journal.failure is not None
            paused = time.perf_counter()
            with core.lock, self._kb_lock:
                if not broken:
                    self.journal.sync()         # the old file whole before the new one
                self.journal.switch(generation, fd)
                revision = core.revision
                ephemeral = core.ephemeral_names()
                kb = [list(p) for p in self._kb_entries]
                keys = core.store.indexed_keys()
            pause = time.perf_counter() - paused
            self.last_snapshot_pause = pause
            self.max_snapshot_pause = max(self.max_snapshot_pause, pause)
            try:
                count, index_at = core.store.write_snapshot(str(tmp), keys)
                data_bytes = tmp.stat().st_size
                footer = Footer(generation, revision, count, data_bytes,
                                block_crcs(tmp, data_bytes), ephemeral, kb, time.time(),
                                _prolog_version(), index_at, keys if index_at else [])
                out = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                try:
                    files.ops.write(out, snapshot_trailer(footer))
                    files.ops.fsync(out)
                finally:
                    os.close(out)
                final = snapshot_path(directory, generation)
                files.ops.rename(tmp, final)
                files.ops.sync_directory(directory)
            except (OSError, Exception) as e:
                self.snapshot_errors += 1
                with contextlib.suppress(OSError):
                    files.ops.unlink(tmp)
                why = _reason(e) if isinstance(e, OSError) else str(e)
                raise PersistenceError(f"cannot write the snapshot {tmp}: {why}") from None
            self.snapshot_bytes = final.stat().st_size
            self.snapshot_records = count
            self.last_snapshot = footer.created
            self.last_snapshot_seconds = time.perf_counter() - started
            self.snapshots += 1
            # Statistics first: a writer that resumes sees the snapshot that let it.
            if broken:
                self.journal.repaired()
                log.warning("journal repaired: snapshot generation %d holds the whole state; "
                            "writes are accepted again", generation)
            for old in inspect_leftovers(directory, generation):
                with contextlib.suppress(OSError):
                    files.ops.unlink(old)
            with contextlib.suppress(OSError):
                files.ops.sync_directory(directory)
            log.info("snapshot generation %d: %d records, %d bytes in %.2f s (writers paused "
                     "%.1f ms)", generation, count, self.snapshot_bytes,
                     self.last_snapshot_seconds, pause * 1e3)

    # --- statistics, closing -------------------------------------------------------------

    def stats(self) -> dict[str, int | float | str]:
        j = self.journal
        return {
            "fsync": j.fsync,
            "persistence_status": "ok" if j.failure is None else f"error: {j.failure}",
            "journal_generation": j.generation,
            "journal_bytes": j.offset,
            "journal_entries": j.entries,
            "journal_write_errors": j.write_errors,
            "fsyncs": j.fsyncs,
            "last_fsync": round(j.last_fsync, 3),
            "snapshot_bytes": self.snapshot_bytes,
            "snapshot_records": self.snapshot_records,
            "last_snapshot": round(self.last_snapshot, 3),
            "last_snapshot_seconds": round(self.last_snapshot_seconds, 4),
            "last_snapshot_pause_ms": round(self.last_snapshot_pause * 1e3, 3),
            "max_snapshot_pause_ms": round(self.max_snapshot_pause * 1e3, 3),
            "snapshots": self.snapshots,
            "snapshot_errors": self.snapshot_errors,
            "recovery_seconds": round(self.recovery_seconds, 3),
            "torn_bytes_cut": self.torn_bytes_cut,
        }

    def stop(self) -> None:
        """Stop the background snapshots, waiting for one under way (a snapshot asked
        for after this raises PersistenceError)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        with self._compact_lock:        # a compact() called by the user, under way
            pass

    def close(self) -> None:
        """Sync and close the journal, release the directory (after the core closed)."""
        self.stop()
        with self._compact_lock:
            self.journal.close()
            if self._lock is not None:
                self._lock.release()
                self._lock = None


class _IndexLoader:
    """Builds the indexes whose columns a snapshot holds, in a thread of its own while
    the records load: the load runs in Prolog without the GIL, the sorting in Python,
    so on two cores the indexes come nearly for free."""

    def __init__(self, core: Core, snapshot: Path, index_at: int) -> None:
        self._store = core.store
        self._path = snapshot
        self._index_at = index_at
        self._indexes: dict[str, KeyIndex] = {}
        self._names: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="octopus-restore-indexes")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._indexes, self._names = self._store.read_indexes(str(self._path),
                                                                  self._index_at)
        except Exception as e:
            # The columns passed their checksums, so this is no corruption, and an
            # index only saves work: start without it (the first query on its key
            # builds it) rather than refuse the records.
            log.warning("%s: the indexes it holds cannot be read (%.300s); they will be "
                        "built by the first queries on their keys", self._path, e)

    def result(self) -> tuple[dict[str, KeyIndex], list[str]]:
        self._thread.join()
        return self._indexes, self._names


def _remember_kb(kb: list[list[Any]], payload: list[Any]) -> None:
    """Keep a knowledge-base entry for the next snapshot: a consult replaces the
    earlier loads of the same file."""
    if payload[0] == "k" and payload[1] is not None:
        kb[:] = [p for p in kb if not (p[0] == "k" and p[1] == payload[1])]
    kb.append(payload)


def inspect_leftovers(directory: Path, generation: int) -> list[Path]:
    """Files of generations before ``generation`` and stray temporaries."""
    found = []
    for path in directory.iterdir():
        name = path.name
        for prefix, suffix in (("snapshot-", ".snap"), ("journal-", ".log"),
                               ("snapshot-", ".tmp")):
            if name.startswith(prefix) and name.endswith(suffix):
                digits = name[len(prefix):-len(suffix)]
                if digits.isdigit() and int(digits) < generation:
                    found.append(path)
    return found


def _prolog_version() -> str:
    from octopus._prolog import runtime

    try:
        version = int(runtime().janus.apply_once("user", "current_prolog_flag", "version"))
    except Exception:
        return ""
    return f"{version // 10000}.{version // 100 % 100}.{version % 100}"


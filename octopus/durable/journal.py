"""The journal: framed entries appended to ``journal-<generation>.log``, and the fsync
policies with group commit.

Theory of operation:

1. :meth:`Journal.append` writes one framed entry with ``write(2)`` and returns its
   end as a *position*: bytes appended since the journal was opened, across files. It
   is called under the core's lock, before the store applies the change, so the kernel
   has the entry before anyone can see its effect: a process crash (SIGKILL, a bug)
   loses nothing that was applied.
2. A write that fails (no space, an I/O error) is cut off again with ``ftruncate`` to
   where the entry began and raises :class:`~octopus.errors.PersistenceError` with
   ``applied=False``: the caller applies nothing. If even the cut fails, the journal is
   *broken* (point 4).
3. Durability of what was written: ``fsync="always"`` makes each writer wait, outside
   the core's lock, until an ``fdatasync`` covers its position. Writers share fsyncs
   (group commit): one of them syncs everything written so far while the others wait
   on a condition, and each wakes when a sync covers it. ``"everysec"`` syncs from a
   background thread once a second when something was written; ``"no"`` leaves it to
   the kernel (syncing only when a file is closed or replaced).
4. An fsync that fails makes the journal broken for good: after a failed fsync the
   kernel may have dropped the dirty pages and cleared the error, so a later fsync
   that succeeds proves nothing (PostgreSQL's "fsyncgate", 2018). Writers waiting for
   it get PersistenceError with ``applied=True`` (their change is in memory, its fate
   on disk unknown); every later append is refused with ``applied=False``. Only a new
   journal started after a snapshot of the whole memory state
   (:meth:`octopus.durable.persistence.Persistence.compact`) clears it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from octopus.errors import PersistenceError, QueryError

from . import files
from .format import journal_header

__all__ = ["FSYNC_POLICIES", "Journal", "journal_path"]

log = logging.getLogger("octopus.durable")

FSYNC_POLICIES = ("always", "everysec", "no")


def journal_path(directory: Path, generation: int) -> Path:
    return directory / f"journal-{generation:08d}.log"


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


class Journal:
    """The journal of one data directory (thread-safe)."""

    def __init__(self, directory: Path, fsync: str) -> None:
        if fsync not in FSYNC_POLICIES:
            raise QueryError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got "
                             f"{fsync!r}")
        self.directory = directory
        self.fsync = fsync
        self.generation = 0
        self.path: Path | None = None
        self.fd: int | None = None
        self.offset = 0                 # size of the current file
        self.written = 0                # position after the last append
        self.synced = 0                 # every position up to this is on disk
        self.entries = 0                # entries in the current file
        self.failure: str | None = None  # broken (point 4): why
        self._poisoned = False          # an fsync failed: nothing since is known synced
        self.last_fsync = 0.0           # wall-clock time of the last successful fsync
        self.fsyncs = 0
        self.write_errors = 0
        self._old: list[int] = []       # replaced files with data not yet synced
        self._lock = threading.Lock()   # appends and file switches
        self._sync_lock = threading.Lock()   # one fsync at a time
        self._cond = threading.Condition()
        self._syncing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_failure: Callable[[], None] = lambda: None   # wakes whoever repairs

    # --- files ---------------------------------------------------------------------------

    @staticmethod
    def create_file(directory: Path, generation: int) -> int:
        """A new, empty journal file with its header, synced with its directory entry."""
        path = journal_path(directory, generation)
        fd = files.ops.open_append(path, create=True)
        try:
            files.ops.write(fd, journal_header(generation))
            files.ops.fdatasync(fd)
            files.ops.sync_directory(directory)
        except OSError:
            files.ops.close(fd)
            with contextlib.suppress(OSError):
                files.ops.unlink(path)
            raise
        return fd

    def attach(self, generation: int, fd: int, size: int, entries: int) -> None:
        """Append to an open journal file from now on (at open time)."""
        self.generation, self.fd, self.offset, self.entries = generation, fd, size, entries
        self.path = journal_path(self.directory, generation)
        if self.fsync == "everysec" and self._thread is None:
            self._thread = threading.Thread(target=self._every_second, daemon=True,
                                            name=f"octopus-fsync-{self.directory.name}")
            self._thread.start()

    def switch(self, generation: int, fd: int) -> None:
        """Append to a new file from now on (the caller holds the core's lock, so the
        switch falls between two changes). The old file is synced by the next sync."""
        with self._lock:
            if self.fd is not None:
                self._old.append(self.fd)
            self.generation, self.fd, self.offset, self.entries = (
                generation, fd, os.fstat(fd).st_size, 0)
            self.path = journal_path(self.directory, generation)

    def repaired(self) -> None:
        """The whole memory state is on disk again (a snapshot was written after the
        switch to a fresh file): the journal is no longer broken."""
        with self._lock, self._cond:
            self.failure = None
            self._poisoned = False
            self.synced = self.written
            self._cond.notify_all()

    # --- appending -----------------------------------------------------------------------

    def append(self, data: bytes) -> int:
        """Write one entry; its end position (see point 1). PersistenceError, with
        nothing left in the file, if it cannot be written."""
        with self._lock:
            if self.failure is not None:
                raise PersistenceError(f"the journal in {self.directory} cannot be written "
                                       f"({self.failure}); nothing was changed")
            fd: int = self.fd               # type: ignore[assignment]  # set unless broken
            start = self.offset
            try:
                files.ops.write(fd, data)
            except OSError as e:
                self.write_errors += 1
                try:
                    files.ops.ftruncate(fd, start)
                except OSError as e2:
                    self._broken(f"cannot cut a failed write off {self.path}: {_reason(e2)}")
                raise PersistenceError(f"cannot write the journal {self.path}: {_reason(e)}; "
                                       "nothing was changed") from None
            self.offset = start + len(data)
            self.entries += 1
            self.written += len(data)
            return self.written

    def retract(self, position: int, size: int) -> None:
        """Cut off the entry that ends at ``position`` (``size`` bytes): the store could
        not apply it. Only the last entry can be cut; the caller still holds the lock
        under which it was appended, so it is."""
        with self._lock:
            if position != self.written or self.fd is None:
                self._broken("an entry that was not applied could not be cut off")
                return
            try:
                files.ops.ftruncate(self.fd, self.offset - size)
            except OSError as e:
                self._broken(f"cannot cut an entry off {self.path}: {_reason(e)}")
                return
            self.offset -= size
            self.entries -= 1
            self.written -= size

    def _broken(self, why: str) -> None:
        with self._cond:
            if self.failure is None:
                log.error("journal broken: %s; writes are refused until a snapshot of the "
                          "memory state can be written", why)
                self.failure = why
            self._cond.notify_all()
        self.on_failure()

    def behind(self, why: str) -> None:
        """Memory holds a change the journal does not (see Core: a session's ephemeral
        records go even when the journal refuses their deletion): broken until the
        next snapshot."""
        self._broken(why)

    # --- durability ----------------------------------------------------------------------

    def wait(self, position: int) -> None:
        """Return once ``position`` is on disk (fsync="always"), syncing for every
        writer waiting if no sync is under way (group commit)."""
        while True:
            with self._cond:
                if self.synced >= position:
                    return
                if self._poisoned:
                    raise PersistenceError(
                        f"the change was applied but the journal's fsync failed "
                        f"({self.failure}); it may be lost if the machine stops before a "
                        "snapshot is written", applied=True)
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
            try:
                self.sync()
            finally:
                with self._cond:
                    self._syncing = False
                    self._cond.notify_all()

    def sync(self) -> None:
        """fdatasync everything written so far (the current file and any replaced one
        not yet synced). A failure makes the journal broken (point 4)."""
        with self._sync_lock:
            with self._lock:
                target = self.written
                fd = self.fd
                old, self._old = self._old, []
            if target <= self.synced and not old:
                return
            try:
                for f in old:
                    files.ops.fdatasync(f)
                if fd is not None:
                    files.ops.fdatasync(fd)
            except OSError as e:
                self._poisoned = True
                self._broken(f"fsync of {self.path} failed: {_reason(e)}")
                with self._lock:
                    self._old = old + self._old
                return
            for f in old:
                with contextlib.suppress(OSError):
                    files.ops.close(f)
            with self._cond:
                self.fsyncs += 1
                self.last_fsync = time.time()
                if not self._poisoned:
                    self.synced = max(self.synced, target)
                self._cond.notify_all()

    def _every_second(self) -> None:
        while not self._stop.wait(1.0):
            if self.written > self.synced or self._old:
                self.sync()

    def close(self) -> None:
        """Sync what was written (unless broken) and close the files."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.failure is None:
            self.sync()
        with self._lock:
            for f in [*self._old, *([self.fd] if self.fd is not None else [])]:
                with contextlib.suppress(OSError):
                    files.ops.close(f)
            self._old = []
            self.fd = None

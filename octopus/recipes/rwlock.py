"""ReadWriteLock: shared readers, exclusive writers, FIFO between them (kazoo's model).

Records: readers and writers of one lock share one queue of sequential ephemeral
entries ``<name>_<k> { rwlock: '<name>', mode: 'read' | 'write' }``.

- A **writer** holds the lock when its entry is the first of the queue; it waits for
  the deletion of the entry just before its own (reader or writer).
- A **reader** holds the lock when no writer's entry is before its own; it waits for the
  deletion of the last writer entry before its own. Readers queued after a waiting
  writer wait for that writer: a stream of readers cannot starve a writer.

Everything else (tokens, timeouts and withdrawal, ``cancel()``) is as for
:class:`octopus.recipes.lock.Lock`, whose acquire/release machinery both halves reuse;
only the entry and the blocking rule differ. Read tokens are the entries' sequence
numbers too, so concurrent readers have distinct tokens and any writer's token is
higher than those of the readers it came after.

``engine.rwlock(name)`` gives one reader and one writer contender (``.read``,
``.write``) sharing an identifier; a thread uses one of them at a time.

Failure modes: as for a Lock (a holder whose session ends lets the next in; releasing
what one does not hold raises :class:`LockError`). There is no upgrade: holding
``.read`` and asking for ``.write`` queues behind oneself until the timeout.
"""

from __future__ import annotations

from octopus.explain import LockExplanation
from octopus.recipes.lock import Lock
from octopus.recipes.store import Store, check_name
from octopus.record import Record

__all__ = ["ReadLock", "ReadWriteLock", "WriteLock"]


class _Side(Lock):
    kind = "rwlock"
    mode = ""

    def _attributes(self) -> dict[str, str | None]:
        return {**super()._attributes(), "mode": self.mode}

    def _blocker_of(self, entry: Record, ahead: list[Record]) -> Record | None:
        # A reader waits for the last writer ahead of it, a writer for whoever is ahead.
        if entry.get("mode") == "read":
            writers = [r for r in ahead if r.get("mode") == "write"]
            return writers[-1] if writers else None
        return ahead[-1] if ahead else None


class ReadLock(_Side):
    """The shared side: held together with other readers, never with a writer."""

    mode = "read"

    def _blocker(self, ahead: list[Record]) -> Record | None:
        writers = [r for r in ahead if r.get("mode") == "write"]
        return writers[-1] if writers else None


class WriteLock(_Side):
    """The exclusive side: held alone."""

    mode = "write"


class ReadWriteLock:
    """A reader/writer lock named ``name``: ``with rw.read: ...``, ``with rw.write: ...``."""

    def __init__(self, store: Store, name: str, identifier: str | None = None) -> None:
        self.name = check_name(name)
        self.read = ReadLock(store, name, identifier)
        self.write = WriteLock(store, name, identifier)

    def contenders(self) -> list[str]:
        """Identifiers (or entry names) of readers and writers, in queue order."""
        return self.read.contenders()

    def why(self) -> LockExplanation:
        """The holders (readers, or one writer) and the queue; ``blocked`` is the write
        side's (a writer now would wait). ``rw.read.why()`` answers for a reader."""
        return self.write.why()

    def __repr__(self) -> str:
        return f"<ReadWriteLock {self.name!r} read={self.read.held} write={self.write.held}>"

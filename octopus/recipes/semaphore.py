"""Semaphore: a counting semaphore shared through the store (like threading.BoundedSemaphore).

Records: each permit held is a sequential ephemeral lease
``<name>_<k> { semaphore: '<name>' }``; at most ``value`` leases exist at any time.
Would-be holders first queue on an internal :class:`~octopus.recipes.lock.Lock` named
``<name>.queue`` (FIFO, each waiter watching only its predecessor). The one at the head
of that queue lists the leases and, in the same call, installs a one-shot ON_DEL trigger
on them; if fewer than ``value`` exist it writes its lease, else it waits for a lease to
go. Only the head of the queue ever watches the leases, so a release wakes one
process, not all of them (no herd), and permits are granted in arrival order.

``acquire(blocking=True, timeout=None) -> bool`` and ``release()``; a context manager.
One :class:`Semaphore` object may hold several permits (from several threads); each
``release()`` returns one, and releasing more than it holds raises :class:`LockError`.

Failure modes: every party must agree on ``value`` (it is not stored; a party with a
larger value admits itself beyond the others' bound). A session that ends returns its
permits (the leases are ephemeral) and leaves the queue. A timed-out or non-blocking
acquire that did not get a permit leaves nothing behind. Do not block in ``acquire()``
from a trigger handler: handlers run on the thread that would deliver the wake-up.
"""

from __future__ import annotations

import contextlib
import threading

from octopus.errors import LockError
from octopus.events import Mode, Trigger
from octopus.explain import SemaphoreExplanation
from octopus.recipes.lock import Lock
from octopus.recipes.store import (
    WHY_LIMIT,
    Acquirable,
    Store,
    add_entry,
    check_name,
    deadline_after,
    delete_quietly,
    discard,
    flag_setter,
    numbered,
    remaining,
)

__all__ = ["Semaphore"]


class Semaphore(Acquirable):
    """At most ``value`` holders at a time of the semaphore ``name`` on ``store``."""

    def __init__(self, store: Store, name: str, value: int = 1) -> None:
        self.store = store
        self.name = check_name(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LockError(f"a semaphore's value must be an int >= 1, got {value!r}")
        self.value = value
        self._leases: list[str] = []
        self._mutex = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a permit; False if not blocking and none is free now, or on timeout."""
        deadline = deadline_after(timeout)
        turn = Lock(self.store, self.name + ".queue")  # one contender per call: FIFO
        if not turn.acquire(blocking, timeout):
            return False
        try:
            while True:
                freed = threading.Event()
                watch = Trigger(flag_setter(freed), on=Mode.ON_DEL)
                leases = self.store.get_names("_ { semaphore: %s }", self.name, trigger=watch)
                if len(leases) < self.value:
                    discard(self.store, watch)
                    lease = add_entry(self.store, self.name, semaphore=self.name)
                    with self._mutex:
                        self._leases.append(f"{self.name}_{lease}")
                    return True
                if not blocking or not freed.wait(remaining(deadline)):
                    discard(self.store, watch)
                    return False
        finally:
            with contextlib.suppress(LockError):  # its entry died with the session
                turn.release()

    def release(self) -> None:
        """Return one permit held through this object; LockError if it holds none."""
        with self._mutex:
            if not self._leases:
                raise LockError(f"semaphore {self.name!r}: release without a held permit")
            lease = self._leases.pop(0)
        if not delete_quietly(self.store, lease):
            raise LockError(f"semaphore {self.name!r}: permit {lease} was lost before "
                            f"release (session ended?)")

    @property
    def held(self) -> int:
        """How many permits this object holds."""
        return len(self._leases)

    def holders(self) -> list[str]:
        """Names of all current leases of this semaphore (every holder's, not only ours)."""
        return self.store.get_names("_ { semaphore: %s }", self.name)

    def why(self) -> SemaphoreExplanation:
        """The permits held (with the sessions holding them) and the queue of would-be
        holders, in order (:class:`~octopus.explain.SemaphoreExplanation`)."""
        leases = self.store.explain_wait("_ { semaphore: %s }", self.name, limit=WHY_LIMIT)
        queue = self.store.explain_wait("_ { lock: %s }", self.name + ".queue",
                                        limit=WHY_LIMIT)
        order = numbered([h.record for h in queue.matching], self.name + ".queue")
        by_name = {h.record.name: h for h in queue.matching}
        return SemaphoreExplanation(self.name, self.value, leases.matching,
                                    tuple(by_name[r.name] for r in order.values()),
                                    self.held, leases.truncated or queue.truncated)

    def __repr__(self) -> str:
        return f"<Semaphore {self.name!r} value={self.value} held={self.held}>"

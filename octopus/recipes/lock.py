"""Lock: a fair, fencing mutual-exclusion lock that dies with its holder (docs/recipes.md).

Records: each contender writes a sequential ephemeral entry
``<name>_<k> { lock: '<name>' }`` (plus ``owner: '<identifier>'`` when given one).
The entry with the lowest ``k`` holds the lock; every other contender waits for the
deletion of the entry just before its own, and only that one (a one-shot ON_DEL
trigger installed with ``exists(..., install_if='found')``), so a release wakes exactly
one waiter. When woken it lists the queue again: its predecessor may have withdrawn
rather than released, in which case it watches the new predecessor.

Guarantees:

- mutual exclusion among live entries, and FIFO: grants follow entry order;
- ``token`` is the entry's sequence number: strictly increasing across grants of one
  lock name (a new entry always gets a higher number than every existing one), so a
  resource can refuse writes carrying an older token (fencing);
- a contender that gives up (timeout, non-blocking miss, ``cancel()``) deletes its
  entry, and the waiter behind it moves up;
- the entry is ephemeral: if the holder's session ends without ``release()``, the entry
  is deleted, the next waiter is woken and gets the lock.

A :class:`Lock` object is one contender. Threads that share one object take turns
through a local lock first (like ``threading.Lock``: any thread may release it);
threads that each make their own object queue in the store, FIFO.

Failure modes: ``release()`` of a lock this object does not hold raises
:class:`LockError`, as does ``release()`` after the holder's session ended (the lock was
already given to the next contender); a session closed while waiting makes
``acquire()`` raise :class:`EngineClosed`. A handler must not block in ``acquire()``
(handlers run on the event thread that would deliver the wake-up): a blocking acquire
from a handler raises :class:`LockError` at once.
"""

from __future__ import annotations

import threading

from octopus.deadline import within
from octopus.errors import LockError, WaitTimeout
from octopus.explain import Holding, LockExplanation, Waiter
from octopus.recipes.store import (
    WHY_LIMIT,
    Acquirable,
    Store,
    add_entry,
    check_may_wait,
    check_name,
    deadline_after,
    delete_quietly,
    numbered,
    remaining,
    wait_deleted,
)
from octopus.record import Record

__all__ = ["Lock"]


class Lock(Acquirable):
    """A distributed FIFO lock named ``name`` on ``store`` (a session or client)."""

    kind = "lock"  # the attribute that names the lock in its entries

    def __init__(self, store: Store, name: str, identifier: str | None = None) -> None:
        self.store = store
        self.name = check_name(name)
        if identifier is not None and not isinstance(identifier, str):
            raise LockError(f"identifier must be a string, got {identifier!r}")
        self.identifier = identifier
        self._local = threading.Lock()
        self._wake = threading.Event()
        self._cancelled = False
        self._entry: int | None = None  # the number of our entry, while we have one
        self._token: int | None = None  # the same number, while we hold the lock

    # --- what subclasses change ----------------------------------------------------

    def _attributes(self) -> dict[str, str | None]:
        """The attributes of this contender's entry (None: left out)."""
        return {self.kind: self.name, "owner": self.identifier}

    def _blocker(self, ahead: list[Record]) -> Record | None:
        """The entry to wait for, given the entries ``ahead`` of ours; None: we hold it."""
        return ahead[-1] if ahead else None

    def _blocker_of(self, entry: Record, ahead: list[Record]) -> Record | None:
        """The entry ``entry`` (of any contender) waits for; None: it holds the lock."""
        return self._blocker(ahead)

    # --- the queue -------------------------------------------------------------------

    def _queue(self) -> dict[int, Record]:
        """This lock's entries by number, in order."""
        return numbered(self.store.get_all(f"_ {{ {self.kind}: %s }}", self.name), self.name)

    def contenders(self) -> list[str]:
        """Identifiers (or entry names) of holders and waiters, in queue order."""
        return [str(r.get("owner", r.name)) for r in self._queue().values()]

    def why(self) -> LockExplanation:
        """Who holds the lock, who waits and for whom, and whether this object waits
        (:class:`~octopus.explain.LockExplanation`), from one atomic read."""
        seen = self.store.explain_wait(f"_ {{ {self.kind}: %s }}", self.name,
                                       limit=WHY_LIMIT)
        by_name = {h.record.name: h for h in seen.matching}
        queue = numbered([h.record for h in seen.matching], self.name)
        entries = list(queue.values())
        holders: list[Holding] = []
        waiting: list[Waiter] = []
        for i, entry in enumerate(entries):
            behind = self._blocker_of(entry, entries[:i])
            if behind is None:
                holders.append(by_name[entry.name])
            else:
                waiting.append(Waiter(by_name[entry.name], behind))
        mine = self._entry if self._entry in queue else None
        held = self._token is not None and mine is not None
        blocked = not held if mine is not None else self._blocker(entries) is not None
        return LockExplanation(self.kind, self.name, tuple(holders), tuple(waiting),
                               mine, held, blocked, seen.truncated)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (as far as it knows: see ``token``)."""
        return self._token is not None

    @property
    def token(self) -> int | None:
        """The fencing number of the current grant, None when not held."""
        return self._token

    # --- acquire and release ---------------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; False if not blocking and busy, on timeout, or if cancelled."""
        deadline = deadline_after(timeout)
        check_may_wait(self.store, f"{self.kind} {self.name!r}: acquire()", blocking, timeout)
        # Threads sharing this object take turns here first, as on a threading.Lock.
        if not self._local.acquire(blocking, -1 if deadline is None or not blocking
                                   else remaining(deadline)):
            return False
        self._cancelled = False
        granted = False
        try:
            # Over a network, each call waits for its reply no later than the deadline.
            with within(deadline):
                self._entry = add_entry(self.store, self.name, **self._attributes())
                granted = self._wait_turn(blocking, deadline)
        except WaitTimeout:
            if deadline is None or remaining(deadline):
                raise                   # not our deadline: the connection's own timeout
        finally:
            if not granted:  # not blocking, timed out, cancelled or failed: leave the queue
                self._withdraw()
        return granted

    def _wait_turn(self, blocking: bool, deadline: float | None) -> bool:
        """Wait until no entry ahead blocks ours, then hold the lock; False: gave up."""
        while (blocker := self._blocker(self._ahead())) is not None:
            # Give up if we may not wait, the wait times out, or cancel() woke us; any
            # other wake-up (the deletion, REMOVED as our session closed, a stray event)
            # is a reason to look at the queue again.
            if not blocking or not wait_deleted(self.store, blocker.name, deadline, self._wake) \
                    or self._cancelled:
                return False
        self._token = self._entry
        return True

    def _ahead(self) -> list[Record]:
        """The entries queued before ours, in order."""
        queue = self._queue()
        if self._entry not in queue:
            raise LockError(f"lock {self.name!r}: our entry {self.name}_{self._entry} vanished")
        return [r for k, r in queue.items() if k < self._entry]

    def _withdraw(self) -> bool:
        """Delete our entry (if any) and free this object; False if the entry was gone."""
        entry, self._entry, self._token = self._entry, None, None
        try:
            return entry is not None and delete_quietly(self.store, f"{self.name}_{entry}")
        except WaitTimeout:
            return False                # sent; the server deletes it when it gets to it
        finally:
            self._local.release()

    def cancel(self) -> None:
        """Make a pending ``acquire()`` withdraw and return False."""
        self._cancelled = True
        self._wake.set()

    def release(self) -> None:
        """Give the lock to the next contender; LockError if this object does not hold it."""
        if self._token is None:
            raise LockError(f"lock {self.name!r} is not held by this object")
        if not self._withdraw():
            raise LockError(f"lock {self.name!r} was lost before release (session ended?)")

    def __repr__(self) -> str:
        state = f"held token={self._token}" if self.held else "not held"
        return f"<{type(self).__name__} {self.name!r} {state}>"

"""Lock: a fair, fencing mutual-exclusion lock that dies with its holder (SPEC section 6).

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
``acquire()`` raise :class:`EngineClosed`. A handler must not block in ``acquire()``:
handlers run on the event thread that would deliver the wake-up.
"""

from __future__ import annotations

import threading

from octopus.errors import LockError
from octopus.events import Mode, Trigger
from octopus.recipes.store import (
    Store,
    check_name,
    deadline_after,
    delete_quietly,
    discard,
    flag_setter,
    remaining,
    sequence_number,
)
from octopus.record import Record

__all__ = ["Lock"]


class Lock:
    """A distributed FIFO lock named ``name`` on ``store`` (a session or client)."""

    kind = "lock"  # the attribute that names the lock in its entries

    def __init__(self, store: Store, name: str, identifier: str | None = None) -> None:
        self.store = store
        self.name = check_name(name)
        if identifier is not None and not isinstance(identifier, str):
            raise LockError(f"identifier must be a string, got {identifier!r}")
        self.identifier = identifier
        self._base = name + "_"
        self._local = threading.Lock()
        self._wake = threading.Event()
        self._cancelled = False
        self._entry: str | None = None
        self._token: int | None = None

    # --- what subclasses change ----------------------------------------------------

    def _entry_fields(self) -> tuple[str, tuple[object, ...]]:
        """Extra attribute text and parameters of this contender's entry."""
        return ("", ()) if self.identifier is None else (", owner: %s", (self.identifier,))

    def _blocker(self, queue: list[Record], index: int) -> Record | None:
        """The entry that contender ``queue[index]`` waits for; None: it holds the lock."""
        return queue[index - 1] if index else None

    # --- the queue -------------------------------------------------------------------

    def _queue(self) -> list[Record]:
        """This lock's entries, in order."""
        entries = self.store.get_all(f"_ {{ {self.kind}: %s }}", self.name)
        numbered = [(sequence_number(r.name, self._base), r) for r in entries]
        return [r for k, r in sorted((k, r) for k, r in numbered if k is not None)]

    def contenders(self) -> list[str]:
        """Identifiers (or entry names) of holders and waiters, in queue order."""
        return [str(r.get("owner", r.name)) for r in self._queue()]

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
        if not (self._local.acquire(True, -1 if deadline is None else remaining(deadline))
                if blocking else self._local.acquire(False)):
            return False
        try:
            self._cancelled = False
            extra, params = self._entry_fields()
            entry = self.store.set(f"%n {{ {self.kind}: %s{extra} }}", self._base, self.name,
                                   *params, sequential=True, ephemeral=True)
            self._entry = entry.name
            if self._wait_turn(blocking, deadline):
                self._token = sequence_number(entry.name, self._base)
                return True
        except BaseException:
            self._withdraw()
            raise
        self._withdraw()
        return False

    def _wait_turn(self, blocking: bool, deadline: float | None) -> bool:
        while True:
            queue = self._queue()
            index = next((i for i, r in enumerate(queue) if r.name == self._entry), None)
            if index is None:
                raise LockError(f"lock {self.name!r}: our entry {self._entry} vanished")
            blocker = self._blocker(queue, index)
            if blocker is None:
                return True
            self._wake.clear()
            if not blocking or self._cancelled:
                return False
            # Any event (the deletion, or REMOVED because our session closed) is a
            # reason to look at the queue again; so is a stray one.
            watch = Trigger(flag_setter(self._wake), on=Mode.ON_DEL, install_if="found")
            if not self.store.exists("%n", blocker.name, trigger=watch):
                continue  # gone already: look again
            if not self._wake.wait(remaining(deadline)) or self._cancelled:
                discard(self.store, watch)
                return False

    def _withdraw(self) -> None:
        if self._entry is not None:
            delete_quietly(self.store, self._entry)
        self._entry = self._token = None
        self._local.release()

    def cancel(self) -> None:
        """Make a pending ``acquire()`` withdraw and return False."""
        self._cancelled = True
        self._wake.set()

    def release(self) -> None:
        """Give the lock to the next contender; LockError if this object does not hold it."""
        if self._token is None or self._entry is None:
            raise LockError(f"lock {self.name!r} is not held by this object")
        entry = self._entry
        self._entry = self._token = None
        try:
            if not delete_quietly(self.store, entry):
                raise LockError(f"lock {self.name!r} was lost before release: "
                                f"its entry {entry} is gone (session ended?)")
        finally:
            self._local.release()

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = f"held token={self._token}" if self.held else "not held"
        return f"<{type(self).__name__} {self.name!r} {state}>"

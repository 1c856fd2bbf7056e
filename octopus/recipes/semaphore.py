"""Semaphore: a counting semaphore shared through the store (like threading.Semaphore).

A semaphore counts permits: ``acquire()`` takes one (waiting while there is none),
``release()`` gives one. It serves both as a limit on concurrency (``with sem:``) and
as a signal between parties (a producer ``release()``s, a consumer ``acquire()``s),
like the original's ``oct_sem_wait``/``oct_sem_post`` and Python's
``threading.Semaphore``.

Records; the permits available are ``value - leases + posts``:

- a *lease* ``<name>_<k> { semaphore: '<name>' }``, sequential and ephemeral, is a
  permit of the initial ``value`` taken through a session; at most ``value`` exist.
  Released, or when the holder's session ends, it is deleted: the permit returns.
- a *post* ``<name>.post_<k> { semaphore: '<name>', posted: true }``, sequential and
  not ephemeral, is a permit given by ``release()`` beyond the leases one holds. It
  waits in the store (its poster may be gone) until an ``acquire()`` takes it, and
  taking it deletes it: the permit is consumed, as a posted signal is.

``acquire()`` takes a lease while fewer than ``value`` exist, else the oldest post,
else waits. ``release()`` deletes a lease this object holds, else writes a post. So
each call changes the count by exactly one, leases never exceed ``value`` and posts
never go below zero.

Would-be holders first queue on an internal :class:`~octopus.recipes.lock.Lock`
named ``<name>.queue`` (FIFO, each waiter watching only its predecessor). The one at
the head of that queue lists the leases and posts and, in the same call, installs a
one-shot trigger on them; if it cannot take a permit it waits for a lease to go or a
post to come. Only the head of the queue watches, so a release wakes one process,
not all of them (no herd), and permits are granted in arrival order.

Failure modes: every party must agree on ``value`` (it is not stored). A session that
ends returns the leases it held; posts it wrote stay, and permits it took from posts
are not given back (they were consumed). A timed-out or non-blocking acquire that got
no permit leaves nothing behind. ``release()`` of a lease that its session already
returned raises :class:`LockError` (it was given back once). A blocking ``acquire()``
from a trigger handler raises :class:`LockError`: handlers run on the thread that
would deliver the wake-up.
"""

from __future__ import annotations

import contextlib
import threading

from octopus.errors import LimitExceeded, LockError, NotFound
from octopus.events import Mode, Trigger
from octopus.explain import SemaphoreExplanation
from octopus.recipes.lock import Lock
from octopus.recipes.store import (
    WHY_LIMIT,
    Acquirable,
    Store,
    add_entry,
    check_may_wait,
    check_name,
    deadline_after,
    delete_quietly,
    discard,
    flag_setter,
    numbered,
    remaining,
)

__all__ = ["DEFAULT_MAX_POSTS", "Semaphore"]

DEFAULT_MAX_POSTS = 65536


class Semaphore(Acquirable):
    """A semaphore ``name`` on ``store`` whose count starts at ``value``.

    ``max_posts`` bounds the posted permits waiting to be taken: a ``release()`` that
    would post past it raises :class:`~octopus.errors.LimitExceeded` and posts nothing
    (a loop of releases must not grow the store without end). The count is read just
    before the post, so releases racing from several processes may pass it by at most
    their number."""

    def __init__(self, store: Store, name: str, value: int = 1, *,
                 max_posts: int = DEFAULT_MAX_POSTS) -> None:
        self.store = store
        self.name = check_name(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LockError(f"a semaphore's value must be an int >= 0, got {value!r}")
        if isinstance(max_posts, bool) or not isinstance(max_posts, int) or max_posts < 0:
            raise LockError(f"a semaphore's max_posts must be an int >= 0, got {max_posts!r}")
        self.value = value
        self.max_posts = max_posts
        self._leases: list[str] = []   # leases held through this object, oldest first
        self._taken = 0                 # permits this object took from posts
        self._mutex = threading.Lock()

    def _permits(self, trigger: Trigger | None = None) -> tuple[list[str], list[str]]:
        """The names of the leases and of the posts, each oldest first."""
        names = self.store.get_names("_ { semaphore: %s }", self.name, trigger=trigger)
        leases, posts = [], []
        for n in names:     # natural order: oldest first within each kind
            k = n.rpartition("_")[2]
            if n == f"{self.name}_{k}" and k.isascii() and k.isdigit():
                leases.append(n)
            elif n == f"{self.name}.post_{k}" and k.isascii() and k.isdigit():
                posts.append(n)
        return leases, posts

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a permit; False if not blocking and none is free now, or on timeout."""
        deadline = deadline_after(timeout)
        check_may_wait(self.store, f"semaphore {self.name!r}: acquire()", blocking, timeout)
        turn = Lock(self.store, self.name + ".queue")  # one contender per call: FIFO
        if not turn.acquire(blocking, timeout):
            return False
        try:
            while True:
                changed = threading.Event()
                watch = Trigger(flag_setter(changed), on=Mode.ON_SET | Mode.ON_DEL)
                leases, posts = self._permits(trigger=watch)
                if len(leases) < self.value or posts:
                    discard(self.store, watch)
                    if self._take(len(leases), posts):
                        return True
                    continue            # the post was gone: look again
                if not blocking or not changed.wait(remaining(deadline)):
                    discard(self.store, watch)
                    return False
        finally:
            with contextlib.suppress(LockError):  # its entry died with the session
                turn.release()

    def _take(self, leases: int, posts: list[str]) -> bool:
        """Take a lease if one is free, else the oldest post; False if it was gone."""
        if leases < self.value:
            lease = add_entry(self.store, self.name, semaphore=self.name)
            with self._mutex:
                self._leases.append(f"{self.name}_{lease}")
            return True
        try:
            self.store.delete("%n { posted: true }", posts[0])
        except NotFound:
            return False
        with self._mutex:
            self._taken += 1
        return True

    def release(self) -> None:
        """Give back a permit: the oldest lease this object holds if it holds one, else
        a new post (which any party's ``acquire()`` may take, now or later)."""
        with self._mutex:
            lease = self._leases.pop(0) if self._leases else None
            returned = lease is None and self._taken > 0
            if returned:
                self._taken -= 1
        if lease is None:
            if len(self._permits()[1]) >= self.max_posts:
                if returned:            # nothing was given back: still held
                    with self._mutex:
                        self._taken += 1
                raise LimitExceeded(f"semaphore {self.name!r}: {self.max_posts} posted "
                                    f"permits already wait to be taken (max_posts)")
            self.store.set("%n { semaphore: %s, posted: true }", self.name + ".post_",
                           self.name, sequential=True)
        elif not delete_quietly(self.store, lease):
            raise LockError(f"semaphore {self.name!r}: permit {lease} was lost before "
                            f"release (session ended?)")

    @property
    def held(self) -> int:
        """How many permits this object took and has not given back."""
        with self._mutex:
            return len(self._leases) + self._taken

    def holders(self) -> list[str]:
        """Names of all current leases of this semaphore (every holder's, not only ours)."""
        return self._permits()[0]

    def posted(self) -> int:
        """How many posted permits wait to be taken."""
        return len(self._permits()[1])

    def available(self) -> int:
        """How many permits an ``acquire()`` could take now (a snapshot)."""
        leases, posts = self._permits()
        return max(self.value - len(leases), 0) + len(posts)

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

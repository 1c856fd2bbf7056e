"""Deadlines that reach the network calls made under them.

A recipe or a wait that promises to return within ``timeout`` seconds makes several
calls; over the network each of them could wait for its reply far longer (a stopped
server). :func:`within` sets a deadline for the calls made in its block, in this thread
(or task: it is a context variable); a client's call then waits at most until the
nearest deadline, and past it raises :class:`~octopus.errors.WaitTimeout`. An in-process
session ignores deadlines: its calls do not wait on anything but the engine.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["MIN_CALL", "budget", "within"]

#: Seconds a call may always wait for its reply, however near the deadline: a deadline
#: bounds waiting *for something to happen* (a lock to be free, a record to appear), not
#: the round trip of a call that would take milliseconds. ``acquire(timeout=0)`` of a
#: free lock must succeed; against a stopped server it returns after this long.
MIN_CALL = 1.0

_deadline: ContextVar[float | None] = ContextVar("octopus_deadline", default=None)


@contextlib.contextmanager
def within(deadline: float | None) -> Iterator[None]:
    """Calls made in the block wait for their replies until ``deadline`` (a
    ``time.monotonic()`` value; None: no deadline) at the latest; nested blocks keep the
    nearest deadline."""
    if deadline is None:
        yield
        return
    current = _deadline.get()
    token = _deadline.set(deadline if current is None else min(current, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


def budget(limit: float | None) -> tuple[float | None, bool]:
    """How long a call may wait now: ``limit`` seconds (None: no limit) or the time left
    until the deadline, whichever is shorter; and whether the deadline is what decides."""
    deadline = _deadline.get()
    if deadline is None:
        return limit, False
    left = max(deadline - time.monotonic(), MIN_CALL)
    if limit is None or left < limit:
        return left, True
    return limit, False

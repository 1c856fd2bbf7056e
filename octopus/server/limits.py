"""Server-wide limits that need a clock, as plain objects (no I/O; the caller passes the
time): output-buffer accounting (:class:`OutputBudget`), the failed-AUTH throttle
(:class:`AuthThrottle`) and rate-limited logging (:class:`RateLimitedLog`).

Output limits follow Redis's ``client-output-buffer-limit`` classes plus its
``maxmemory`` accounting of client buffers: a per-connection hard limit (dropped at
once), a soft limit (dropped once above it for a while), and a cap on all connections'
unsent output together, past which the connections holding the most are dropped first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["AuthThrottle", "BufferLimit", "OutputBudget", "RateLimitedLog"]


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class BufferLimit:
    """One class of connections: ``hard`` and ``soft`` bytes (0: none) and how long a
    connection may stay above ``soft``."""

    hard: int = 0
    soft: int = 0
    soft_seconds: float = 0.0


class OutputBudget(Generic[K]):
    """Unsent output bytes per connection and in total, and who is over a limit.

    The caller reports a connection's buffered bytes after each write with
    :meth:`note` (and when its buffer drains); sizes between reports may be stale
    (higher than true), so :meth:`victims` takes fresh sizes before dropping anyone.
    Invariant: ``total == sum(sizes)`` of the connections reported and not forgotten.
    """

    def __init__(self, memory_limit: int, *, pubsub: BufferLimit, normal: BufferLimit) -> None:
        self.memory_limit = memory_limit
        self.pubsub = pubsub
        self.normal = normal
        self.total = 0
        self._sizes: dict[K, int] = {}
        self._over_soft: dict[K, float] = {}    # connection -> since when

    def note(self, conn: K, size: int, now: float, subscriber: bool) -> str | None:
        """Record ``conn``'s buffered bytes; returns ``"hard"`` or ``"soft"`` if its
        class's limit says to drop it, else None."""
        old = self._sizes.get(conn, 0)
        if size:
            self._sizes[conn] = size
        elif old:
            del self._sizes[conn]
        self.total += size - old
        limit = self.pubsub if subscriber else self.normal
        if limit.hard and size > limit.hard:
            return "hard"
        if limit.soft and size > limit.soft:
            since = self._over_soft.setdefault(conn, now)
            if now - since > limit.soft_seconds:
                return "soft"
        elif self._over_soft:
            self._over_soft.pop(conn, None)
        return None

    def over(self) -> bool:
        """True when the total may exceed the memory limit (check :meth:`victims`)."""
        return bool(self.memory_limit) and self.total > self.memory_limit

    def victims(self, fresh: Callable[[K], int]) -> list[K]:
        """Refresh every tracked size with ``fresh(conn)``; then the connections to drop,
        largest first, until the total is within the memory limit (they are forgotten)."""
        for conn in list(self._sizes):
            size = fresh(conn)
            self.total += size - self._sizes[conn]
            if size:
                self._sizes[conn] = size
            else:
                del self._sizes[conn]
        out: list[K] = []
        if not self.over():
            return out
        for conn, _size in sorted(self._sizes.items(), key=lambda kv: kv[1], reverse=True):
            out.append(conn)
            self.forget(conn)
            if not self.over():
                break
        return out

    def forget(self, conn: K) -> None:
        self.total -= self._sizes.pop(conn, 0)
        self._over_soft.pop(conn, None)

    def size(self, conn: K) -> int:
        return self._sizes.get(conn, 0)


class AuthThrottle:
    """When to answer a failed AUTH: no sooner than ``delay`` seconds after it, and no
    more than ``per_second`` failures answered per second across the whole server, so
    opening more connections does not buy more guesses. Successful AUTHs are never
    delayed. A connection's later commands wait behind its delayed reply (the caller
    keeps request order)."""

    def __init__(self, delay: float, per_second: float) -> None:
        self.delay = max(0.0, delay)
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.failures = 0
        self._next = 0.0

    def failure(self, now: float) -> float:
        """Seconds to hold the reply of a failure that happened at ``now``."""
        self.failures += 1
        release = max(now + self.delay, self._next)
        self._next = release + self.interval
        return release - now


class RateLimitedLog:
    """A warning logged at most once per ``interval`` seconds; the ones suppressed in
    between are counted in the next line that is logged."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self.logger = logger
        self.interval = interval
        self._last = float("-inf")
        self._suppressed = 0

    def warning(self, now: float, message: str, *args: object) -> bool:
        """Log unless one was logged less than ``interval`` ago; True if logged."""
        if now - self._last < self.interval:
            self._suppressed += 1
            return False
        if self._suppressed:
            message += " (and %d more like it in the last %.0f s, not logged)"
            args = (*args, self._suppressed, now - self._last)
        self._last = now
        self._suppressed = 0
        self.logger.warning(message, *args)
        return True

"""Election: leader election among contenders, one leader at a time (kazoo's model).

An election is a :class:`~octopus.recipes.lock.Lock` whose entries say ``election``
instead of ``lock``: ``<name>_<k> { election: '<name>', owner: '<identifier>' }``.
The leader is the contender whose entry comes first; the others wait in line, each
watching only its predecessor. ``run(func, *args, **kwargs)`` blocks until this
contender leads, calls ``func`` and gives up the leadership when ``func`` returns or
raises; it returns ``func``'s result, or None if ``cancel()`` ended the wait first.

Failure modes: when a leader's session ends, its entry is deleted and the next
contender leads - while, in-process, the old leader's ``func`` may still be running:
the store's view (``leader()``) moved on, and a leader that must not act after losing
office should check ``token`` against the resource it guards (fencing). Giving up a
leadership already lost that way is silent in ``run``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from octopus.errors import EngineClosed, LockError
from octopus.explain import LockExplanation
from octopus.recipes.lock import Lock
from octopus.recipes.store import Store, check_may_wait

__all__ = ["Election"]

T = TypeVar("T")


class _Candidacy(Lock):
    kind = "election"


class Election:
    """Leader election named ``name`` on ``store``; ``identifier`` names this contender."""

    def __init__(self, store: Store, name: str, identifier: str | None = None) -> None:
        self.name = name
        self._candidacy = _Candidacy(store, name, identifier)

    def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Wait to lead, then run ``func``; leadership ends when it returns."""
        check_may_wait(self._candidacy.store, f"election {self.name!r}: run()")
        if not self._candidacy.acquire():
            return None
        try:
            return func(*args, **kwargs)
        finally:
            with contextlib.suppress(LockError, EngineClosed):
                self._candidacy.release()

    def cancel(self) -> None:
        """Stop waiting to lead: a pending ``run`` returns None without calling ``func``."""
        self._candidacy.cancel()

    def contenders(self) -> list[str]:
        """Identifiers (or entry names) of the leader and those waiting, in order."""
        return self._candidacy.contenders()

    def why(self) -> LockExplanation:
        """The leader (the holder) and the candidates queued behind it
        (:class:`~octopus.explain.LockExplanation`, kind ``election``)."""
        return self._candidacy.why()

    def leader(self) -> str | None:
        """The current leader's identifier (or entry name), None if nobody runs."""
        contenders = self.contenders()
        return contenders[0] if contenders else None

    @property
    def leading(self) -> bool:
        """Whether this contender leads now (as far as it knows)."""
        return self._candidacy.held

    @property
    def token(self) -> int | None:
        """The fencing number of this contender's current term, None when not leading."""
        return self._candidacy.token

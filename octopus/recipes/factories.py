"""The recipe factories a store offers: ``store.lock(name)``, ``store.barrier(name, n)``…

A mixin shared by :class:`octopus.Session` and the network :class:`octopus.Client`, so
both hand out the same recipes; each recipe's records belong to the store (session or
connection) that made it, and vanish with it.
"""

from __future__ import annotations

from octopus.recipes.barrier import Barrier
from octopus.recipes.election import Election
from octopus.recipes.lock import Lock
from octopus.recipes.names import NameService
from octopus.recipes.rwlock import ReadWriteLock
from octopus.recipes.semaphore import DEFAULT_MAX_POSTS, Semaphore
from octopus.recipes.store import Store

__all__ = ["RecipeFactories"]


class RecipeFactories:
    """``lock``, ``rwlock``, ``barrier``, ``semaphore``, ``election`` and ``names``."""

    def lock(self: Store, name: str, identifier: str | None = None) -> Lock:
        """A FIFO lock with fencing tokens (:mod:`octopus.recipes.lock`)."""
        return Lock(self, name, identifier)

    def rwlock(self: Store, name: str, identifier: str | None = None) -> ReadWriteLock:
        """A reader/writer lock (:mod:`octopus.recipes.rwlock`)."""
        return ReadWriteLock(self, name, identifier)

    def barrier(self: Store, name: str, n: int) -> Barrier:
        """A double barrier for ``n`` parties (:mod:`octopus.recipes.barrier`)."""
        return Barrier(self, name, n)

    def semaphore(self: Store, name: str, value: int = 1, *,
                  max_posts: int = DEFAULT_MAX_POSTS) -> Semaphore:
        """A counting semaphore (:mod:`octopus.recipes.semaphore`)."""
        return Semaphore(self, name, value, max_posts=max_posts)

    def election(self: Store, name: str, identifier: str | None = None) -> Election:
        """A leader election (:mod:`octopus.recipes.election`)."""
        return Election(self, name, identifier)

    @property
    def names(self: Store) -> NameService:
        """The name service (:mod:`octopus.recipes.names`)."""
        return NameService(self)

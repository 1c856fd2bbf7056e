"""Synchronization recipes built only on the public store API (docs/recipes.md).

One primitive per module, each written against :class:`~octopus.recipes.store.Store`
so that it runs the same on an in-process session and on a network client:

    lock.py       Lock: FIFO mutual exclusion with fencing tokens
    rwlock.py     ReadWriteLock: shared readers, exclusive writers, FIFO between them
    barrier.py    Barrier: a reusable double barrier
    semaphore.py  Semaphore: bounded concurrency, permits in arrival order
    election.py   Election: one leader at a time
    names.py      NameService: register, look up and wait for services

Sessions make them safe: every record a recipe writes for a party is ephemeral, so a
party whose session ends lets go of what it held.
"""

from octopus.recipes.barrier import Barrier
from octopus.recipes.election import Election
from octopus.recipes.lock import Lock
from octopus.recipes.names import NameService
from octopus.recipes.rwlock import ReadLock, ReadWriteLock, WriteLock
from octopus.recipes.semaphore import Semaphore
from octopus.recipes.store import Store

__all__ = [
    "Barrier",
    "Election",
    "Lock",
    "NameService",
    "ReadLock",
    "ReadWriteLock",
    "Semaphore",
    "Store",
    "WriteLock",
]

"""The recipes for asyncio: ``await lock.acquire()``, ``async with session.lock(name):``.

:class:`AsyncRecipe` gives any threaded recipe an asyncio face: each of its methods is
awaited and runs on a thread of its own (a waiting ``acquire`` holds that thread, so
waiters can never starve the event loop or a shared pool of workers); its properties
(``token``, ``held``, ``leading``) are read as they are, since they only read the
object. ``async with`` runs ``with``. A recipe's parts that are recipes themselves
(``rwlock.read``) come wrapped too.

Cancelling an awaited ``acquire`` asks the recipe to give up (``cancel()`` where it has
one, as :class:`~octopus.recipes.lock.Lock` does) and, should the grant win the race,
releases it: a cancelled acquire never leaves a lock held.

:class:`AsyncRecipeFactories` is the mixin that the asyncio twins share
(:class:`~octopus.aio.AsyncSession`, :class:`~octopus.server.async_client.AsyncClient`):
it builds the threaded recipe on the twin's blocking store (``_blocking_store()``) and
wraps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any

from octopus.recipes.barrier import Barrier
from octopus.recipes.election import Election
from octopus.recipes.lock import Lock
from octopus.recipes.names import NameService
from octopus.recipes.rwlock import ReadWriteLock
from octopus.recipes.semaphore import DEFAULT_MAX_POSTS, Semaphore
from octopus.recipes.store import Store

__all__ = ["AsyncRecipe", "AsyncRecipeFactories", "in_thread"]

_RECIPES = (Barrier, Election, Lock, NameService, ReadWriteLock, Semaphore)


async def in_thread(func: Callable[..., Any], *args: Any,
                    on_cancel: Callable[[], None] | None = None,
                    undo: Callable[[Any], None] | None = None, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` on a new thread, awaited. If the awaiting task is
    cancelled, ``on_cancel()`` runs at once and ``undo(result)`` once the call returns."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    lock = threading.Lock()
    cancelled = False
    finished: tuple[bool, Any] | None = None

    def settle(ok: bool, value: Any) -> None:
        if done.done():
            return
        if ok:
            done.set_result(value)
        else:
            done.set_exception(value)

    def run() -> None:
        nonlocal finished
        try:
            result, ok = func(*args, **kwargs), True
        except BaseException as e:
            result, ok = e, False
        with lock:
            finished = (ok, result)
            given_up = cancelled
        if given_up:
            if ok and undo is not None:
                with contextlib.suppress(Exception):
                    undo(result)
            return
        with contextlib.suppress(RuntimeError):     # the loop is closed
            loop.call_soon_threadsafe(settle, ok, result)

    threading.Thread(target=run, name=f"octopus-recipe-{func.__name__}", daemon=True).start()
    try:
        return await done
    except asyncio.CancelledError:
        with lock:
            cancelled = True
            outcome = finished
        if outcome is None:
            if on_cancel is not None:
                on_cancel()             # only sets flags: never blocks the loop
        elif outcome[0] and undo is not None:
            # It finished just as we were cancelled: give back what it got, on a thread
            # (undoing may wait for the store, which the loop must never do).
            threading.Thread(target=undo, args=(outcome[1],), daemon=True).start()
        raise


def _release(recipe: Any) -> Callable[[Any], None]:
    def undo(granted: Any) -> None:
        if granted is True:
            recipe.release()
    return undo


class AsyncRecipe:
    """A threaded recipe, awaited (see the module docstring)."""

    __slots__ = ("_recipe",)

    def __init__(self, recipe: Any) -> None:
        self._recipe = recipe

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._recipe, name)
        if isinstance(attr, _RECIPES):
            return AsyncRecipe(attr)
        if not callable(attr):
            return attr
        if name == "acquire":
            return functools.partial(in_thread, attr,
                                     on_cancel=getattr(self._recipe, "cancel", None),
                                     undo=_release(self._recipe))
        return functools.partial(in_thread, attr)

    async def __aenter__(self) -> AsyncRecipe:
        await in_thread(self._recipe.__enter__,
                        undo=lambda _: self._recipe.__exit__(None, None, None))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await in_thread(self._recipe.__exit__, *exc)

    def __repr__(self) -> str:
        return f"<async {self._recipe!r}>"


class AsyncRecipeFactories:
    """``lock``, ``rwlock``, ``barrier``, ``semaphore``, ``election`` and ``names`` for
    an asyncio twin; each returns an :class:`AsyncRecipe`."""

    def _blocking_store(self) -> Store:
        raise NotImplementedError

    def lock(self, name: str, identifier: str | None = None) -> AsyncRecipe:
        """A FIFO lock with fencing tokens (:mod:`octopus.recipes.lock`), awaited."""
        return AsyncRecipe(Lock(self._blocking_store(), name, identifier))

    def rwlock(self, name: str, identifier: str | None = None) -> AsyncRecipe:
        """A reader/writer lock (:mod:`octopus.recipes.rwlock`), awaited."""
        return AsyncRecipe(ReadWriteLock(self._blocking_store(), name, identifier))

    def barrier(self, name: str, n: int) -> AsyncRecipe:
        """A double barrier for ``n`` parties (:mod:`octopus.recipes.barrier`), awaited."""
        return AsyncRecipe(Barrier(self._blocking_store(), name, n))

    def semaphore(self, name: str, value: int = 1, *,
                  max_posts: int = DEFAULT_MAX_POSTS) -> AsyncRecipe:
        """A counting semaphore (:mod:`octopus.recipes.semaphore`), awaited."""
        return AsyncRecipe(Semaphore(self._blocking_store(), name, value,
                                     max_posts=max_posts))

    def election(self, name: str, identifier: str | None = None) -> AsyncRecipe:
        """A leader election (:mod:`octopus.recipes.election`), awaited."""
        return AsyncRecipe(Election(self._blocking_store(), name, identifier))

    @property
    def names(self) -> AsyncRecipe:
        """The name service (:mod:`octopus.recipes.names`), awaited."""
        return AsyncRecipe(NameService(self._blocking_store()))

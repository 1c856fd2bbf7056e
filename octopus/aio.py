"""The asyncio twin of the engine: the same core, awaitable.

:class:`AsyncEngine` wraps an :class:`octopus.Engine` (its own, or one you pass in) and
:class:`AsyncSession` wraps a :class:`octopus.Session`; neither keeps any state of its
own beyond what bridges threads and the event loop. Store calls run on a small thread
pool (the engine's lock may be held by another thread, and a large query takes a while;
the event loop never blocks on either). Events cross from the engine's dispatcher thread
to the loop with ``call_soon_threadsafe``.

    async with AsyncEngine() as engine:
        await engine.set("x { a: 1 }")
        async for event in engine.watch("_ { a: _ }"):
            ...

Cancellation: cancelling ``wait_for`` removes its trigger; an event stream from
``watch``/``subscribe`` removes its trigger or subscription when closed (``aclose()``,
``async with``, or when the stream is garbage collected after ``break``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from octopus.engine import Engine, Session
from octopus.errors import EngineClosed, NotFound, TriggerNotFound, WaitTimeout
from octopus.events import Event, Mode, Subscription, Trigger
from octopus.record import Record, Value

__all__ = ["AsyncEngine", "AsyncSession", "EventStream"]

T = TypeVar("T")


def _deliver(loop: asyncio.AbstractEventLoop,
             put: Callable[[Event], None]) -> Callable[[Event], None]:
    """A handler (dispatcher thread) that hands events to ``put`` on ``loop``."""

    def handler(event: Event) -> None:
        # RuntimeError: the loop is closed, so nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(put, event)

    return handler


def _remove_quietly(remove: Callable[[Any], None], handle: Any) -> None:
    with contextlib.suppress(TriggerNotFound, EngineClosed):
        remove(handle)


Starter = Callable[[Callable[[Event], None]],
                  Awaitable[tuple[Trigger | Subscription, Callable[[], None]]]]


class EventStream:
    """Events of one trigger or subscription, as an async iterator.

    ``await stream`` installs the trigger or subscription at once (changes from then
    on are seen); otherwise it is installed when iteration starts. Iteration ends after
    the final ``Mode.REMOVED`` event (removed elsewhere, or its session closed).
    """

    def __init__(self, start: Starter) -> None:
        self._start = start
        self._queue: asyncio.Queue[Event] | None = None
        self._finalizer: weakref.finalize | None = None
        self._done = False
        self.handle: Trigger | Subscription | None = None

    async def _started(self) -> EventStream:
        if self._queue is None:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Event] = asyncio.Queue()
            self.handle, remove = await self._start(_deliver(loop, queue.put_nowait))
            self._queue = queue
            self._finalizer = weakref.finalize(self, remove)
        return self

    def __await__(self) -> Generator[Any, None, EventStream]:
        return self._started().__await__()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self._done:
            raise StopAsyncIteration
        await self._started()
        assert self._queue is not None and self._finalizer is not None
        event = await self._queue.get()
        if event.mode == Mode.REMOVED:
            self._done = True
            self._finalizer.detach()
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Remove the trigger or subscription (idempotent)."""
        self._done = True
        if self._finalizer is not None and self._finalizer.alive:
            await asyncio.get_running_loop().run_in_executor(None, self._finalizer)

    async def __aenter__(self) -> EventStream:
        return await self._started()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def await_with_trigger(
        get: Callable[..., Awaitable[Record]], remove: Callable[[Trigger], Awaitable[None]],
        handler_for: Callable[[Callable[[Event], None]], Callable[[Event], None]],
        q: str, params: tuple[object, ...], timeout: float | None) -> Record | None:
    """``wait_for`` on any awaitable store (the twin of
    :func:`octopus.events.wait_with_trigger`): the record ``get`` finds now, else the one
    of the first ON_SET event. ``handler_for(put)`` makes the trigger's handler from a
    callback that must run on the event loop. None if the trigger ended without an event;
    WaitTimeout on timeout; the trigger is removed however it ends (cancellation too).
    """
    loop = asyncio.get_running_loop()
    arrived: asyncio.Future[Event] = loop.create_future()

    def put(event: Event) -> None:
        if not arrived.done():
            arrived.set_result(event)

    trigger = Trigger(handler_for(put), on=Mode.ON_SET, install_if="missing")
    try:
        return await get(q, *params, trigger=trigger)
    except NotFound:
        pass
    try:
        event = await asyncio.wait_for(asyncio.shield(arrived), timeout)
    except TimeoutError:
        raise WaitTimeout(f"no record matching {q!r} within {timeout} s") from None
    finally:
        await remove(trigger)
    return event.record


class AsyncSession:
    """Awaitable twin of :class:`octopus.Session`."""

    def __init__(self, session: Session, executor: ThreadPoolExecutor) -> None:
        self.sync = session
        self._executor = executor

    async def _run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args, **kwargs))

    # --- the store ---------------------------------------------------------------------

    async def get(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        return await self._run(self.sync.get, q, *params, trigger=trigger)

    async def get_names(self, q: str, *params: object,
                        trigger: Trigger | None = None) -> list[str]:
        return await self._run(self.sync.get_names, q, *params, trigger=trigger)

    async def get_all(self, q: str, *params: object) -> list[Record]:
        return await self._run(self.sync.get_all, q, *params)

    async def exists(self, q: str, *params: object, trigger: Trigger | None = None) -> bool:
        return await self._run(self.sync.exists, q, *params, trigger=trigger)

    async def set(self, rec: str, *params: object, sequential: bool = False,
                  ephemeral: bool = False, trigger: Trigger | None = None) -> Record:
        return await self._run(self.sync.set, rec, *params, sequential=sequential,
                               ephemeral=ephemeral, trigger=trigger)

    async def delete(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        return await self._run(self.sync.delete, q, *params, trigger=trigger)

    async def set_many(self, records: Iterable[Record | str | tuple[str, Mapping[str, Value]]],
                       **kwargs: Any) -> int:
        return await self._run(self.sync.set_many, list(records), **kwargs)

    async def publish(self, message: str, *params: object) -> int:
        return await self._run(self.sync.publish, message, *params)

    async def remove_trigger(self, trigger: Trigger | int) -> None:
        await self._run(self.sync.remove_trigger, trigger)

    async def unsubscribe(self, subscription: Subscription | int) -> None:
        await self._run(self.sync.unsubscribe, subscription)

    async def flush(self, timeout: float | None = None) -> bool:
        return await self._run(self.sync.flush, timeout)

    @property
    def revision(self) -> int:
        return self.sync.revision

    # --- waiting and events ----------------------------------------------------------------

    async def wait_for(self, q: str, *params: object, timeout: float | None = None) -> Record:
        """The first record matching ``q`` now, else the first one set later.

        Raises WaitTimeout after ``timeout`` seconds; cancellation removes the trigger."""
        loop = asyncio.get_running_loop()
        record = await await_with_trigger(
            self.get, lambda t: self._run(_remove_quietly, self.sync.remove_trigger, t),
            lambda put: _deliver(loop, put), q, params, timeout)
        if record is None:
            raise EngineClosed("closed while waiting")
        return record

    def watch(self, q: str, *params: object, on: Mode = Mode.ON_SET | Mode.ON_DEL,
              existing: bool = False) -> EventStream:
        """Future changes matching ``q`` as an :class:`EventStream` (with ``existing``:
        first one ON_SET event per current match, then changes, no gap or duplicate).

        ``async for event in engine.watch(q)`` installs the trigger when iteration
        starts; ``stream = await engine.watch(q)`` installs it at once."""
        watch = self.sync.watch_existing if existing else self.sync.watch

        async def start(handler: Callable[[Event], None]) -> tuple[Trigger, Callable[[], None]]:
            trigger = await self._run(watch, q, handler, *params, on=on)
            return trigger, functools.partial(_remove_quietly, self.sync.remove_trigger, trigger)

        return EventStream(start)

    def subscribe(self, q: str, *params: object) -> EventStream:
        """Published messages matching ``q`` as an :class:`EventStream`."""

        async def start(handler: Callable[[Event], None]) -> tuple[Subscription,
                                                                     Callable[[], None]]:
            sub = await self._run(self.sync.subscribe, q, handler, *params)
            return sub, functools.partial(_remove_quietly, self.sync.unsubscribe, sub)

        return EventStream(start)

    # --- sessions ----------------------------------------------------------------------------

    async def session(self) -> AsyncSession:
        return AsyncSession(await self._run(self.sync.session), self._executor)

    async def close(self) -> None:
        await self._run(self.sync.close)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncEngine(AsyncSession):
    """Awaitable twin of :class:`octopus.Engine`; wraps ``engine`` or a new Engine."""

    def __init__(self, engine: Engine | None = None, *, workers: int = 4) -> None:
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else Engine()
        super().__init__(self.engine, ThreadPoolExecutor(workers, thread_name_prefix="octopus-aio"))

    async def close(self) -> None:
        if self._owns_engine:
            await self._run(self.engine.close)
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> AsyncEngine:
        return self

"""The asyncio twins of the engine's session: the same core, awaited.

:class:`AsyncSession` is a thin handle on an :class:`octopus.Session`, :class:`AsyncEngine`
on an :class:`octopus.Engine` (its own, or one you pass in). They have the methods of
:class:`~octopus.server.async_client.AsyncClient` with the same signatures (and so the
methods of ``Session``, awaited); tests/test_parity.py keeps the four in step.

    async with AsyncEngine() as engine:
        await engine.set("x { a: 1 }")
        async for event in engine.events("_ { a: _ }"):
            ...

How they work:

1. Store calls run on a small thread pool: the engine's lock may be held by another
   thread and a large query takes a while, and the event loop must never wait for
   either.
2. Handlers run on the event loop, as the async client's do (a handler that returns an
   awaitable runs as a task; ``flush()`` waits for those tasks too). Events cross from
   the engine's dispatcher thread with ``call_soon_threadsafe``, at most
   ``max_pending_handlers`` at a time: past that the dispatcher thread waits, and so,
   in turn, do writers (the engine's dispatcher queue is bounded).
3. ``wait_for`` is :func:`octopus.waiting.wait_for_async`: cancelled at any await
   point, it leaves no trigger behind. :meth:`AsyncStreams.events` and
   :meth:`AsyncStreams.messages` give triggers and subscriptions as async iterators.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from octopus.engine import Engine, Session
from octopus.errors import EngineClosed, OctopusError, QueryError, TriggerNotFound
from octopus.events import DispatchedT, Event, Handler, Mode, Subscription, Trigger
from octopus.explain import DEFAULT_LIMIT, WaitExplanation
from octopus.recipes.awaitable import AsyncRecipeFactories
from octopus.recipes.store import Store
from octopus.record import Record, Value
from octopus.rules import RowHandler, RuleWatch
from octopus.waiting import wait_for_async

__all__ = ["AsyncEngine", "AsyncSession", "AsyncStreams", "EventStream", "LoopHandlers"]

T = TypeVar("T")
log = logging.getLogger("octopus.events")


class LoopHandlers:
    """Runs handlers on one event loop, tracking the tasks of async handlers so that
    ``flush`` can wait for them. Shared by AsyncSession and AsyncClient."""

    def __init__(self, max_pending: int = 10_000) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()
        self._slots = threading.BoundedSemaphore(max_pending)

    def run(self, handler: Callable[[DispatchedT], Any], event: DispatchedT) -> None:
        """Run ``handler(event)`` now (on the loop)."""
        try:
            result = handler(event)
        except Exception:
            log.exception("handler of trigger %s raised on %s event",
                          event.trigger_id, event.mode)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async handler raised", exc_info=task.exception())

    def from_thread(self, loop: asyncio.AbstractEventLoop,
                    handler: Callable[[DispatchedT], Any]) -> Callable[[DispatchedT], None]:
        """A handler for the engine's dispatcher thread that runs ``handler`` on
        ``loop``; it waits for a slot when the loop is ``max_pending`` events behind."""

        def on_loop(event: DispatchedT) -> None:
            try:
                self.run(handler, event)
            finally:
                self._slots.release()

        def hop(event: DispatchedT) -> None:
            self._slots.acquire()
            try:
                loop.call_soon_threadsafe(on_loop, event)
            except RuntimeError:    # the loop is closed: nobody to tell
                self._slots.release()

        return hop

    async def flush(self) -> None:
        """Wait for the handlers already handed to the loop, and their tasks."""
        await asyncio.sleep(0)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class _Buffer:
    """The events an :class:`EventStream` has not yet given out. The handler holds this,
    not the stream, so a stream nobody iterates any more can be garbage collected."""

    def __init__(self, limit: int) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.limit = limit
        self.overflow = False

    def put(self, event: Event) -> None:   # runs on the loop
        if self.overflow:
            return
        if self.queue.qsize() >= self.limit:
            self.overflow = True
            event = Event(Mode.REMOVED, None, event.trigger_id, event.revision)
        self.queue.put_nowait(event)


_removals: set[asyncio.Future[Any]] = set()     # removals of collected streams, running


def _remove_later(loop: asyncio.AbstractEventLoop,
                  remove: Callable[[Any], Awaitable[None]], holder: list[Any]) -> None:
    """A stream was garbage collected while installed: remove its trigger on its loop."""
    if not holder:
        return
    handle = holder.pop()

    async def removal() -> None:
        with contextlib.suppress(OctopusError):
            await remove(handle)

    def start() -> None:
        task = asyncio.ensure_future(removal())
        _removals.add(task)
        task.add_done_callback(_removals.discard)

    with contextlib.suppress(RuntimeError):     # the loop is closed: so is the engine's use
        loop.call_soon_threadsafe(start)


class EventStream:
    """Events of one trigger or subscription, as an async iterator.

    ``await stream`` installs the trigger or subscription at once (changes from then
    on are seen); otherwise it is installed when iteration starts. Iteration ends after
    the final ``Mode.REMOVED`` event (removed elsewhere, or its session closed). The
    trigger is removed by ``aclose()``, ``async with``, or when the stream is garbage
    collected (after a ``break``). At most ``max_buffered`` events wait to be read: a
    reader that falls further behind gets an OctopusError and the stream is removed
    (like a Redis client past its output buffer limit), instead of events piling up.
    """

    def __init__(self, install: Callable[[Handler], Awaitable[Trigger | Subscription]],
                 remove: Callable[[Any], Awaitable[None]],
                 max_buffered: int = 10_000) -> None:
        self._install = install
        self._remove = remove
        self._buffer = _Buffer(max_buffered)
        self._holder: list[Trigger | Subscription] = []     # the installed handle
        self._started = False
        self._done = False
        self._finalizer: weakref.finalize[..., EventStream] | None = None

    @property
    def handle(self) -> Trigger | Subscription | None:
        """The installed trigger or subscription (None before start and after close)."""
        return self._holder[0] if self._holder else None

    async def _start(self) -> EventStream:
        if not self._started:
            self._started = True
            installing = asyncio.ensure_future(self._install(self._buffer.put))
            try:
                handle = await asyncio.shield(installing)
            except asyncio.CancelledError:
                with contextlib.suppress(BaseException):
                    self._holder.append(await installing)
                await self.aclose()
                raise
            self._holder.append(handle)
            self._finalizer = weakref.finalize(self, _remove_later, asyncio.get_running_loop(),
                                               self._remove, self._holder)
        return self

    def __await__(self) -> Generator[Any, None, EventStream]:
        return self._start().__await__()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self._done:
            raise StopAsyncIteration
        await self._start()
        event = await self._buffer.queue.get()
        if event.mode == Mode.REMOVED:
            self._done = True
            if self._buffer.overflow:
                await self.aclose()
                raise OctopusError(f"the event stream fell {self._buffer.limit} events "
                                   f"behind and was removed")
            self._holder.clear()
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Remove the trigger or subscription (idempotent)."""
        self._done = True
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._holder:
            handle = self._holder.pop()
            with contextlib.suppress(TriggerNotFound, EngineClosed):
                await self._remove(handle)

    async def __aenter__(self) -> EventStream:
        return await self._start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncStreams:
    """``events`` and ``messages`` for an asyncio twin that has the Session methods."""

    watch: Callable[..., Awaitable[Trigger]]
    watch_existing: Callable[..., Awaitable[Trigger]]
    subscribe: Callable[..., Awaitable[Subscription]]
    remove_trigger: Callable[[Trigger | int], Awaitable[None]]
    unsubscribe: Callable[[Subscription | int], Awaitable[None]]

    def events(self, q: str, *params: object, on: Mode = Mode.ON_SET | Mode.ON_DEL,
               existing: bool = False, max_buffered: int = 10_000) -> EventStream:
        """Changes matching ``q`` as an :class:`EventStream` (with ``existing``: first
        one ON_SET event per current match, then changes, no gap or duplicate)."""

        def install(handler: Handler) -> Awaitable[Trigger]:
            if existing:
                return self.watch_existing(q, handler, *params, on=on)
            return self.watch(q, handler, *params, on=on)

        return EventStream(install, self.remove_trigger, max_buffered)

    def messages(self, q: str, *params: object, max_buffered: int = 10_000) -> EventStream:
        """Published messages matching ``q`` as an :class:`EventStream`."""
        return EventStream(lambda handler: self.subscribe(q, handler, *params),
                           self.unsubscribe, max_buffered)


class AsyncSession(AsyncStreams, AsyncRecipeFactories):
    """Awaitable twin of :class:`octopus.Session` (handlers run on the event loop)."""

    def __init__(self, session: Session, executor: Executor) -> None:
        #: The :class:`octopus.Session` this twin runs on the executor.
        self.twin = session
        self._executor = executor
        self._handlers = LoopHandlers()

    async def _run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args, **kwargs))

    def _on_loop(self, handler: Callable[[DispatchedT], Any]) -> Callable[[DispatchedT], None]:
        if not callable(handler):
            raise QueryError("a handler must be callable")
        return self._handlers.from_thread(asyncio.get_running_loop(), handler)

    def _with_handler(self, trigger: Trigger | None) -> Trigger | None:
        """The trigger as the engine sees it: its handler moved onto the event loop."""
        if trigger is not None and isinstance(trigger, Trigger) and not trigger.installed:
            trigger.handler = self._on_loop(trigger.handler)
        return trigger

    def _blocking_store(self) -> Store:
        return self.twin

    # --- the store ---------------------------------------------------------------------

    async def get(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        return await self._run(self.twin.get, q, *params, trigger=self._with_handler(trigger))

    async def get_names(self, q: str, *params: object,
                        trigger: Trigger | None = None) -> list[str]:
        return await self._run(self.twin.get_names, q, *params,
                               trigger=self._with_handler(trigger))

    async def get_all(self, q: str, *params: object) -> list[Record]:
        return await self._run(self.twin.get_all, q, *params)

    async def exists(self, q: str, *params: object, trigger: Trigger | None = None) -> bool:
        return await self._run(self.twin.exists, q, *params, trigger=self._with_handler(trigger))

    async def set(self, rec: str, *params: object, sequential: bool = False,
                  ephemeral: bool = False, trigger: Trigger | None = None) -> Record:
        return await self._run(self.twin.set, rec, *params, sequential=sequential,
                               ephemeral=ephemeral, trigger=self._with_handler(trigger))

    async def delete(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        return await self._run(self.twin.delete, q, *params, trigger=self._with_handler(trigger))

    async def set_many(self, records: Iterable[Record | str | tuple[str, Mapping[str, Value]]],
                       *, batch: int = 5000,
                       progress: Callable[[int], None] | None = None) -> int:
        return await self._run(self.twin.set_many, list(records), batch=batch,
                               progress=progress)

    async def load(self, source: str | os.PathLike[str] | Iterable[str], *,
                   batch: int = 10_000, progress: Callable[[int], None] | None = None
                   ) -> int:
        return await self._run(self.twin.load, source, batch=batch, progress=progress)

    # --- triggers, waiting, publish/subscribe ---------------------------------------------

    async def watch(self, q: str, handler: Handler, *params: object,
                    on: Mode = Mode.ON_SET | Mode.ON_DEL, persist: bool = True) -> Trigger:
        return await self._run(self.twin.watch, q, self._on_loop(handler), *params, on=on,
                               persist=persist)

    async def watch_existing(self, q: str, handler: Handler, *params: object,
                             on: Mode = Mode.ON_SET | Mode.ON_DEL) -> Trigger:
        return await self._run(self.twin.watch_existing, q, self._on_loop(handler), *params,
                               on=on)

    async def remove_trigger(self, trigger: Trigger | int) -> None:
        await self._run(self.twin.remove_trigger, trigger)

    async def wait_for(self, q: str, *params: object, timeout: float | None = None) -> Record:
        """The first record matching ``q`` now, else the first one set later.

        Raises WaitTimeout after ``timeout`` seconds; cancellation removes the trigger."""
        return await wait_for_async(self, q, params, timeout)

    async def explain_wait(self, q: str, *params: object,
                           limit: int = DEFAULT_LIMIT) -> WaitExplanation:
        return await self._run(self.twin.explain_wait, q, *params, limit=limit)

    async def watch_relation(self, relation: str, handler: RowHandler, *args: object,
                             on: Mode = Mode.ON_SET | Mode.ON_DEL,
                             existing: bool = False) -> RuleWatch:
        return await self._run(self.twin.watch_relation, relation,
                               self._on_loop(handler), *args,
                               on=on, existing=existing)

    async def remove_rule_watch(self, watch: RuleWatch | int) -> None:
        await self._run(self.twin.remove_rule_watch, watch)

    async def subscribe(self, q: str, handler: Handler, *params: object) -> Subscription:
        return await self._run(self.twin.subscribe, q, self._on_loop(handler), *params)

    async def unsubscribe(self, subscription: Subscription | int) -> None:
        await self._run(self.twin.unsubscribe, subscription)

    async def publish(self, message: str, *params: object) -> int:
        return await self._run(self.twin.publish, message, *params)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far has been handled, async handlers' tasks
        included (False on timeout)."""

        async def flush() -> None:
            await self._run(self.twin.flush)
            await self._handlers.flush()

        try:
            await asyncio.wait_for(flush(), timeout)
        except TimeoutError:
            return False
        return True

    async def sync(self, timeout: float | None = None) -> int:
        """See :meth:`octopus.Session.sync`."""
        return await self._run(self.twin.sync, timeout)

    async def staleness(self) -> float:
        """See :meth:`octopus.Session.staleness`."""
        return await self._run(self.twin.staleness)

    # --- sessions ----------------------------------------------------------------------------

    async def session(self) -> AsyncSession:
        """A new session of the same engine (an async context manager)."""
        return AsyncSession(await self._run(self.twin.session), self._executor)

    async def revision(self) -> int:
        """The engine's current revision (awaited, as on the async client)."""
        return self.twin.revision

    @property
    def closed(self) -> bool:
        return self.twin.closed

    async def close(self) -> None:
        await self._run(self.twin.close)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncEngine(AsyncSession):
    """Awaitable twin of :class:`octopus.Engine`; wraps ``engine`` or a new Engine (which
    it then owns and closes)."""

    def __init__(self, engine: Engine | None = None, *, workers: int = 4) -> None:
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else Engine()
        super().__init__(self.engine,
                         ThreadPoolExecutor(workers, thread_name_prefix="octopus-aio"))

    async def close(self) -> None:
        if self._owns_engine:
            await self._run(self.engine.close)
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> AsyncEngine:
        return self

"""``octopus.connect_async(url)``: :class:`AsyncClient`, the asyncio twin of
:class:`~octopus.server.client.Client` — the same API, awaited, over an asyncio protocol;
handlers run on the event loop. How both clients work is in :mod:`octopus.server.client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar, cast

from octopus.aio import AsyncStreams, LoopHandlers
from octopus.bulk import load_requests, shifted
from octopus.deadline import budget, within
from octopus.errors import (
    EngineClosed,
    OctopusError,
    QueryError,
    Unavailable,
    WaitTimeout,
)
from octopus.events import Event, Handler, Mode, Subscription, Trigger
from octopus.explain import DEFAULT_LIMIT, WaitExplanation
from octopus.recipes.awaitable import AsyncRecipeFactories
from octopus.recipes.store import Store
from octopus.record import Record
from octopus.rules import RowEvent, RowHandler, RuleWatch
from octopus.waiting import check_timeout, wait_for_async

from .client import _ignore, _session_grant
from .client_base import (
    DEFAULT_URL,
    EVENT_PUSHES,
    ConnectionState,
    R,
    _Base,
    _check,
    _decode_float,
    _decode_int,
    _decode_ok,
    _decode_text,
    _Request,
    _Requests,
)
from .resp import Push, ReplyError, reply_parser
from .sessions import keepalive

__all__ = ["AsyncClient", "connect_async"]

T = TypeVar("T")
log = logging.getLogger("octopus.client")


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _AsyncPending:
    __slots__ = ("future", "request", "sent")

    def __init__(self, request: _Request[Any], future: asyncio.Future[Any]) -> None:
        self.request = request
        self.future = future
        self.sent = time.monotonic()


class _AsyncProtocol(asyncio.Protocol):
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.parser = reply_parser()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is no subclass of asyncio.Transport: no isinstance).
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            keepalive(sock)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client._protocol is not self:
            return                          # a connection given up on
        self.parser.feed(data)
        client._heard = time.monotonic()
        try:
            while (reply := self.parser.gets()) is not False:
                if type(reply) is Push:
                    if reply and reply[0] in EVENT_PUSHES:
                        client._events += 1
                    delivery = client._event(reply)
                    if delivery is not None:
                        client._deliver(*delivery)
                    continue
                pending = client._pending.popleft()
                request, future = pending.request, pending.future
                client._on_reply(request, reply)
                if future.done():           # its caller gave up: undo what it left
                    if request.undo is not None and type(reply) is not ReplyError:
                        args = request.undo(reply)
                        if args is not None:
                            client._send_internal(_Request(args, _ignore))
                    continue
                try:
                    future.set_result(request.decode(reply))
                except Exception as e:
                    future.set_exception(e)
        except Exception as e:
            client._connection_lost(self, f"{type(e).__name__}: {e}")
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._connection_lost(self, str(exc) if exc else
                                     "the server closed the connection")


class _LoopBridge:
    """A blocking :class:`~octopus.recipes.store.Store` over an AsyncClient, for the
    threaded recipes behind :class:`~octopus.recipes.awaitable.AsyncRecipe`: each call
    runs on the client's loop while the recipe's own thread waits for it."""

    def __init__(self, client: AsyncClient, loop: asyncio.AbstractEventLoop,
                 loop_thread: threading.Thread) -> None:
        self._client = client
        self._loop = loop
        self._loop_thread = loop_thread

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._loop_thread:
            coro.close()
            raise OctopusError("a recipe's blocking call on the event loop would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def get(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        return self._wait(self._client.get(q, *params, trigger=trigger))

    def get_names(self, q: str, *params: object,
                  trigger: Trigger | None = None) -> list[str]:
        return self._wait(self._client.get_names(q, *params, trigger=trigger))

    def get_all(self, q: str, *params: object) -> list[Record]:
        return self._wait(self._client.get_all(q, *params))

    def set(self, rec: str, *params: object, sequential: bool = False,
            ephemeral: bool = False, trigger: Trigger | None = None) -> Record:
        return self._wait(self._client.set(rec, *params, sequential=sequential,
                                           ephemeral=ephemeral, trigger=trigger))

    def delete(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        return self._wait(self._client.delete(q, *params, trigger=trigger))

    def exists(self, q: str, *params: object, trigger: Trigger | None = None) -> bool:
        return self._wait(self._client.exists(q, *params, trigger=trigger))

    def watch(self, q: str, handler: Handler, *params: object,
              on: Mode = Mode.ON_SET | Mode.ON_DEL, persist: bool = True) -> Trigger:
        return self._wait(self._client.watch(q, handler, *params, on=on, persist=persist))

    def remove_trigger(self, trigger: Trigger | int) -> None:
        self._wait(self._client.remove_trigger(trigger))

    def wait_for(self, q: str, *params: object, timeout: float | None = None) -> Record:
        return self._wait(self._client.wait_for(q, *params, timeout=timeout))

    def explain_wait(self, q: str, *params: object,
                     limit: int = DEFAULT_LIMIT) -> WaitExplanation:
        return self._wait(self._client.explain_wait(q, *params, limit=limit))

    def on_handler_thread(self) -> bool:
        return threading.current_thread() is self._loop_thread   # handlers run on the loop

    def session(self) -> Store:
        return _LoopBridge(self._wait(self._client.session()), self._loop, self._loop_thread)

    def close(self) -> None:
        self._wait(self._client.close())


class AsyncClient(_Base, AsyncStreams, AsyncRecipeFactories):
    """The asyncio twin of :class:`Client`: the same methods, awaited. Handlers run on the
    event loop, in order; a handler that returns an awaitable is run as a task, and
    ``flush()`` waits for those tasks too. Create with :func:`connect_async`."""

    def __init__(self, url: str, password: str | None, name: str | None, *,
                 timeout: float | None = 10.0, socket_timeout: float | None = 10.0,
                 session_timeout: float | None = 5.0,
                 health_check_interval: float | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(url, password, name, ssl_context)
        self._transport: asyncio.Transport | None = None
        self._protocol: _AsyncProtocol | None = None
        self._loop_handlers = LoopHandlers()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = threading.current_thread()
        self._timeout = check_timeout(timeout, "timeout")
        self._socket_timeout = check_timeout(socket_timeout, "socket_timeout") or None
        self._session_timeout = check_timeout(session_timeout, "session_timeout")
        self._health = check_timeout(health_check_interval, "health_check_interval")
        self._session: tuple[int, str, float] | None = None   # id, secret, timeout
        self._events = 0
        self._listeners: list[Callable[[ConnectionState], Any]] = []
        self._suspended = False
        self._unsent: list[_AsyncPending] = []
        self._heard = time.monotonic()
        self._background: set[asyncio.Task[Any]] = set()

    async def _open(self, timeout: float | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.current_thread()
        try:
            await asyncio.wait_for(self._connect(first=True), timeout)
        except (OSError, TimeoutError) as e:
            self._abort_transport()
            raise EngineClosed(f"cannot connect to {self.url}: "
                               f"{e or 'no answer within the timeout'}") from e
        except BaseException:
            self._abort_transport()
            raise
        self._spawn(self._health_loop())

    def _abort_transport(self) -> None:
        self._protocol = None
        if self._transport is not None:
            self._transport.abort()

    async def _connect(self, *, first: bool) -> None:
        """Open a connection and shake hands: the session asked for (``first``), or
        this client's resumed."""
        loop = asyncio.get_running_loop()
        kind, where = self._address
        if kind == "unix":
            transport, protocol = await loop.create_unix_connection(
                lambda: _AsyncProtocol(self), where)
        else:
            tls: dict[str, Any] = {} if self._tls is None else {
                "ssl": self._tls, "server_hostname": where[0]}
            transport, protocol = await loop.create_connection(
                lambda: _AsyncProtocol(self), *where, **tls)
        self._transport, self._protocol = transport, protocol
        self._heard = time.monotonic()
        requests = self._handshake()
        futures = [self._send(r) for r in requests]
        session: asyncio.Future[Any] | None = None
        if first and self._session_timeout:
            session = self._send(_Request(["SESSION", "TIMEOUT", repr(self._session_timeout)],
                                          lambda r: r))
        elif not first:
            assert self._session is not None
            sid, secret, _ = self._session
            futures.append(self._send(_Request(["SESSION", "RESUME", str(sid), secret,
                                                str(self._events)], _decode_ok)))
        for future in [*futures, *([session] if session is not None else [])]:
            future.add_done_callback(_consume)     # a failed handshake fails them all
        for future in futures:
            await future
        if session is not None:
            reply = await session
            if type(reply) is not ReplyError:       # else: no resumable sessions there
                self._session = _session_grant(reply)

    def _send(self, request: _Request[R]) -> asyncio.Future[R]:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(_AsyncPending(request, future))
        self._transport.write(request.data)  # type: ignore[union-attr]  # sent while connected
        return future

    def _send_internal(self, request: _Request[Any]) -> None:
        """Send a request nobody waits for (a health check, an undo)."""
        if not self._closed and not self._suspended and self._transport is not None:
            self._send(request).cancel()

    async def _call(self, request: _Request[R]) -> R:
        if self._closed:
            raise self._closed_error()
        loop = asyncio.get_running_loop()
        if self._suspended:
            future: asyncio.Future[R] = loop.create_future()
            self._unsent.append(_AsyncPending(request, future))
        else:
            future = self._send(request)
        limit, by_deadline = budget(self._socket_timeout)
        try:
            return await asyncio.wait_for(asyncio.shield(future), limit)
        except TimeoutError:
            future.cancel()                 # abandoned: its reply, if any, is undone
            self._unsent = [p for p in self._unsent if p.future is not future]
            if not by_deadline and not self._suspended and self._transport is not None:
                self._transport.abort()     # no reply within socket_timeout: dead
            raise WaitTimeout(f"no reply from {self.url} within {limit:g} s") from None

    # --- connection states -------------------------------------------------------------

    def add_listener(self, listener: Callable[[ConnectionState], Any]) -> None:
        """Call ``listener(state)`` on every change of the connection's state (see
        :class:`ConnectionState`), on the event loop, in order with the handlers; it
        must not block (a coroutine it returns is run as a task)."""
        if not callable(listener):
            raise QueryError("a listener must be callable")
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[ConnectionState], Any]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    @property
    def state(self) -> ConnectionState:
        if self._closed:
            return ConnectionState.LOST
        return ConnectionState.SUSPENDED if self._suspended else ConnectionState.CONNECTED

    def _tell(self, state: ConnectionState) -> None:
        for listener in list(self._listeners):
            self._loop_handlers.run(lambda _, f=listener: f(state),  # type: ignore[misc]  # f= binds it
                                    Event(Mode.REMOVED, None, 0, 0))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _health_loop(self) -> None:
        """PING when idle; a call unanswered for ``socket_timeout`` drops the connection."""
        while not self._closed:
            tick = self._health or 1.0
            if self._health is None and self._session is not None:
                tick = max(min(self._session[2] / 3, 5.0), 0.05)
            await asyncio.sleep(tick)
            if self._suspended or self._closed or self._transport is None:
                continue
            now = time.monotonic()
            if self._pending:
                limit = self._socket_timeout
                if limit is not None and now - self._pending[0].sent > limit:
                    self._transport.abort()
            elif now - self._heard >= tick and (self._session or self._health):
                self._send_internal(_Request(["PING"], _ignore))

    def _connection_lost(self, protocol: _AsyncProtocol, reason: str) -> None:
        if protocol is not self._protocol or self._closed:
            return
        self._protocol = None
        if self._suspended:                 # a resume's connection failed: try again
            failed, self._pending = self._pending, deque()
            for p in failed:
                if not p.future.done():
                    p.future.set_exception(ConnectionResetError(reason))
            return
        if self._session is not None and not self._quitting:
            self._suspend(reason)
        else:
            self._lost_connection(reason)

    def _suspend(self, reason: str) -> None:
        self._suspended = True
        in_flight, self._pending = list(self._pending), deque()
        unknown = Unavailable(
            f"the connection to {self.url} was lost ({reason}) with the call in flight: "
            "its outcome is unknown; the client is resuming its session")
        redo = []
        for p in in_flight:
            if p.future.done():
                continue
            if p.request.idempotent:
                redo.append(p)
            else:
                p.future.set_exception(unknown)
        self._unsent[:0] = redo
        log.info("connection to %s lost (%s); resuming its session", self.url, reason)
        self._tell(ConnectionState.SUSPENDED)
        self._spawn(self._reconnect(reason))

    async def _reconnect(self, reason: str) -> None:
        assert self._session is not None
        session_timeout = self._session[2]
        lost_at = time.monotonic()
        deadline = lost_at + session_timeout + 1.0
        delay = 0.02
        while not self._closed:
            left = deadline - time.monotonic()
            if left <= 0:
                self._expire(f"{reason}; not resumed within {session_timeout:g} s")
                return
            try:
                await asyncio.wait_for(self._connect(first=False),
                                       min(left, self._timeout or left))
            except (OSError, TimeoutError):
                self._abort_transport()
                self._pending = deque()
                await asyncio.sleep(min(delay * (0.5 + random.random()), max(left, 0)))
                delay = min(delay * 2, 1.0)
                continue
            except OctopusError as e:
                self._abort_transport()
                self._expire(f"{reason}; {e}")
                return
            self._suspended = False
            resend, self._unsent = self._unsent, []
            for p in resend:
                if not p.future.done():
                    self._pending.append(p)
                    p.sent = time.monotonic()
                    self._transport.write(p.request.data)  # type: ignore[union-attr]  # reconnected
            log.info("session resumed on %s after %.3f s", self.url,
                     time.monotonic() - lost_at)
            self._tell(ConnectionState.CONNECTED)
            return

    def _expire(self, why: str) -> None:
        self._expired = True
        self._lost = why
        self._suspended = False
        self._lost_connection(why)

    def _deliver(self, handler: Callable[[Any], Any], event: Event | RowEvent) -> None:
        self._loop_handlers.run(handler, event)

    def _blocking_store(self) -> Store:
        assert self._loop is not None
        return _LoopBridge(self, self._loop, self._loop_thread)

    def _lost_connection(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._lost = self._lost or reason
        error = self._closed_error()
        pending = [*self._pending, *self._unsent]
        self._pending, self._unsent = deque(), []
        for p in pending:
            if not p.future.done():
                p.future.set_exception(error)
        for handler, event in self._removed_events():
            self._deliver(handler, event)
        self._tell(ConnectionState.LOST)
        for task in list(self._background):
            if task is not asyncio.current_task():
                task.cancel()

    # --- the API --------------------------------------------------------------------------

    async def get(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        return await self._call(_Requests.get(q, params, trigger))

    async def get_names(self, q: str, *params: object,
                        trigger: Trigger | None = None) -> list[str]:
        return await self._call(
            _Requests.get_names(q, params, trigger))

    async def get_all(self, q: str, *params: object) -> list[Record]:
        return await self._call(_Requests.get_all(q, params))

    async def explain_wait(self, q: str, *params: object,
                           limit: int = DEFAULT_LIMIT) -> WaitExplanation:
        """As :meth:`octopus.Client.explain_wait`."""
        return await self._call(
            _Requests.explain_wait(q, params, limit))

    async def watch_relation(self, relation: str, handler: RowHandler, *args: object,
                             on: Mode = Mode.ON_SET | Mode.ON_DEL,
                             existing: bool = False) -> RuleWatch:
        """As :meth:`octopus.Client.watch_relation`; remove the watch with
        :meth:`remove_rule_watch` (``watch.remove()`` cannot await)."""
        return await self._call(
            _Requests.watch_relation(relation, handler, args, on, existing))

    async def remove_rule_watch(self, watch: RuleWatch | int) -> None:
        await self._call(_Requests.remove_rule_watch(watch))

    async def exists(self, q: str, *params: object, trigger: Trigger | None = None) -> bool:
        return await self._call(
            _Requests.exists(q, params, trigger))

    async def set(self, rec: str, *params: object, sequential: bool = False,
                  ephemeral: bool = False, trigger: Trigger | None = None) -> Record:
        return await self._call(
            _Requests.set(rec, params, sequential, ephemeral, trigger))

    async def delete(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        return await self._call(
            _Requests.delete(q, params, trigger))

    async def watch(self, q: str, handler: Handler, *params: object,
                    on: Mode = Mode.ON_SET | Mode.ON_DEL, persist: bool = True) -> Trigger:
        return await self._call(
            _Requests.watch(q, handler, params, on, persist, existing=False))

    async def watch_existing(self, q: str, handler: Handler, *params: object,
                             on: Mode = Mode.ON_SET | Mode.ON_DEL) -> Trigger:
        return await self._call(
            _Requests.watch(q, handler, params, on, True, existing=True))

    async def remove_trigger(self, trigger: Trigger | int) -> None:
        await self._call(_Requests.remove_trigger(trigger))

    async def wait_for(self, q: str, *params: object, timeout: float | None = None) -> Record:
        """The first record matching ``q`` now, else the first one set later.

        Raises WaitTimeout after ``timeout`` seconds; cancellation removes the trigger."""
        seconds = check_timeout(timeout)
        try:
            with within(None if seconds is None else time.monotonic() + seconds):
                return await wait_for_async(self, q, params, timeout)
        except EngineClosed:
            raise self._closed_error() if self._closed else EngineClosed(
                "closed while waiting") from None

    async def subscribe(self, q: str, handler: Handler, *params: object) -> Subscription:
        return await self._call(
            _Requests.subscribe(q, handler, params))

    async def unsubscribe(self, subscription: Subscription | int) -> None:
        await self._call(_Requests.unsubscribe(subscription))

    async def publish(self, message: str, *params: object) -> int:
        return await self._call(_Requests.publish(message, params))

    async def load(self, source: str | os.PathLike[str] | Iterable[str], *,
                   batch: int = 10_000, progress: Callable[[int], None] | None = None
                   ) -> int:
        # As Client.load; the file is read on the loop (1 MiB at a time).
        total = 0
        try:
            for first, text in load_requests(source, batch):
                try:
                    total += await self._call(_Request([b"LOAD", text], _decode_int))
                except OctopusError as e:
                    raise shifted(e, first - 1, total) from None
                if progress is not None:
                    progress(total)
        except OctopusError as e:
            if not hasattr(e, "loaded"):
                e.loaded = total      # type: ignore[attr-defined]
            raise
        return total

    async def flush(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._flush(), timeout)
        except TimeoutError:
            return False
        return True

    async def _flush(self) -> None:
        await self._call(_Request(["FLUSH"], _decode_ok, idempotent=True))
        await self._loop_handlers.flush()

    async def sync(self, timeout: float | None = None) -> int:
        """See :meth:`octopus.Session.sync` (a server that is not a replica answers its
        revision)."""
        try:
            return await self._call(_Request(["SYNC"], _decode_int))
        except OctopusError as e:
            if "unknown command" not in str(e):
                raise
            return await self._call(_Request(["REVISION"], _decode_int))

    async def staleness(self) -> float:
        """See :meth:`octopus.Session.staleness`."""
        try:
            return await self._call(_Request(["STALENESS"], _decode_float))
        except OctopusError as e:
            if "unknown command" not in str(e):
                raise
            return 0.0

    async def session(self) -> AsyncClient:
        if self._closed:
            raise self._closed_error()
        return await connect_async(self.url, password=self._password, name=self._name,
                                   timeout=self._timeout, socket_timeout=self._socket_timeout,
                                   session_timeout=self._session_timeout,
                                   health_check_interval=self._health)

    async def revision(self) -> int:
        """The server's current revision (a coroutine here, a property on Client)."""
        return await self._call(_Request(["REVISION"], _decode_int))

    @property
    def closed(self) -> bool:
        return self._closed

    async def info(self) -> str:
        return await self._call(
            _Request(["INFO"], _decode_text))

    async def close(self) -> None:
        if not self._closed:
            self._quitting = True
            if not self._suspended:         # else the server lets the session expire
                with contextlib.suppress(OctopusError):
                    await self._call(_Request(["QUIT"], _check))
            self._lost_connection("closed")
        if self._transport is not None:
            self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect_async(url: str = DEFAULT_URL, *, password: str | None = None,
                        name: str | None = None, timeout: float | None = 10.0,
                        socket_timeout: float | None = 10.0,
                        session_timeout: float | None = 5.0,
                        health_check_interval: float | None = None,
                        ssl_context: ssl.SSLContext | None = None) -> AsyncClient:
    """Connect an :class:`AsyncClient` (``await octopus.connect_async(url)``); the
    arguments, URLs, credentials and TLS are :func:`octopus.connect`'s."""
    client = AsyncClient(url, password, name, timeout=timeout, socket_timeout=socket_timeout,
                         session_timeout=session_timeout,
                         health_check_interval=health_check_interval, ssl_context=ssl_context)
    await client._open(client._timeout)
    return client

"""``octopus.connect_async(url)``: :class:`AsyncClient`, the asyncio twin of
:class:`~octopus.server.client.Client` — the same API, awaited, over an asyncio protocol;
handlers run on the event loop. How both clients work is in :mod:`octopus.server.client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections import deque
from collections.abc import Coroutine
from typing import Any, TypeVar

from octopus.aio import AsyncStreams, LoopHandlers
from octopus.errors import (
    EngineClosed,
    OctopusError,
)
from octopus.events import Event, Handler, Mode, Subscription, Trigger
from octopus.recipes.awaitable import AsyncRecipeFactories
from octopus.recipes.store import Store
from octopus.record import Record
from octopus.waiting import wait_for_async

from .client_base import (
    DEFAULT_URL,
    _Base,
    _check,
    _decode_float,
    _decode_int,
    _decode_ok,
    _Request,
    _Requests,
)
from .resp import Push, reply_parser

__all__ = ["AsyncClient", "connect_async"]

T = TypeVar("T")


class _AsyncProtocol(asyncio.Protocol):
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.parser = reply_parser()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        client = self.client
        try:
            while (reply := self.parser.gets()) is not False:
                if type(reply) is Push:
                    delivery = client._event(reply)
                    if delivery is not None:
                        client._deliver(*delivery)
                    continue
                request, future = client._pending.popleft()
                client._on_reply(request, reply)
                if future.done():
                    continue
                try:
                    future.set_result(request.decode(reply))
                except Exception as e:
                    future.set_exception(e)
        except Exception as e:
            client._lost_connection(f"{type(e).__name__}: {e}")
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost_connection(str(exc) if exc else "the server closed the connection")


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

    def __init__(self, url: str, password: str | None, name: str | None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(url, password, name, ssl_context)
        self._transport: asyncio.Transport | None = None
        self._loop_handlers = LoopHandlers()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = threading.current_thread()

    async def _open(self, timeout: float | None) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.current_thread()
        kind, where = self._address
        try:
            if kind == "unix":
                coro = loop.create_unix_connection(lambda: _AsyncProtocol(self), where)
            else:
                tls = {} if self._tls is None else {"ssl": self._tls,
                                                    "server_hostname": where[0]}
                coro = loop.create_connection(lambda: _AsyncProtocol(self), *where, **tls)
            transport, _ = await asyncio.wait_for(coro, timeout)
        except (OSError, TimeoutError) as e:
            raise EngineClosed(f"cannot connect to {self.url}: {e}") from e
        self._transport = transport  # type: ignore[assignment]
        for request in self._handshake():
            try:
                await self._call(request)
            except BaseException:
                await self.close()
                raise

    def _call(self, request: _Request) -> asyncio.Future[Any]:
        if self._closed:
            raise self._closed_error()
        future = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        self._transport.write(request.data)  # type: ignore[union-attr]
        return future

    def _deliver(self, handler: Handler, event: Event) -> None:
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
        pending, self._pending = self._pending, deque()
        for _, future in pending:
            if not future.done():
                future.set_exception(error)
        for handler, event in self._removed_events():
            self._deliver(handler, event)

    # --- the API --------------------------------------------------------------------------

    async def get(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        return await self._call(_Requests.get(q, params, trigger))  # type: ignore[no-any-return]

    async def get_names(self, q: str, *params: object,
                        trigger: Trigger | None = None) -> list[str]:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.get_names(q, params, trigger))

    async def get_all(self, q: str, *params: object) -> list[Record]:
        return await self._call(_Requests.get_all(q, params))  # type: ignore[no-any-return]

    async def exists(self, q: str, *params: object, trigger: Trigger | None = None) -> bool:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.exists(q, params, trigger))

    async def set(self, rec: str, *params: object, sequential: bool = False,
                  ephemeral: bool = False, trigger: Trigger | None = None) -> Record:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.set(rec, params, sequential, ephemeral, trigger))

    async def delete(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.delete(q, params, trigger))

    async def watch(self, q: str, handler: Handler, *params: object,
                    on: Mode = Mode.ON_SET | Mode.ON_DEL, persist: bool = True) -> Trigger:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.watch(q, handler, params, on, persist, existing=False))

    async def watch_existing(self, q: str, handler: Handler, *params: object,
                             on: Mode = Mode.ON_SET | Mode.ON_DEL) -> Trigger:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.watch(q, handler, params, on, True, existing=True))

    async def remove_trigger(self, trigger: Trigger | int) -> None:
        await self._call(_Requests.remove_trigger(trigger))

    async def wait_for(self, q: str, *params: object, timeout: float | None = None) -> Record:
        """The first record matching ``q`` now, else the first one set later.

        Raises WaitTimeout after ``timeout`` seconds; cancellation removes the trigger."""
        try:
            return await wait_for_async(self, q, params, timeout)
        except EngineClosed:
            raise self._closed_error() if self._closed else EngineClosed(
                "closed while waiting") from None

    async def subscribe(self, q: str, handler: Handler, *params: object) -> Subscription:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.subscribe(q, handler, params))

    async def unsubscribe(self, subscription: Subscription | int) -> None:
        await self._call(_Requests.unsubscribe(subscription))

    async def publish(self, message: str, *params: object) -> int:
        return await self._call(_Requests.publish(message, params))  # type: ignore[no-any-return]

    async def flush(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._flush(), timeout)
        except TimeoutError:
            return False
        return True

    async def _flush(self) -> None:
        await self._call(_Request(["FLUSH"], _decode_ok))
        await self._loop_handlers.flush()

    async def sync(self, timeout: float | None = None) -> int:
        """See :meth:`octopus.Session.sync` (a server that is not a replica answers its
        revision)."""
        try:
            return await self._call(_Request(["SYNC"], _decode_int))  # type: ignore[no-any-return]
        except OctopusError as e:
            if "unknown command" not in str(e):
                raise
            return await self._call(_Request(["REVISION"], _decode_int))  # type: ignore[no-any-return]

    async def staleness(self) -> float:
        """See :meth:`octopus.Session.staleness`."""
        try:
            return await self._call(_Request(["STALENESS"], _decode_float))  # type: ignore[no-any-return]
        except OctopusError as e:
            if "unknown command" not in str(e):
                raise
            return 0.0

    async def session(self) -> AsyncClient:
        if self._closed:
            raise self._closed_error()
        return await connect_async(self.url, password=self._password, name=self._name)

    async def revision(self) -> int:
        """The server's current revision (a coroutine here, a property on Client)."""
        return await self._call(_Request(["REVISION"], _decode_int))  # type: ignore[no-any-return]

    @property
    def closed(self) -> bool:
        return self._closed

    async def info(self) -> str:
        return await self._call(  # type: ignore[no-any-return]
            _Request(["INFO"], lambda r: _check(r).decode()))

    async def close(self) -> None:
        if not self._closed:
            self._quitting = True
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
                        ssl_context: ssl.SSLContext | None = None) -> AsyncClient:
    """Connect an :class:`AsyncClient` (``await octopus.connect_async(url)``); the URLs,
    credentials and TLS are those of :func:`octopus.connect`."""
    client = AsyncClient(url, password, name, ssl_context)
    await client._open(timeout)
    return client

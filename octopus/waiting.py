"""``wait_for``, written once: the record that matches now, else the first one set later.

Every store waits this way: :class:`~octopus.engine.Session` and the network
:class:`~octopus.server.client.Client` with :func:`wait_for`,
:class:`~octopus.aio.AsyncSession` and :class:`~octopus.server.async_client.AsyncClient`
with :func:`wait_for_async` (and the server's ``WAIT`` runs ``AsyncSession.wait_for``).
The two drivers differ only in how they block; :class:`RecordWait` holds what they share.

How a wait works, and why it has no race:

1. One ``get`` with a one-shot ON_SET trigger installed only if nothing matched
   (``install_if="missing"``): reading and watching are one atomic call, so a record set
   after the read is seen by the trigger.
2. Block until the trigger's event arrives or the timeout passes.
3. Remove the trigger however the wait ends: found at once, event, timeout, error or
   (async) cancellation at any await point; a cancelled wait first lets its in-flight
   ``get`` finish, then removes what it installed. No trigger outlives the call.
4. An event without a record is the REMOVED event of a trigger whose session or engine
   closed: the wait raises :class:`~octopus.errors.EngineClosed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from octopus.errors import EngineClosed, NotFound, QueryError, TriggerNotFound, WaitTimeout
from octopus.events import Event, Mode, Trigger
from octopus.record import Record

__all__ = ["RecordWait", "check_timeout", "wait_for", "wait_for_async"]


def check_timeout(timeout: object, what: str = "timeout") -> float | None:
    """Seconds to wait: None (or a time too long to wait for, such as ``inf``) waits for
    ever; a negative number does not wait. Anything else is a QueryError."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise QueryError(f"{what} must be a number of seconds or None, "
                         f"got {type(timeout).__name__}")
    if isinstance(timeout, float) and math.isnan(timeout):
        raise QueryError(f"{what} must be a number of seconds or None, got nan")
    if timeout >= threading.TIMEOUT_MAX:
        return None
    return max(float(timeout), 0.0)


class SyncStore(Protocol):
    def get(self, q: str, *params: object, trigger: Trigger | None = None) -> Record: ...

    def remove_trigger(self, trigger: Trigger | int) -> None: ...


class AsyncStore(Protocol):
    def get(self, q: str, *params: object,
            trigger: Trigger | None = None) -> Awaitable[Record]: ...

    def remove_trigger(self, trigger: Trigger | int) -> Awaitable[None]: ...


class RecordWait:
    """One wait, without blocking: the trigger to install with the first ``get``, the
    event that arrived, and what the wait returns or raises."""

    def __init__(self, q: str, timeout: object, notify: Callable[[], object]) -> None:
        self.timeout = check_timeout(timeout)
        self.event: Event | None = None
        self._q = q
        self._notify = notify
        self.trigger = Trigger(self._arrive, on=Mode.ON_SET, install_if="missing")

    def _arrive(self, event: Event) -> None:   # the trigger's handler
        if self.event is None:
            self.event = event
            self._notify()

    def timed_out(self) -> WaitTimeout:
        return WaitTimeout(f"no record matching {self._q!r} within {self.timeout} s")

    def outcome(self) -> Record:
        """The record that arrived (after the event)."""
        assert self.event is not None
        if self.event.record is None:
            raise EngineClosed("closed while waiting")
        return self.event.record


def wait_for(store: SyncStore, q: str, params: tuple[object, ...],
             timeout: object) -> Record:
    """The blocking driver (threads)."""
    arrived = threading.Event()
    wait = RecordWait(q, timeout, arrived.set)
    started = time.monotonic()
    try:
        return store.get(q, *params, trigger=wait.trigger)
    except NotFound:
        pass
    try:
        # The get may have taken a while (over a network): wait only for what is left.
        left = None if wait.timeout is None else \
            max(wait.timeout - (time.monotonic() - started), 0.0)
        if not arrived.wait(left):
            raise wait.timed_out()
    finally:
        if wait.trigger.installed:
            with contextlib.suppress(TriggerNotFound, EngineClosed):
                store.remove_trigger(wait.trigger)
    return wait.outcome()


async def wait_for_async(store: AsyncStore, q: str, params: tuple[object, ...],
                         timeout: object) -> Record:
    """The asyncio driver. The trigger's handler may run on any thread."""
    loop = asyncio.get_running_loop()
    arrived: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not arrived.done():
            arrived.set_result(None)

    def notify() -> None:
        with contextlib.suppress(RuntimeError):     # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle)

    wait = RecordWait(q, timeout, notify)
    first = asyncio.ensure_future(store.get(q, *params, trigger=wait.trigger))
    try:
        try:
            return await asyncio.shield(first)
        except NotFound:
            pass
        try:
            await asyncio.wait_for(asyncio.shield(arrived), wait.timeout)
        except TimeoutError:
            raise wait.timed_out() from None
        return wait.outcome()
    finally:
        if not first.done():
            # Cancelled while the get runs: it may still install the trigger.
            with contextlib.suppress(BaseException):
                await asyncio.shield(first)
        if wait.trigger.installed:
            with contextlib.suppress(TriggerNotFound, EngineClosed):
                await asyncio.shield(asyncio.ensure_future(
                    store.remove_trigger(wait.trigger)))

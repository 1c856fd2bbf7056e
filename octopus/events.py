"""What a user of triggers and subscriptions handles, and the thread that runs handlers.

:class:`Trigger` and :class:`Subscription` are what a caller installs, :class:`Event` what
a handler receives, :class:`Mode` what a trigger watches and an event reports.
:class:`Dispatcher` is the one thread per engine (and per network client) that runs
handlers. Which triggers a change matches is decided by :mod:`octopus.registry`.

Theory of operation (docs/guarantees.md has the guarantees):

1. Events are appended to the dispatcher's queue by the core in the critical section
   of the change they report, hence in revision order, and delivered by one thread in
   that order. Handlers never run under the engine's lock and may call the engine.
2. A handler that raises (anything, ``SystemExit`` and ``KeyboardInterrupt`` included)
   is logged with its trigger id and the dispatcher goes on; a slow handler delays later
   events but loses none.
3. The queue is bounded: past ``max_pending`` queued events, writers wait (outside the
   engine lock, in :meth:`Dispatcher.wait_for_room`) until handlers catch up. The
   dispatcher thread itself never waits for room, so a handler may write.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from octopus.errors import QueryError
from octopus.record import Record

__all__ = ["Dispatcher", "Event", "Handler", "Mode", "Subscription", "Trigger"]

log = logging.getLogger("octopus.events")

InstallIf = Literal["always", "found", "missing"]

_claims = threading.Lock()      # makes Trigger._claim atomic


class Mode(enum.Flag):
    """What a trigger watches, and what an event reports."""

    ON_SET = 1
    ON_DEL = 2
    REMOVED = 4
    ON_PUBLISH = 8


@dataclass(frozen=True, slots=True)
class Event:
    """One delivery to a handler.

    ``record`` is the new record (ON_SET), the deleted one (ON_DEL), the message
    (ON_PUBLISH) or None (a final REMOVED event). ``revision`` is the revision of the
    change (for ON_PUBLISH and REMOVED: the store's revision when it happened).
    """

    mode: Mode
    record: Record | None
    trigger_id: int
    revision: int


Handler = Callable[[Event], Any]


class Trigger:
    """A query to watch for future changes, installed with a store call (``trigger=``).

    ``on`` selects ON_SET and/or ON_DEL; a one-shot trigger (``persist=False``) is
    removed after its first event. ``install_if`` is ``"always"``, ``"found"`` (only if
    the call found or stored a record) or ``"missing"`` (only if it found nothing).
    ``id`` is set when the trigger is installed; a Trigger object is installed once.
    """

    def __init__(self, handler: Handler, on: Mode = Mode.ON_SET | Mode.ON_DEL,
                 persist: bool = False, install_if: InstallIf = "always") -> None:
        if not callable(handler):
            raise QueryError("a trigger's handler must be callable")
        if not isinstance(on, Mode) or not on & (Mode.ON_SET | Mode.ON_DEL) \
                or on & (Mode.REMOVED | Mode.ON_PUBLISH):
            raise QueryError(f"a trigger watches Mode.ON_SET and/or Mode.ON_DEL, not {on!r}")
        if install_if not in ("always", "found", "missing"):
            raise QueryError(f"install_if must be 'always', 'found' or 'missing', "
                             f"not {install_if!r}")
        self.handler = handler
        self.on = on
        self.persist = bool(persist)
        self.install_if = install_if
        self.id: int | None = None
        self.query: str | None = None
        self._claimed = False

    @property
    def installed(self) -> bool:
        return self.id is not None

    def _claim(self) -> None:
        """Reserve this object for one call (which may install it). Atomic, so the same
        object passed by two threads at once is installed at most once."""
        with _claims:
            if self.id is not None or self._claimed:
                raise QueryError("this Trigger object is already installed; make a new one")
            self._claimed = True

    def _unclaim(self) -> None:
        """The call that claimed it did not install it: it may be passed again."""
        self._claimed = False

    def __repr__(self) -> str:
        return (f"<Trigger id={self.id} on={self.on} persist={self.persist} "
                f"query={self.query!r}>")


class Subscription:
    """A content-based subscription: receives every published message matching ``query``."""

    def __init__(self, handler: Handler, query: str, sub_id: int) -> None:
        self.handler = handler
        self.query = query
        self.id = sub_id

    def __repr__(self) -> str:
        return f"<Subscription id={self.id} query={self.query!r}>"


class Dispatched(Protocol):
    """What the dispatcher needs of an event (an Event, a rules RowEvent): enough to
    name it when its handler raises."""

    @property
    def trigger_id(self) -> int: ...

    @property
    def mode(self) -> Mode: ...


DispatchedT = TypeVar("DispatchedT", bound=Dispatched)


class Dispatcher:
    """One thread that runs handlers, in the order events were queued."""

    def __init__(self, name: str, max_pending: int = 100_000) -> None:
        # Each handler is queued with an event of the type it takes (put's signature).
        self._queue: deque[tuple[Callable[[Any], Any], Dispatched]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._queued = 0        # events ever queued
        self._done = 0          # events ever handled
        self._stopping = False
        self.max_pending = max_pending
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def pending(self) -> int:
        """Events queued and not yet handled."""
        return self._queued - self._done

    def put(self, handler: Callable[[DispatchedT], Any], event: DispatchedT) -> None:
        with self._cond:
            self._queue.append((handler, event))
            self._queued += 1
            self._cond.notify_all()

    def put_many(self,
                 items: Iterable[tuple[Callable[[DispatchedT], Any], DispatchedT]]) -> None:
        with self._cond:
            for item in items:
                self._queue.append(item)
                self._queued += 1
            self._cond.notify_all()

    def wait_for_room(self) -> None:
        """Wait until fewer than ``max_pending`` events are queued. Writers call this
        outside the engine lock; from the dispatcher thread it returns at once."""
        if self._queued - self._done < self.max_pending:
            return
        if threading.current_thread() is self._thread:
            return
        with self._cond:
            self._cond.wait_for(
                lambda: self._queued - self._done < self.max_pending or self._stopping)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued before this call has been handled.

        Returns False on timeout. From a handler (the dispatcher thread itself) it
        returns True at once: waiting there could never end.
        """
        if threading.current_thread() is self._thread:
            return True
        with self._cond:
            target = self._queued
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def stop(self, timeout: float | None = 5.0) -> None:
        """Handle what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                handler, event = self._queue.popleft()
            try:
                handler(event)
            except BaseException:
                # SystemExit and KeyboardInterrupt too: they belong to the handler, and
                # letting them end this thread would lose every later event.
                log.exception("handler of trigger %s raised on %s event",
                              event.trigger_id, event.mode)
            with self._cond:
                self._done += 1
                self._cond.notify_all()

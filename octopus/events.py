"""Triggers, subscriptions, their roaring-bitmap index, and the event dispatcher.

Theory of operation (the guarantees of SPEC sections 4 and 5):

1. Every change (set, delete, publish) is matched against installed triggers while the
   engine holds its lock, in the same critical section as the change itself. So each
   change that matches an installed trigger yields exactly one event for it, and a
   trigger installed with a call sees every change after that call and none before.
2. Matching is two-step: :class:`QueryIndex` narrows the change down to candidate ids
   with roaring bitmaps (each query sits in exactly one bitmap, keyed by the most
   selective thing it requires: its exact name, else one ``key == value`` it requires,
   else one key it requires, else the bitmap of unconstrained queries); then Prolog
   runs the full match on the candidates only. Non-matching triggers therefore cost
   (almost) nothing. Candidates whose query is a bare name or ``_`` match by being
   candidates and skip the Prolog step.
3. Events are appended to the :class:`Dispatcher` queue under the engine lock, hence
   in revision order, and delivered by one dispatcher thread per engine, in that
   order. Handlers never run under the engine lock and may call the engine.
4. A one-shot trigger leaves the index in the critical section where it matches, so
   it fires once; its event carries ``Mode.REMOVED``. Removing a trigger queues a last
   event with mode exactly ``Mode.REMOVED`` after all of its earlier events.
5. A handler that raises is logged (with the trigger id) and the dispatcher goes on;
   a slow handler delays later events but loses none.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pyroaring import BitMap64

from octopus.errors import EngineClosed, NotFound, QueryError, TriggerNotFound, WaitTimeout
from octopus.query.compile import CompiledQuery
from octopus.record import Record, Value

__all__ = ["Dispatcher", "Event", "Mode", "QueryIndex", "Subscription", "Trigger",
           "wait_with_trigger"]

log = logging.getLogger("octopus.events")

InstallIf = Literal["always", "found", "missing"]


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

    @property
    def installed(self) -> bool:
        return self.id is not None

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


def _value_key(value: Value) -> Any:
    """Index key of a value, equal for values the query language calls equal
    (1 and 1.0 already are; a bool must not collide with 1 or 0)."""
    if isinstance(value, bool):
        return ("bool", value)
    return value


class QueryIndex:
    """Candidate ids for a record: a superset of the ids whose query matches it."""

    def __init__(self) -> None:
        self.by_name: dict[str, BitMap64] = {}
        self.by_value: dict[tuple[str, Any], BitMap64] = {}
        self.by_key: dict[str, BitMap64] = {}
        self.unconstrained = BitMap64()
        # Queries a record matches whenever it is a candidate for them (a plain name or
        # `_`, no constraints): they need no full match in Prolog.
        self.certain = BitMap64()
        self.slot: dict[int, tuple[dict[Any, BitMap64] | None, Any]] = {}

    def __len__(self) -> int:
        return len(self.slot)

    def add(self, qid: int, query: CompiledQuery) -> None:
        table: dict[Any, BitMap64] | None
        if query.exact_name is not None:
            table, key = self.by_name, query.exact_name
        else:
            table, key = None, None
            for k, op, value in query.constraints:
                if op == "eq":
                    if type(value) is tuple:        # an identifier, ("a", text)
                        value = value[1]
                    table, key = self.by_value, (k, _value_key(value))
                    break
            if table is None and query.constraints:
                table, key = self.by_key, query.constraints[0][0]
        if not query.constraints and not isinstance(query.name, tuple):
            self.certain.add(qid)
        if table is None:
            self.unconstrained.add(qid)
        else:
            bitmap = table.get(key)
            if bitmap is None:
                bitmap = table[key] = BitMap64()
            bitmap.add(qid)
        self.slot[qid] = (table, key)

    def remove(self, qid: int) -> None:
        table, key = self.slot.pop(qid)
        self.certain.discard(qid)
        if table is None:
            self.unconstrained.discard(qid)
            return
        bitmap = table[key]
        bitmap.discard(qid)
        if not bitmap:
            del table[key]

    def candidates(self, name: str, attributes: Mapping[str, Value]) -> BitMap64:
        found = [self.unconstrained]
        bitmap = self.by_name.get(name)
        if bitmap is not None:
            found.append(bitmap)
        if self.by_value:
            for item in attributes.items():
                bitmap = self.by_value.get((item[0], _value_key(item[1])))
                if bitmap is not None:
                    found.append(bitmap)
        if self.by_key:
            for key in attributes:
                bitmap = self.by_key.get(key)
                if bitmap is not None:
                    found.append(bitmap)
        return found[0] if len(found) == 1 else BitMap64.union(*found)


def wait_with_trigger(get: Callable[..., Record], remove: Callable[[Trigger], None],
                      q: str, params: tuple[object, ...], timeout: float | None) -> Record | None:
    """``wait_for`` on any store: the record ``get(q, *params, trigger=t)`` finds now, else
    the record of the first ON_SET event of ``t`` (installed only if nothing matched).

    Returns None if the trigger ended without an event (its session closed); raises
    WaitTimeout after ``timeout`` seconds. Leaves no trigger behind however it ends.
    """
    arrived = threading.Event()
    events: list[Event] = []

    def handler(event: Event) -> None:
        events.append(event)
        arrived.set()

    trigger = Trigger(handler, on=Mode.ON_SET, install_if="missing")
    try:
        return get(q, *params, trigger=trigger)
    except NotFound:
        pass
    try:
        if not arrived.wait(timeout):
            raise WaitTimeout(f"no record matching {q!r} within {timeout} s")
    finally:
        with contextlib.suppress(TriggerNotFound, EngineClosed):
            remove(trigger)
    return events[0].record


class Dispatcher:
    """One thread that runs handlers, in the order events were queued."""

    def __init__(self, name: str) -> None:
        self._queue: deque[tuple[Handler, Event]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._queued = 0        # events ever queued
        self._done = 0          # events ever handled
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def put(self, handler: Handler, event: Event) -> None:
        with self._cond:
            self._queue.append((handler, event))
            self._queued += 1
            self._cond.notify_all()

    def put_many(self, items: Iterable[tuple[Handler, Event]]) -> None:
        with self._cond:
            for item in items:
                self._queue.append(item)
                self._queued += 1
            self._cond.notify_all()

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
            except Exception:
                log.exception("handler of trigger %s raised on %s event",
                              event.trigger_id, event.mode)
            with self._cond:
                self._done += 1
                self._cond.notify_all()

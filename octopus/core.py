"""The core of an engine: it owns every piece of state, and every change passes through it.

:class:`~octopus.engine.Session`, :class:`~octopus.engine.Engine` and the asyncio
:class:`~octopus.aio.AsyncSession` are thin handles: a core and a session id.

Theory of operation (the guarantees are in docs/guarantees.md):

1. One :class:`Core` per engine owns the state: the Prolog store
   (:class:`~octopus.adapter.PrologStore`), the revision counter, the sessions (by id)
   and the owners of ephemeral records, the trigger registry
   (:class:`~octopus.registry.TriggerRegistry`), the event dispatcher, the knowledge
   base, and the observers of the change stream. Nothing else changes any of them.
2. Every call compiles its text first, outside the lock: a bad query or bad parameters
   raise before anything changes. Then it takes the core's lock once for its whole
   effect: the store change, the revision, the change stream, and installing the call's
   own trigger. Calls are atomic with respect to each other and to trigger
   installation. Nothing under the lock waits for anything but Prolog.
3. **The change stream.** Every committed change leaves the core exactly once, in
   revision order, as a :class:`Change` (revision, operation, name, the stored or
   deleted record, the owning session), handed to every observer inside the commit,
   under the lock. The trigger registry is the first observer (its deliveries go to the
   dispatcher queue, hence in revision order); durability and replication observe the
   same stream. An observer must not block or call the engine.
4. Handlers run on the dispatcher thread, never under the lock. After a write, and
   outside the lock, a writer waits while the dispatcher queue is full, so a slow
   handler slows writers down instead of letting the queue grow without bound.
5. A session's ephemeral records, triggers and subscriptions end when it closes: its
   records are deleted in natural name order (each an ON_DEL change like any delete),
   then its triggers and subscriptions get their REMOVED events. Only the session that
   installed a trigger or subscription may remove it.
6. :meth:`Core.close` closes every session, then empties the Prolog store and the
   knowledge base and stops the dispatcher. A core dropped without ``close()`` gives its
   Prolog modules back at the next safe point (another core's creation or close), never
   from the garbage collector's thread of the moment.
"""

from __future__ import annotations

import enum
import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from octopus.adapter import PrologStore, encode_attributes
from octopus.errors import ConditionFailed, EngineClosed, NotFound, QueryError, TriggerNotFound
from octopus.events import Dispatcher, Event, Handler, Mode, Subscription, Trigger
from octopus.kb import KnowledgeBase
from octopus.query.compile import CompiledQuery, compile_query, compile_record
from octopus.record import (
    Atom,
    Record,
    Value,
    check_value,
    is_name,
    natural_key,
    natural_sorted,
    short_repr,
)
from octopus.registry import TriggerRegistry

__all__ = ["Change", "ChangeOp", "Core", "Observer"]

_core_numbers = itertools.count(1)


class ChangeOp(enum.Enum):
    """What a change did to its record."""

    SET = "set"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change, as the change stream hands it to observers.

    ``record`` is the record as stored (SET) or as it was before the deletion (DELETE,
    its ``revision`` that of its last set); ``owner`` is the id of the session whose
    ephemeral record it is (after a SET, before a DELETE), or None.
    """

    revision: int
    op: ChangeOp
    name: str
    record: Record
    owner: int | None


#: An observer of the change stream (see the theory of operation, point 3).
Observer = Callable[[Change], None]

# One row of a bulk load: name, attributes encoded for Prolog, attributes.
_Row = tuple[str, list[tuple[str, Any]], dict[str, Value]]


class _Resources:
    """What a core must give back (Prolog modules, the dispatcher thread), kept apart
    from the core so that a finalizer can release them without keeping it alive."""

    def __init__(self, store: PrologStore) -> None:
        self.store: PrologStore | None = store
        self.kb: KnowledgeBase | None = None
        self.dispatcher: Dispatcher | None = None

    def release(self, *, at_safe_point: bool) -> None:
        store, kb, dispatcher = self.store, self.kb, self.dispatcher
        self.store = self.kb = None
        if dispatcher is not None:
            dispatcher.stop(timeout=5.0 if at_safe_point else 0)
        for release in (store and store.destroy, kb and kb.close):
            if release:
                if at_safe_point:
                    release()
                else:
                    with _graveyard_lock:
                        _graveyard.append(release)


_graveyard: list[Callable[[], None]] = []      # releases left by dropped cores
_graveyard_lock = threading.Lock()


def _bury_dropped() -> None:
    """Give back the Prolog modules of cores dropped without close (a safe point)."""
    with _graveyard_lock:
        pending = _graveyard[:]
        _graveyard.clear()
    for release in pending:
        release()


def _release_dropped(resources: _Resources) -> None:
    resources.release(at_safe_point=False)


class Core:
    """The state of one engine and every operation on it (see the theory of operation).

    Every public method takes the id of the calling session first.
    """

    def __init__(self, max_query_length: int) -> None:
        _bury_dropped()
        self.number = next(_core_numbers)
        self.max_query_length = max_query_length
        self.lock = threading.Lock()
        self.revision = 0
        self.closed = False
        self.store = PrologStore()
        self.registry = TriggerRegistry(self.store)
        self._resources = _Resources(self.store)
        self._sessions: dict[int, set[str]] = {}       # open session -> its ephemeral names
        self._owners: dict[str, int] = {}              # ephemeral record -> its session
        self._session_ids = itertools.count(1)
        self._observers: list[Observer] = [self._deliver_triggers]
        self._kb_lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _release_dropped, self._resources)
        self._finalizer.atexit = False

    # --- sessions ----------------------------------------------------------------------

    def open_session(self) -> int:
        """A new session's id."""
        with self.lock:
            self._check_core()
            sid = next(self._session_ids)
            self._sessions[sid] = set()
            return sid

    def is_open(self, sid: int) -> bool:
        return not self.closed and sid in self._sessions

    def close_session(self, sid: int) -> None:
        """End a session (idempotent): delete its ephemeral records, then remove its
        triggers and subscriptions."""
        with self.lock:
            if sid in self._sessions:
                self._close_session_locked(sid)
        self._after_write()

    def _close_session_locked(self, sid: int) -> None:
        for name in sorted(self._sessions[sid], key=natural_key):
            self._delete_locked(name, [])
        for qid in self.registry.owned_by(sid):
            self._remove_locked(qid)
        del self._sessions[sid]

    def _check_core(self) -> None:
        if self.closed:
            raise EngineClosed("the engine is closed")

    def _check_open(self, sid: int) -> None:
        if sid not in self._sessions:
            self._check_core()
            raise EngineClosed("the session is closed")

    # --- the change stream -------------------------------------------------------------

    def observe(self, observer: Observer) -> Callable[[], None]:
        """Hand every change committed from now on to ``observer`` (see point 3 of the
        theory of operation); returns a function that stops it."""
        with self.lock:
            self._observers.append(observer)

        def stop() -> None:
            with self.lock:
                if observer in self._observers:
                    self._observers.remove(observer)

        return stop

    def _commit(self, change: Change) -> None:
        for observer in self._observers:
            observer(change)

    def _deliver_triggers(self, change: Change) -> None:
        if len(self.registry):
            mode = Mode.ON_SET if change.op is ChangeOp.SET else Mode.ON_DEL
            deliveries = self.registry.match(mode, change.record, change.revision)
            if deliveries:
                self.dispatcher.put_many(deliveries)

    def _own(self, name: str, owner: int | None) -> None:
        """Make ``name`` ``owner``'s ephemeral record (None: nobody's). A set replaces
        the whole record, its ownership included."""
        previous = self._owners.pop(name, None)
        if previous is not None:
            self._sessions[previous].discard(name)
        if owner is not None:
            self._owners[name] = owner
            self._sessions[owner].add(name)

    def _after_write(self) -> None:
        dispatcher = self._resources.dispatcher
        if dispatcher is not None:
            dispatcher.wait_for_room()

    # --- triggers ------------------------------------------------------------------------

    @property
    def dispatcher(self) -> Dispatcher:
        dispatcher = self._resources.dispatcher
        if dispatcher is None:
            dispatcher = Dispatcher(f"octopus-events-{self.number}")
            self._resources.dispatcher = dispatcher
        return dispatcher

    @staticmethod
    def _claim(trigger: Trigger | None) -> None:
        if trigger is None:
            return
        if not isinstance(trigger, Trigger):
            raise QueryError(f"trigger must be an octopus.Trigger, got {type(trigger).__name__}")
        trigger._claim()

    @staticmethod
    def _unclaim(trigger: Trigger | None) -> None:
        if trigger is not None and not trigger.installed:
            trigger._unclaim()

    def _install_locked(self, sid: int, trigger: Trigger | None, query: CompiledQuery,
                        found: bool) -> None:
        """Install the call's trigger as its install_if says."""
        if trigger is None:
            return
        if (trigger.install_if == "found" and not found) or \
                (trigger.install_if == "missing" and found):
            return
        trigger.id = self.registry.install(sid, trigger, query, trigger.on, trigger.persist)
        trigger.query = str(query.query)

    def _remove_locked(self, qid: int) -> None:
        """Uninstall and queue the final REMOVED event."""
        inst = self.registry.uninstall(qid)
        self.dispatcher.put(inst.handler, Event(Mode.REMOVED, None, qid, self.revision))

    # --- reads ---------------------------------------------------------------------------

    def _query(self, q: object, params: tuple[object, ...]) -> CompiledQuery:
        return compile_query(q, params, self.max_query_length)

    def _fetch_locked(self, cq: CompiledQuery) -> Record | None:
        name = cq.exact_name
        if name is not None and not cq.constraints:
            return self.store.get(name)
        return self.store.first(cq.prolog_name, cq.prolog_constraints, _natural_first, cq)

    def get(self, sid: int, q: object, params: tuple[object, ...],
            trigger: Trigger | None = None) -> Record:
        """The first record matching ``q`` in natural name order; NotFound if none."""
        cq = self._query(q, params)
        self._claim(trigger)
        try:
            with self.lock:
                if sid not in self._sessions:
                    self._check_open(sid)
                record = self._fetch_locked(cq)
                if trigger is not None:
                    self._install_locked(sid, trigger, cq, record is not None)
        finally:
            if trigger is not None:
                self._unclaim(trigger)
        if record is None:
            raise NotFound(f"no record matches {q!r}")
        return record

    def get_names(self, sid: int, q: object, params: tuple[object, ...],
                  trigger: Trigger | None = None) -> list[str]:
        """All names matching ``q``, in natural order."""
        cq = self._query(q, params)
        if trigger is None:             # the common case, without the trigger's steps
            with self.lock:
                if sid not in self._sessions:
                    self._check_open(sid)
                names = self.store.names(cq.prolog_name, cq.prolog_constraints, cq)
            return natural_sorted(names)
        self._claim(trigger)
        try:
            with self.lock:
                self._check_open(sid)
                names = self.store.names(cq.prolog_name, cq.prolog_constraints, cq)
                self._install_locked(sid, trigger, cq, bool(names))
        finally:
            self._unclaim(trigger)
        return natural_sorted(names)

    def get_all(self, sid: int, q: object, params: tuple[object, ...]) -> list[Record]:
        """All records matching ``q``, in natural name order."""
        cq = self._query(q, params)
        with self.lock:
            self._check_open(sid)
            records = self.store.all(cq.prolog_name, cq.prolog_constraints, cq)
        return _natural_records(records)

    def exists(self, sid: int, q: object, params: tuple[object, ...],
               trigger: Trigger | None = None) -> bool:
        """Whether any record matches ``q``."""
        cq = self._query(q, params)
        self._claim(trigger)
        try:
            with self.lock:
                self._check_open(sid)
                found = self.store.exists(cq.prolog_name, cq.prolog_constraints, cq)
                self._install_locked(sid, trigger, cq, found)
        finally:
            self._unclaim(trigger)
        return found

    # --- writes --------------------------------------------------------------------------

    def set(self, sid: int, rec: object, params: tuple[object, ...], sequential: bool = False,
            ephemeral: bool = False, trigger: Trigger | None = None) -> Record:
        """Store (replace) a record; its comparisons are preconditions (ConditionFailed)."""
        cr = compile_record(rec, params, max_length=self.max_query_length)
        # The trigger's query is the set's text read as a query, checked before the change.
        tq = self._query(rec, params) if trigger is not None else None
        self._claim(trigger)
        try:
            with self.lock:
                self._check_open(sid)
                revision = self.revision + 1
                name = self.store.set(cr.name, cr.pairs, cr.conditions, bool(sequential),
                                      revision, cr.attributes)
                if name is None:
                    if tq is not None:
                        self._install_locked(sid, trigger, tq, False)
                    raise ConditionFailed(
                        "the stored record does not satisfy the set's conditions")
                self.revision = revision
                record = Record._trusted(name, cr.attributes, revision)
                owner = sid if ephemeral else None
                if owner is not None or name in self._owners:
                    self._own(name, owner)
                self._commit(Change(revision, ChangeOp.SET, name, record, owner))
                if tq is not None:
                    self._install_locked(sid, trigger, tq.renamed(name) if sequential else tq,
                                         True)
        finally:
            self._unclaim(trigger)
        self._after_write()
        return record

    def delete(self, sid: int, q: object, params: tuple[object, ...],
               trigger: Trigger | None = None) -> Record:
        """Delete the named record if it matches ``q``; NotFound otherwise."""
        cq = self._query(q, params)
        if cq.exact_name is None:
            raise QueryError(f"delete needs a plain record name, not {cq.query.name}")
        self._claim(trigger)
        try:
            with self.lock:
                self._check_open(sid)
                record = self._delete_locked(cq.exact_name, cq.prolog_constraints)
                self._install_locked(sid, trigger, cq, record is not None)
        finally:
            self._unclaim(trigger)
        if record is None:
            raise NotFound(f"no record matches {q!r}")
        self._after_write()
        return record

    def _delete_locked(self, name: str, constraints: list[Any]) -> Record | None:
        record = self.store.delete(name, constraints)
        if record is None:
            return None
        self.revision += 1
        owner = self._owners.pop(name, None)
        if owner is not None:
            self._sessions[owner].discard(name)
        self._commit(Change(self.revision, ChangeOp.DELETE, name, record, owner))
        return record

    def set_many(self, sid: int, records: Iterable[Record | str | tuple[str, Mapping[str, Value]]],
                 batch: int, progress: Callable[[int], None] | None) -> int:
        """Store many records in atomic batches (see :meth:`octopus.Session.set_many`)."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise QueryError(f"batch must be a positive int, got {batch!r}")
        total = 0
        chunk: list[_Row] = []
        for item in records:
            chunk.append(self._bulk_row(item))
            if len(chunk) >= batch:
                total += self._load(sid, chunk)
                chunk = []
                if progress is not None:
                    progress(total)
        if chunk:
            total += self._load(sid, chunk)
            if progress is not None:
                progress(total)
        return total

    def _load(self, sid: int, chunk: list[_Row]) -> int:
        with self.lock:
            self._check_open(sid)
            base = self.revision
            count = self.store.load([(name, pairs) for name, pairs, _ in chunk], base)
            self.revision = base + count
            for i, (name, _, attrs) in enumerate(chunk, start=1):
                if name in self._owners:
                    self._own(name, None)
                record = Record._trusted(name, attrs, base + i)
                self._commit(Change(base + i, ChangeOp.SET, name, record, None))
        self._after_write()
        return count

    def _bulk_row(self, item: Record | str | tuple[str, Mapping[str, Value]]) -> _Row:
        """Validate one item of ``set_many`` (a Record, record text or ``(name, attrs)``)."""
        if isinstance(item, Record):
            return item.name, encode_attributes(item._attrs), item._attrs
        if isinstance(item, str):
            cr = compile_record(item, max_length=self.max_query_length)
            if cr.conditions:
                raise QueryError("set_many does not take conditions")
            return cr.name, cr.pairs, cr.attributes
        try:
            name, attrs = item
            if not is_name(name):
                raise ValueError(f"invalid record name {name!r}")
            checked: dict[str, Value] = {}
            for key in sorted(attrs):
                if not is_name(key):
                    raise ValueError(f"invalid attribute key {key!r}")
                value = attrs[key]
                if type(value) is Atom:
                    if not is_name(value):
                        raise ValueError(f"invalid identifier {value!r}")
                elif type(value) is str:
                    if not value.isascii():
                        value.encode("utf-8")  # lone surrogates cannot cross to Prolog
                elif type(value) is not bool:
                    check_value(value)  # ints too: they have a range (octopus.record)
                checked[key] = value
        except (TypeError, ValueError, AttributeError) as e:
            raise QueryError(f"not a record: {short_repr(item, 200)} ({e})") from None
        return name, encode_attributes(checked), checked

    # --- triggers and publish/subscribe --------------------------------------------------

    def watch_existing(self, sid: int, q: object, params: tuple[object, ...], handler: Handler,
                       on: Mode) -> Trigger:
        """A persistent trigger on ``q``, first delivering one ON_SET event per current
        match (natural name order), then changes: no duplicate, no gap."""
        trigger = Trigger(handler, on=on, persist=True)
        cq = self._query(q, params)
        self._claim(trigger)
        try:
            with self.lock:
                self._check_open(sid)
                records = self.store.all(cq.prolog_name, cq.prolog_constraints, cq)
                records = _natural_records(records)
                self._install_locked(sid, trigger, cq, True)
                qid = trigger.id
                assert qid is not None
                self.dispatcher.put_many((handler, Event(Mode.ON_SET, r, qid, self.revision))
                                         for r in records)
        finally:
            self._unclaim(trigger)
        return trigger

    def remove_trigger(self, sid: int, trigger: Trigger | int) -> None:
        """Remove a trigger this session installed; its handler gets REMOVED."""
        qid = trigger.id if isinstance(trigger, Trigger) else trigger
        with self.lock:
            self._check_open(sid)
            inst = self.registry.lookup(sid, qid, subscription=False)
            if inst is None:
                raise TriggerNotFound(f"no installed trigger {qid!r}")
            self._remove_locked(inst.id)

    def subscribe(self, sid: int, q: object, params: tuple[object, ...],
                  handler: Handler) -> Subscription:
        """Receive every message published from now on that matches ``q``."""
        if not callable(handler):
            raise QueryError("a subscription's handler must be callable")
        cq = self._query(q, params)
        with self.lock:
            self._check_open(sid)
            sub = Subscription(handler, str(cq.query), 0)
            sub.id = self.registry.install(sid, sub, cq, Mode.ON_PUBLISH, True)
        return sub

    def unsubscribe(self, sid: int, subscription: Subscription | int) -> None:
        """End a subscription this session made; its handler gets REMOVED."""
        qid = subscription.id if isinstance(subscription, Subscription) else subscription
        with self.lock:
            self._check_open(sid)
            inst = self.registry.lookup(sid, qid, subscription=True)
            if inst is None:
                raise TriggerNotFound(f"no subscription {qid!r}")
            self._remove_locked(inst.id)

    def publish(self, sid: int, message: object, params: tuple[object, ...]) -> int:
        """Deliver ``message`` to every matching subscription; how many."""
        cr = compile_record(message, params, what="publish", max_length=self.max_query_length)
        with self.lock:
            self._check_open(sid)
            record = Record._trusted(cr.name, cr.attributes, self.revision)
            deliveries = self.registry.match(Mode.ON_PUBLISH, record, self.revision)
            if deliveries:
                self.dispatcher.put_many(deliveries)
        if deliveries:
            self._after_write()
        return len(deliveries)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far has been handled (False on timeout)."""
        dispatcher = self._resources.dispatcher
        return True if dispatcher is None else dispatcher.flush(timeout)

    def on_dispatcher_thread(self) -> bool:
        """True when called from a handler (the dispatcher thread)."""
        dispatcher = self._resources.dispatcher
        return dispatcher is not None and threading.current_thread() is dispatcher.thread

    # --- the knowledge base, statistics, teardown ------------------------------------------

    def knowledge_base(self) -> KnowledgeBase:
        """The engine's knowledge base, created on first use."""
        with self._kb_lock:
            self._check_core()
            kb = self._resources.kb
            if kb is None:
                kb = self._resources.kb = KnowledgeBase()
            return kb

    def count(self) -> int:
        with self.lock:
            self._check_core()
            return self.store.count()

    def warm(self) -> None:
        with self.lock:
            self._check_core()
            self.store.warm()

    def stats(self) -> dict[str, int]:
        """Counters of the engine's state (records, sessions, triggers, ...)."""
        with self.lock:
            self._check_core()
            dispatcher = self._resources.dispatcher
            return {
                "revision": self.revision,
                "records": self.store.count(),
                "indexed_keys": len(self.store.indexed_keys()),
                "sessions": len(self._sessions),
                "ephemeral_records": len(self._owners),
                "triggers": self.registry.trigger_count,
                "subscriptions": self.registry.subscription_count,
                "events_pending": dispatcher.pending if dispatcher is not None else 0,
            }

    def close(self, last: int | None = None) -> None:
        """Close every session (in the order they were opened, ``last`` at the end: the
        engine's own), then give back the Prolog modules and the dispatcher. Closing
        twice is harmless."""
        with self.lock:
            if self.closed:
                return
            for sid in sorted(self._sessions, key=lambda sid: (sid == last, sid)):
                self._close_session_locked(sid)
            self.closed = True
            self._finalizer.detach()
        with self._kb_lock:
            self._resources.release(at_safe_point=True)
        _bury_dropped()


def _natural_records(records: list[Record]) -> list[Record]:
    """Records (of distinct names) in natural name order."""
    by_name = {r.name: r for r in records}
    return [by_name[n] for n in natural_sorted(list(by_name))]


def _natural_first(names: list[str]) -> str:
    return min(names, key=natural_key)

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
   dispatcher queue, hence in revision order); replication observes the same stream.
   An observer must not block, raise or call the engine.
3a. **Write-ahead.** A durable engine has one :class:`WriteAhead` (its journal,
   octopus/durable/). Under the lock, each change is handed to it *before* the store
   applies it, final: the name of a sequential set decided, the conditions of a
   compare-and-set or delete checked (the store plans, changing nothing, then
   applies), the revision assigned. If it raises (PersistenceError), the call fails
   with nothing applied and no revision used. After the lock, before the call
   returns, ``acknowledge`` waits until the change is as durable as the engine
   promises — unless the calling thread deferred its acknowledgements
   (:meth:`Core.defer_acknowledgements`: the server acknowledges the writes of many
   connections with one wait). Without a write-ahead the store decides and applies in
   one call, as fast as ever.
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
7. **Two write paths.** By default a write is applied here, under the lock, as above.
   A replica of a cluster (:mod:`octopus.cluster`) sets :attr:`Core.replicated`: its
   set, delete, set_many, publish and session ends are then proposed to etcd by that
   object, outside the lock, and come back through the *apply path*
   (:meth:`Core.apply_set_locked` and its siblings), which changes the store at etcd's
   revision, under the lock, and commits the change to the observers exactly as a local
   write does. Reads, triggers and the knowledge base are the same on both paths.
8. **Rules** (:mod:`octopus.rules`, docs/rules.md), created on first use, are the
   second observer of the change stream: the rows of derived watches that a write
   makes appear or disappear come back with the write from Prolog and are queued
   with its commit; an invariant refuses a write inside the store's transaction, so
   a refused write changes nothing and commits nothing. A session's end deletes its
   ephemeral records whatever the invariants say (``forced``).
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from octopus.adapter import PrologRules, PrologStore, RuleSpec, encode_attributes
from octopus.bulk import Batch, Parsed, batches, encode_batch, prefetched
from octopus.errors import (
    ConditionFailed,
    EngineClosed,
    NotFound,
    OctopusError,
    PersistenceError,
    QueryError,
    RuleError,
    TriggerNotFound,
)
from octopus.events import Dispatcher, Event, Handler, Mode, Subscription, Trigger
from octopus.explain import Holding, SessionInfo, WaitExplanation, check_limit
from octopus.kb import KnowledgeBase, Limits
from octopus.query.compile import CompiledQuery, CompiledRecord, compile_query, compile_record
from octopus.record import (
    Atom,
    Record,
    Value,
    check_value,
    format_value,
    is_name,
    natural_key,
    natural_sorted,
    short_repr,
)
from octopus.registry import TriggerRegistry
from octopus.rules import Invariant, RowHandler, RuleEngine, RuleWatch, check_on

__all__ = ["Change", "ChangeOp", "Core", "Observer", "ReplicatedWrites", "WriteAhead"]

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
    ephemeral record it is (after a SET, before a DELETE), or None. ``counter`` is
    ``(base, next)`` for a sequential set: the base's sequence counter after it.
    """

    revision: int
    op: ChangeOp
    name: str
    record: Record
    owner: int | None
    counter: tuple[str, int] | None = None


#: An observer of the change stream (see the theory of operation, point 3).
Observer = Callable[[Change], None]


class WriteAhead(Protocol):
    """What the core needs of a journal (see the theory of operation, point 3a)."""

    def log(self, changes: Sequence[Change]) -> int:
        """Write the changes of one call (several only for a ``set_many`` batch)
        before they are applied; a ticket for :meth:`acknowledge` and
        :meth:`retract`. Raises PersistenceError if they cannot be written."""

    def retract(self, ticket: int) -> None:
        """The store could not apply what was just logged under the same lock: undo."""

    def behind(self, change: Change) -> None:
        """``change`` was applied without being logged (a closing session's ephemeral
        record goes even when the journal refuses the deletion)."""

    def acknowledge(self, ticket: int) -> None:
        """Return when the logged changes are as durable as promised (outside the
        lock). May raise PersistenceError (``applied=True``)."""

# One row of a bulk load: name, attributes encoded for Prolog, attributes.
_Row = tuple[str, list[tuple[str, Any]], dict[str, Value]]


class ReplicatedWrites(Protocol):
    """The write path of a replica (point 7 of the theory of operation): what the core
    hands its writes to instead of applying them itself. Each method is called outside
    the core's lock, with the call's text already compiled, and returns once the change
    has come back through the apply path (or raises)."""

    def set(self, sid: int, cr: CompiledRecord, tq: CompiledQuery | None, sequential: bool,
            ephemeral: bool, trigger: Trigger | None) -> Record: ...

    def delete(self, sid: int, cq: CompiledQuery, trigger: Trigger | None) -> Record: ...

    def load(self, sid: int, rows: list[_Row]) -> int: ...

    def publish(self, sid: int, cr: CompiledRecord) -> int: ...

    def end_session(self, sid: int) -> None: ...

    def sync(self, sid: int, timeout: float | None) -> int: ...

    def staleness(self) -> float: ...

    def close(self) -> None: ...


class _Resources:
    """What a core must give back (Prolog modules, the dispatcher thread), kept apart
    from the core so that a finalizer can release them without keeping it alive."""

    def __init__(self, store: PrologStore) -> None:
        self.store: PrologStore | None = store
        self.kb: KnowledgeBase | None = None
        self.dispatcher: Dispatcher | None = None
        self.rules: RuleEngine | None = None

    def release(self, *, at_safe_point: bool) -> None:
        store, kb, dispatcher, rules = self.store, self.kb, self.dispatcher, self.rules
        self.store = self.kb = self.rules = None
        if dispatcher is not None:
            dispatcher.stop(timeout=5.0 if at_safe_point else 0)
        for release in (rules and rules.destroy, store and store.destroy, kb and kb.close):
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


def _constraint_texts(cq: CompiledQuery) -> list[str]:
    """The query's constraints as text, in the order of ``cq.constraints``."""
    texts = []
    for key, op, value in cq.constraints:
        if op == "any":
            texts.append(f"{key}: _")
        elif op == "re":
            texts.append(f"{key}: r'{value}'")
        else:
            texts.append(f"{key} {_SPELLED[op]} {format_value(value)}")
    return texts


#: the knowledge-base key of a load of rules (followed by the text's SHA-256)
RULES_KEY = "rules:"

#: the longest name a session may be given (explanations show it)
MAX_SESSION_NAME = 200

_SPELLED = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _release_dropped(resources: _Resources) -> None:
    resources.release(at_safe_point=False)


class _Deferred(threading.local):
    """A thread's deferred acknowledgements (:meth:`Core.defer_acknowledgements`)."""

    active = False
    ticket = 0


class Core:
    """The state of one engine and every operation on it (see the theory of operation).

    Every public method takes the id of the calling session first.
    """

    def __init__(self, max_query_length: int, kb_limits: Limits | None = None) -> None:
        _bury_dropped()
        self.number = next(_core_numbers)
        self.max_query_length = max_query_length
        self.kb_limits = kb_limits
        self.lock = threading.Lock()
        self.revision = 0
        self.closed = False
        self.store = PrologStore()
        self.registry = TriggerRegistry(self.store)
        self._resources = _Resources(self.store)
        self._sessions: dict[int, set[str]] = {}       # open session -> its ephemeral names
        self._owners: dict[str, int] = {}              # ephemeral record -> its session
        self._session_names: dict[int, str] = {}       # sessions that were given a name
        self._session_ids = itertools.count(1)
        self._observers: list[Observer] = [self._deliver_triggers]
        self._name_observers: list[Callable[[str | None], None]] = []
        self._wal: WriteAhead | None = None
        self._deferred = _Deferred()
        self._kb_lock = threading.Lock()
        self._rules: RuleEngine | None = None       # rules over live records (point 8)
        #: The replicated write path (point 7), set by octopus.cluster; None: local.
        self.replicated: ReplicatedWrites | None = None
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

    def owns_nothing(self, sid: int) -> bool:
        """Whether session ``sid`` has no ephemeral record, trigger, subscription or
        derived watch (a session a resuming connection may drop for the one it
        resumes). Reads without the lock: only the session's own calls change what it
        owns, and the caller makes none meanwhile."""
        rules = self._rules
        return not self._sessions.get(sid) and not self.registry.owned_by(sid) and \
            (rules is None or not rules.owns(sid))

    def close_session(self, sid: int) -> None:
        """End a session (idempotent): delete its ephemeral records, then remove its
        triggers and subscriptions."""
        if self.replicated is not None and sid in self._sessions:
            self.replicated.end_session(sid)    # its records go with its lease
        ticket = 0
        with self.lock:
            if sid in self._sessions:
                ticket = self._close_session_locked(sid)
        self._acknowledge(ticket, quiet=True)
        self._after_write()

    def _close_session_locked(self, sid: int) -> int:
        ticket = 0
        if self.replicated is None:
            for name in sorted(self._sessions[sid], key=natural_key):
                ticket = max(ticket, self._delete_locked(name, [], forced=True)[1])
        else:
            # A replica's ephemeral records are etcd's: they go with the session's lease
            # and come back as deletions through the apply path.
            for name in self._sessions[sid]:
                self._owners.pop(name, None)
        for qid in self.registry.owned_by(sid):
            self._remove_locked(qid)
        if self._rules is not None:
            self._rules.session_closed_locked(sid, self.revision)
        del self._sessions[sid]
        self._session_names.pop(sid, None)
        return ticket

    def expire(self, names: list[str]) -> int:
        """Delete the records ``names`` if they exist, in order, each an ordinary change
        (the ephemeral records of sessions that ended with a previous run of a durable
        engine); how many went."""
        ticket = gone = 0
        with self.lock:
            self._check_core()
            for name in names:
                record, t = self._delete_locked(name, [], forced=True)
                ticket = max(ticket, t)
                gone += record is not None
        self._acknowledge(ticket, quiet=True)
        self._after_write()
        return gone

    def ephemeral_names(self) -> list[str]:
        """The names of the ephemeral records (the caller holds the lock)."""
        return sorted(self._owners)

    def name_session(self, sid: int, name: str | None) -> None:
        """Give session ``sid`` a name (None: none) that explanations show."""
        if name is not None and not isinstance(name, str):
            raise QueryError(f"a session name must be a str or None, got {type(name).__name__}")
        if name is not None and len(name) > MAX_SESSION_NAME:
            raise QueryError(f"a session name is at most {MAX_SESSION_NAME} characters")
        with self.lock:
            self._check_open(sid)
            if name:
                self._session_names[sid] = name
            else:
                self._session_names.pop(sid, None)

    def session_name(self, sid: int) -> str | None:
        return self._session_names.get(sid)

    def _session_info(self, sid: int | None) -> SessionInfo | None:
        return None if sid is None else SessionInfo(sid, self._session_names.get(sid))

    # --- explanations (octopus.explain) -------------------------------------------------

    def explain_wait(self, sid: int, q: object, params: tuple[object, ...],
                     limit: int) -> WaitExplanation:
        """Why a ``wait_for(q)`` would block: one atomic look at the records matching
        it (with the sessions keeping them), the record of its exact name and the
        constraints it fails, and the sessions waiting for it."""
        cq = self._query(q, params)
        limit = check_limit(limit)
        text = str(cq.query)
        with self.lock:
            self._check_open(sid)
            records = self.store.all(cq.prolog_name, cq.prolog_constraints)
            records.sort(key=lambda r: natural_key(r.name))
            truncated = len(records) > limit
            matching = tuple(Holding(r, self._session_info(self._owners.get(r.name)))
                             for r in records[:limit])
            record: Record | None = None
            unmet: list[str] = []
            name = cq.exact_name
            if name is not None:
                record = self.store.get(name)
                if record is None:
                    unmet.append("missing")
                elif not matching:
                    unmet = [spelled for spelled, pc in zip(
                                 _constraint_texts(cq), cq.prolog_constraints, strict=True)
                             if not self.store.exists(name, [pc])]
            waiters = sorted({inst.owner for inst in self.registry
                              if not inst.is_subscription and not inst.persist
                              and inst.mode == Mode.ON_SET and str(inst.query.query) == text})
            infos = tuple(SessionInfo(w, self._session_names.get(w)) for w in waiters)
        return WaitExplanation(text, matching, record, tuple(unmet), infos, truncated, name)

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
        return self._listen(self._observers, observer)

    def observe_names(self, observer: Callable[[str | None], None]) -> Callable[[], None]:
        """Hand the record name of every change committed from now on to ``observer``,
        inside the commit as :meth:`observe` does, or None for a ``set_many`` batch (any
        number of records: its changes are not built one by one unless an observer of
        :meth:`observe` needs them). For a cache of what records look like, which needs
        only the names. Returns a function that stops it."""
        return self._listen(self._name_observers, observer)

    def _listen(self, listeners: list[Any], listener: Any) -> Callable[[], None]:
        """Add ``listener`` to ``listeners`` under the lock; returns its removal."""
        with self.lock:
            listeners.append(listener)

        def stop() -> None:
            with self.lock:
                if listener in listeners:
                    listeners.remove(listener)

        return stop

    def _checks_invariants(self) -> bool:
        """Whether a write must be asked about before it is journaled (the caller holds
        the lock)."""
        return self._rules is not None and self._rules.invariant_count > 0

    def set_write_ahead(self, wal: WriteAhead | None) -> None:
        """Log every change to ``wal`` before it is applied (point 3a)."""
        with self.lock:
            self._wal = wal

    def _commit(self, change: Change) -> None:
        for observer in self._observers:
            observer(change)
        for named in self._name_observers:
            named(change.name)

    def defer_acknowledgements(self) -> None:
        """On this thread, until :meth:`end_deferral`, a write returns without waiting
        for its acknowledgement (point 3a); its ticket is kept instead, so that the
        caller acknowledges many writes at once (the server's group commit). A
        session's end still waits (it cannot be refused)."""
        d = self._deferred
        d.active = True
        d.ticket = 0

    def deferred(self) -> int:
        """The ticket covering the writes deferred on this thread so far (0: none)."""
        return self._deferred.ticket

    def end_deferral(self) -> int:
        """Stop deferring on this thread; the ticket covering every write deferred
        since :meth:`defer_acknowledgements` (0: none), for :meth:`acknowledge`."""
        d = self._deferred
        ticket = d.ticket
        d.active = False
        d.ticket = 0
        return ticket

    def acknowledge(self, ticket: int) -> None:
        """Return when the writes up to ``ticket`` are as durable as promised;
        PersistenceError (``applied=True``) if they cannot be."""
        wal = self._wal
        if ticket and wal is not None:
            wal.acknowledge(ticket)

    def _acknowledge(self, ticket: int, *, quiet: bool = False) -> None:
        wal = self._wal
        if ticket and wal is not None:
            if not quiet:
                d = self._deferred
                if d.active:
                    if ticket > d.ticket:
                        d.ticket = ticket
                    return
            try:
                wal.acknowledge(ticket)
            except PersistenceError:
                if not quiet:       # a closing session cannot be refused its end
                    raise

    def _deliver_triggers(self, change: Change) -> None:
        if len(self.registry):
            mode = Mode.ON_SET if change.op is ChangeOp.SET else Mode.ON_DEL
            deliveries = self.registry.match(mode, change.record, change.revision)
            if deliveries:
                self.dispatcher.put_deliveries(deliveries)

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

    def get_named(self, requests: list[tuple[int, str]]
                  ) -> tuple[int, list[Record | OctopusError | None]]:
        """Several reads by exact name, for several sessions, in one store call under
        one hold of the lock: for each ``(session id, name)``, the record called
        ``name`` (the caller checked it is a bare name: the whole query), None if there
        is none, or the error that session's read raises (EngineClosed). Also the
        revision all of them were read at. The server batches its connections' GETs
        with it; each answer is what :meth:`get` of that name answers at that revision."""
        with self.lock:
            self._check_core()
            sessions = self._sessions
            found = self.store.get_many(list({name: None for _, name in requests}))
            out: list[Record | OctopusError | None] = []
            for sid, name in requests:
                if sid in sessions:
                    out.append(found.get(name))
                else:
                    out.append(EngineClosed("the session is closed"))
            return self.revision, out

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

    def watch(self, sid: int, q: object, params: tuple[object, ...], trigger: Trigger) -> None:
        """Install ``trigger`` (install_if "always") on ``q`` without running the query:
        a watch does not need its answer, and running it would build the store's index
        of every key the query names, which each later write then maintains."""
        cq = self._query(q, params)
        self._claim(trigger)
        try:
            with self.lock:
                self._check_open(sid)
                self._install_locked(sid, trigger, cq, True)
        finally:
            self._unclaim(trigger)

    # --- writes --------------------------------------------------------------------------

    def set(self, sid: int, rec: object, params: tuple[object, ...], sequential: bool = False,
            ephemeral: bool = False, trigger: Trigger | None = None) -> Record:
        """Store (replace) a record; its comparisons are preconditions (ConditionFailed)."""
        cr = compile_record(rec, params, max_length=self.max_query_length)
        # The trigger's query is the set's text read as a query, checked before the change.
        tq = self._query(rec, params) if trigger is not None else None
        if self.replicated is not None:
            return self.replicated.set(sid, cr, tq, bool(sequential), bool(ephemeral), trigger)
        if trigger is not None:
            self._claim(trigger)
        try:
            with self.lock:
                if sid not in self._sessions:
                    self._check_open(sid)
                revision = self.revision + 1
                owner = sid if ephemeral else None
                if self._wal is None:
                    name = self.store.set(cr.name, cr.pairs, cr.conditions, bool(sequential),
                                          revision, cr.attributes)
                    change, ticket = None, 0
                else:
                    change, ticket = self._set_logged(self._wal, cr.name, cr.pairs,
                                                      cr.attributes, cr.conditions,
                                                      bool(sequential), revision, owner)
                    name = None if change is None else change.name
                if name is None:
                    if tq is not None:
                        self._install_locked(sid, trigger, tq, False)
                    raise ConditionFailed(
                        "the stored record does not satisfy the set's conditions")
                self.revision = revision
                if change is None:
                    record = Record._trusted(name, cr.attributes, revision)
                    # Nobody to tell (no trigger, rule or other observer): no change to
                    # build (the durable path built one for its journal).
                    if len(self._observers) > 1 or len(self.registry):
                        change = Change(revision, ChangeOp.SET, name, record, owner)
                else:
                    record = change.record
                if owner is not None or (self._owners and name in self._owners):
                    self._own(name, owner)
                if change is not None:
                    self._commit(change)
                else:
                    for named in self._name_observers:    # the names need no Change
                        named(name)
                if tq is not None:
                    self._install_locked(sid, trigger, tq.renamed(name) if sequential else tq,
                                         True)
        finally:
            if trigger is not None:
                self._unclaim(trigger)
        if ticket:
            self._acknowledge(ticket)
        self._after_write()
        return record

    def _set_logged(self, wal: WriteAhead, name: str, pairs: list[tuple[str, Any]],
                    attributes: dict[str, Value], conditions: list[Any], sequential: bool,
                    revision: int, owner: int | None) -> tuple[Change | None, int]:
        """A set through the write-ahead: decide (plan), log, apply. The change (None if
        the conditions failed: nothing logged) and the ticket."""
        counter = None
        if conditions or sequential:
            plan = self.store.plan_set(name, conditions, sequential)
            if plan is None:
                return None, 0
            final, after = plan
            if sequential:
                assert after is not None
                counter = (name, after)
            name = final
        if self._checks_invariants():
            # Asked before the journal: a write an invariant refuses is never logged.
            self.store.trial_put(name, pairs, counter, revision)
        change = Change(revision, ChangeOp.SET, name, Record._trusted(name, attributes, revision),
                        owner, counter)
        ticket = wal.log([change])
        try:
            self.store.put(name, pairs, counter, revision)
        except BaseException:
            wal.retract(ticket)
            raise
        return change, ticket

    def delete(self, sid: int, q: object, params: tuple[object, ...],
               trigger: Trigger | None = None) -> Record:
        """Delete the named record if it matches ``q``; NotFound otherwise."""
        cq = self._query(q, params)
        if cq.exact_name is None:
            raise QueryError(f"delete needs a plain record name, not {cq.query.name}")
        if self.replicated is not None:
            return self.replicated.delete(sid, cq, trigger)
        self._claim(trigger)
        try:
            with self.lock:
                self._check_open(sid)
                record, ticket = self._delete_locked(cq.exact_name, cq.prolog_constraints)
                self._install_locked(sid, trigger, cq, record is not None)
        finally:
            self._unclaim(trigger)
        if record is None:
            raise NotFound(f"no record matches {q!r}")
        self._acknowledge(ticket)
        self._after_write()
        return record

    def _delete_locked(self, name: str, constraints: list[Any],
                       forced: bool = False) -> tuple[Record | None, int]:
        """Delete ``name`` if it meets ``constraints``: the deleted record (or None) and
        the write-ahead ticket. ``forced`` (a session's end): invariants do not refuse
        it, and the record goes even if the journal refuses its deletion (the journal
        then knows it is behind)."""
        wal, ticket = self._wal, 0
        if wal is None:
            record = self.store.delete(name, constraints, forced)
            if record is None:
                return None, 0
        else:
            record = self.store.match(name, constraints)
            if record is None:
                return None, 0
            if not forced and self._checks_invariants():
                self.store.trial_delete(name)       # an invariant's refusal: nothing logged
            change = Change(self.revision + 1, ChangeOp.DELETE, name, record,
                            self._owners.get(name))
            try:
                ticket = wal.log([change])
            except PersistenceError:
                if not forced:
                    raise
                wal.behind(change)
            try:
                self.store.delete(name, [], forced)
            except BaseException:
                if ticket:
                    wal.retract(ticket)
                raise
        self.revision += 1
        owner = self._owners.pop(name, None)
        if owner is not None:
            self._sessions[owner].discard(name)
        self._commit(Change(self.revision, ChangeOp.DELETE, name, record, owner))
        return record, ticket

    def set_many(self, sid: int, records: Iterable[Record | str | tuple[str, Mapping[str, Value]]],
                 batch: int, progress: Callable[[int], None] | None) -> int:
        """Store many records in atomic batches (see :meth:`octopus.Session.set_many`)."""
        _check_batch(batch)
        total = 0
        chunk: list[Parsed] = []
        for item in records:
            chunk.append(self._bulk_row(item))
            if len(chunk) >= batch:
                total += self._bulk(sid, encode_batch(chunk))
                chunk = []
                if progress is not None:
                    progress(total)
        if chunk:
            total += self._bulk(sid, encode_batch(chunk))
            if progress is not None:
                progress(total)
        return total

    def load(self, sid: int, lines: Iterable[str], batch: int,
             progress: Callable[[int], None] | None) -> int:
        """Store the records of ``lines`` (octopus/bulk.py's format) in atomic batches
        (see :meth:`octopus.Session.load`); errors name their line (``.line``) and say
        how many records earlier batches loaded (``.loaded``).

        Reading and parsing (Python) run a batch ahead of storing (Prolog, which runs
        without the GIL), on a helper thread once there is more than one batch."""
        _check_batch(batch)
        max_length = self.max_query_length
        total = 0
        try:
            with prefetched(batches(lines, batch, max_length)) as ready:
                for chunk in ready:
                    total += self._bulk(sid, chunk)
                    if progress is not None:
                        progress(total)
        except OctopusError as e:
            e.loaded = total            # type: ignore[attr-defined]
            raise
        return total

    def _bulk(self, sid: int, batch: Batch) -> int:
        """Store one batch in one Prolog call, all or nothing; each record is one change
        of the change stream, at its own revision."""
        if self.replicated is not None:
            return self.replicated.load(sid, [(name, encode_attributes(attrs), attrs)
                                              for name, attrs in batch.records()])
        ticket = 0
        with self.lock:
            self._check_open(sid)
            base = self.revision
            wal = self._wal
            changes: list[Change] | None = None
            if wal is not None:
                if self._checks_invariants():   # refused: nothing logged
                    self.store.trial_load([(name, encode_attributes(attrs))
                                           for name, attrs in batch.records()], base)
                changes = [Change(base + i, ChangeOp.SET, name,
                                  Record._trusted(name, attrs, base + i), None)
                           for i, (name, attrs) in enumerate(batch.records(), start=1)]
                ticket = wal.log(changes)
            try:
                count = self.store.bulk(batch.shapes, batch.flat, batch.distinct, base)
            except BaseException:
                if wal is not None:
                    wal.retract(ticket)
                raise
            self.revision = base + count
            for named in self._name_observers:
                named(None)
            if self._owners:
                for name in batch.names:
                    if name in self._owners:
                        self._own(name, None)
            # Nobody to tell (no trigger, rule or other observer): no change to build.
            if len(self._observers) > 1 or len(self.registry):
                if changes is None:
                    changes = [Change(base + i, ChangeOp.SET, name,
                                      Record._trusted(name, attrs, base + i), None)
                               for i, (name, attrs) in enumerate(batch.records(), start=1)]
                for change in changes:
                    self._commit(change)
        self._acknowledge(ticket)
        self._after_write()
        return count

    def _bulk_row(self, item: Record | str | tuple[str, Mapping[str, Value]]) -> Parsed:
        """Validate one item of ``set_many`` (a Record, record text or ``(name, attrs)``)."""
        if isinstance(item, Record):
            return item.name, item._attrs
        if isinstance(item, str):
            cr = compile_record(item, max_length=self.max_query_length)
            if cr.conditions:
                raise QueryError("set_many does not take conditions")
            return cr.name, cr.attributes
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
        return name, checked

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
        if self.replicated is not None:
            return self.replicated.publish(sid, cr)
        with self.lock:
            self._check_open(sid)
            record = Record._trusted(cr.name, cr.attributes, self.revision)
            deliveries = self.registry.match(Mode.ON_PUBLISH, record, self.revision)
            if deliveries:
                self.dispatcher.put_deliveries(deliveries)
        if deliveries:
            self._after_write()
        return len(deliveries)

    # --- consistency (docs/cluster.md) ------------------------------------------------

    def sync(self, sid: int, timeout: float | None = None) -> int:
        """Wait until this engine has applied every change committed anywhere before the
        call; the revision it has then. A local engine is always in sync."""
        if self.replicated is not None:
            return self.replicated.sync(sid, timeout)
        with self.lock:
            self._check_open(sid)
            return self.revision

    def staleness(self) -> float:
        """At most how many seconds old the state read here may be (0.0: current)."""
        return 0.0 if self.replicated is None else self.replicated.staleness()

    # --- the apply path of a replica (point 7) -------------------------------------------

    def apply_set_locked(self, revision: int, name: str, attrs: dict[str, Value],
                         owner: int | None) -> Record:
        """Store ``name`` as it was set at ``revision`` elsewhere (``attrs`` checked and
        sorted by key), owned by local session ``owner`` (or nobody here), and commit the
        change. The caller holds the lock and gives revisions in increasing order."""
        self.store.set(name, encode_attributes(attrs), [], False, revision)
        record = Record._trusted(name, attrs, revision)
        if revision > self.revision:
            self.revision = revision
        if owner is not None and owner not in self._sessions:
            owner = None
        if owner is not None or name in self._owners:
            self._own(name, owner)
        self._commit(Change(revision, ChangeOp.SET, name, record, owner))
        return record

    def apply_delete_locked(self, revision: int, name: str) -> Record | None:
        """Delete ``name`` as it was deleted at ``revision`` elsewhere and commit the
        change; the record as it was (None if this replica did not have it)."""
        record = self.store.delete(name, [])
        if revision > self.revision:
            self.revision = revision
        if record is None:
            return None
        owner = self._owners.pop(name, None)
        if owner is not None:
            self._sessions[owner].discard(name)
        self._commit(Change(revision, ChangeOp.DELETE, name, record, owner))
        return record

    def apply_publish_locked(self, revision: int, message: Record) -> int:
        """Deliver a message published at ``revision`` (anywhere) to the matching
        subscriptions here; how many."""
        if revision > self.revision:
            self.revision = revision
        deliveries = self.registry.match(Mode.ON_PUBLISH, message, revision)
        if deliveries:
            self.dispatcher.put_deliveries(deliveries)
        return len(deliveries)

    def apply_revision_locked(self, revision: int) -> None:
        """Note a revision that changed nothing this engine stores (etcd's revision
        counts every change under the cluster's prefix)."""
        if revision > self.revision:
            self.revision = revision

    def own_locked(self, name: str, owner: int | None) -> None:
        """Make a stored record ``owner``'s ephemeral record (a resumed session)."""
        if owner is not None and owner not in self._sessions:
            return
        self._own(name, owner)

    def end_session_locally(self, sid: int) -> None:
        """End a session here without touching its records (a replica whose session's
        lease expired, or that a client will resume on another node)."""
        with self.lock:
            if sid in self._sessions:
                self._close_session_locked(sid)

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
        """The engine's knowledge base, created on first use, with the view of this
        engine's records (docs/rules.md)."""
        with self._kb_lock:
            self._check_core()
            kb = self._resources.kb
            if kb is None:
                kb = KnowledgeBase(self.kb_limits)
                PrologRules.attach_view(kb.module, self.store)
                self._resources.kb = kb
            return kb

    # --- rules over live records (point 8; octopus.rules) ---------------------------------

    def rule_engine(self) -> RuleEngine:
        """The engine's rules, created on first use (with the knowledge base)."""
        rules = self._rules
        if rules is None:
            kb = self.knowledge_base()
            with self.lock:
                self._check_core()
                if self._rules is None:
                    self._rules = RuleEngine(self.store, kb.module, lambda: self.dispatcher)
                    self._resources.rules = self._rules
                    self._observers.append(self._rules.observe)
                rules = self._rules
        return rules

    def load_rules(self, text: str, *, replay: bool = False) -> list[str]:
        """Check ``text`` against the rule family, load it into the knowledge base and
        declare the relations it defines; their ``name/arity``."""
        if not isinstance(text, str):
            raise QueryError(f"rules must be a str, got {type(text).__name__}")
        rules = self.rule_engine()
        relations = rules.prolog.parse(text)
        # Keyed by the text, as consult() is by the file: loading the same rules again
        # replaces them rather than doubling every clause. A durable engine journals the
        # load under that key, and its recovery declares the relations again (replay).
        key = RULES_KEY + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        if replay:
            self.knowledge_base().replay_text(key, text)
        else:
            self.knowledge_base()._load(("text", text), key, False, "rules")
        with self.lock:
            self._check_core()
            rules.prolog.declare(relations)
        return [f"{name}/{arity}" for name, arity, _ in relations]

    def watch_rule(self, sid: int, spec: RuleSpec, query: str, handler: RowHandler, on: Mode,
                   existing: bool) -> RuleWatch:
        """Install a derived watch (see :mod:`octopus.rules`)."""
        if not callable(handler):
            raise QueryError("a rule watch's handler must be callable")
        watch = RuleWatch(handler, query, check_on(on))
        rules = self.rule_engine()
        with self.lock:
            self._check_open(sid)
            rules.watch_locked(sid, spec, watch, bool(existing), self.revision,
                               lambda w: self.remove_rule_watch(sid, w))
        return watch

    def remove_rule_watch(self, sid: int, watch: RuleWatch | int) -> None:
        """Remove a derived watch this session installed; its handler gets REMOVED."""
        with self.lock:
            self._check_open(sid)
            rules = self._rules
            qid = rules.lookup(sid, watch) if rules is not None else None
            if rules is None or qid is None:
                raise TriggerNotFound(f"no installed rule watch {watch!r}")
            rules.remove_locked(qid, self.revision)

    def invariant(self, name: str, text: str) -> Invariant:
        """Install an invariant (see :mod:`octopus.rules`)."""
        if not isinstance(name, str) or not name:
            raise RuleError(f"an invariant's name must be a non-empty str, got {name!r}")
        if not isinstance(text, str):
            raise RuleError(f"an invariant's rules must be a str, got {type(text).__name__}")
        if self.replicated is not None:
            raise RuleError("invariants are not available on a replica of a cluster: "
                            "a replica's writes are decided by etcd, which cannot run "
                            "them (docs/rules.md)")
        rules = self.rule_engine()
        with self.lock:
            self._check_core()
            return rules.invariant_locked(name, text, self.remove_invariant)

    def remove_invariant(self, inv: Invariant | str) -> None:
        """Lift an invariant."""
        with self.lock:
            self._check_core()
            if self._rules is None:
                raise TriggerNotFound(f"no invariant {inv!r}")
            self._rules.remove_invariant_locked(inv)

    def invariants(self) -> list[Invariant]:
        with self.lock:
            return [] if self._rules is None else self._rules.invariants()

    def explain_rule(self, goal: str,
                     bindings: list[tuple[str, Any]]) -> list[tuple[str, str, int]]:
        """Which literal of ``goal`` stops it (prolog/rules.pl, rules_explain/6)."""
        rules = self.rule_engine()
        with self.lock:
            self._check_core()
            return rules.prolog.explain(goal, bindings, rules.limits.install_inferences)

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
                "rule_watches": self._rules.watch_count if self._rules is not None else 0,
                "invariants": self._rules.invariant_count if self._rules is not None else 0,
            }

    def close(self, last: int | None = None) -> None:
        """Close every session (in the order they were opened, ``last`` at the end: the
        engine's own), then give back the Prolog modules and the dispatcher. Closing
        twice is harmless."""
        replicated = self.replicated
        if replicated is not None and not self.closed:
            replicated.close()      # ends the sessions' leases, stops replicating
        ticket = 0
        with self.lock:
            if self.closed:
                return
            for sid in sorted(self._sessions, key=lambda sid: (sid == last, sid)):
                ticket = max(ticket, self._close_session_locked(sid))
            self.closed = True
            self._finalizer.detach()
        self._acknowledge(ticket, quiet=True)
        with self._kb_lock:
            self._resources.release(at_safe_point=True)
        _bury_dropped()


def _check_batch(batch: object) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise QueryError(f"batch must be a positive int, got {batch!r}")


def _natural_records(records: list[Record]) -> list[Record]:
    """Records (of distinct names) in natural name order."""
    by_name = {r.name: r for r in records}
    return [by_name[n] for n in natural_sorted(list(by_name))]


def _natural_first(names: list[str]) -> str:
    return min(names, key=natural_key)

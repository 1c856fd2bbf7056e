"""The embedded engine: atomic store operations, triggers, revisions and sessions.

Theory of operation:

1. One :class:`~octopus.core.Core` per :class:`Engine` holds the state: a private Prolog module
   with the records (prolog/store.pl), the installed triggers and subscriptions with
   their bitmap indexes, the revision counter, the owners of ephemeral records, and
   the event dispatcher.
2. Every public call takes the core's lock once, for its whole effect: the store
   change, the revision, matching triggers and queueing their events, and installing
   the call's own trigger. Calls are therefore atomic with respect to each other and
   to trigger installation. Nothing under the lock waits for anything but Prolog.
3. Parsing and binding parameters happen before the lock is taken; a bad query is
   refused before anything changes.
4. :class:`Session` is the API; :class:`Engine` is the session that owns the core and
   lives as long as it. A session's ephemeral records, triggers and subscriptions end
   when it closes (deleting the records fires ON_DEL triggers like any delete).
5. Handlers run on the dispatcher thread (see :mod:`octopus.events`), never under the
   lock; ``flush()`` waits for every event queued so far.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from octopus.core import BulkRow, Core, attrs_from_prolog, bulk_row
from octopus.errors import (
    ConditionFailed,
    EngineClosed,
    NotFound,
    OctopusError,
    QueryError,
    TriggerNotFound,
)
from octopus.events import Event, Handler, Mode, Subscription, Trigger, wait_with_trigger
from octopus.kb import KnowledgeBase, Progress
from octopus.query.compile import CompiledQuery, compile_query, compile_record
from octopus.query.parser import DEFAULT_MAX_LENGTH
from octopus.recipes.factories import RecipeFactories
from octopus.record import Record, Value, natural_key

__all__ = ["Engine", "Session"]



class Session(RecipeFactories):
    """The Octopus API (SPEC section 3-5). Obtain one from :meth:`Engine.session`.

    Thread-safe: every method may be called from any thread. A session's ephemeral
    records, triggers and subscriptions end when it is closed.
    """

    def __init__(self, core: Core, engine: Engine | None) -> None:
        self._core = core
        self._engine = engine if engine is not None else self  # type: ignore[assignment]
        self._closed = False
        self._ephemeral: set[str] = set()
        self._owned_queries: set[int] = set()

    # --- helpers ---------------------------------------------------------------------

    def _query(self, q: object, params: tuple[object, ...]) -> CompiledQuery:
        return compile_query(q, params, self._core.max_query_length)

    def _check_open(self) -> None:
        if self._closed or self._core.closed:
            raise EngineClosed("the session is closed" if self._closed else "the engine is closed")

    def _check_trigger(self, trigger: Trigger | None) -> None:
        if trigger is None:
            return
        if not isinstance(trigger, Trigger):
            raise QueryError(f"trigger must be an octopus.Trigger, got {type(trigger).__name__}")
        if trigger.installed:
            raise QueryError("this Trigger object is already installed; make a new one")

    def _maybe_install(self, trigger: Trigger | None, query: CompiledQuery, found: bool) -> None:
        """Install ``trigger`` per its install_if (lock held)."""
        if trigger is None:
            return
        if trigger.install_if == "found" and not found:
            return
        if trigger.install_if == "missing" and found:
            return
        trigger.id = self._core.install_locked(trigger, query, trigger.on, trigger.persist, self)
        trigger.query = str(query.query)

    def _fetch_locked(self, cq: CompiledQuery) -> Record | None:
        core = self._core
        name = cq.exact_name
        if name is not None and not cq.constraints:
            reply = core.call("store_get_by_name", name)
            if reply is None:
                return None
            rev, attrs = reply
            return Record._trusted(name, attrs_from_prolog(attrs), rev)
        reply = core.call("store_first", cq.name, cq.constraints)
        if reply is None:
            return None
        if type(reply) is list:     # several matches: take the first in natural order
            name = min(reply, key=natural_key)
            rev, attrs = core.call("store_get_by_name", name)
        else:
            name, rev, attrs = reply
        return Record._trusted(name, attrs_from_prolog(attrs), rev)

    # --- the store -------------------------------------------------------------------

    def get(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        """The first record matching ``q`` in natural name order; NotFound if none."""
        core = self._core
        cq = compile_query(q, params, core.max_query_length)
        if trigger is not None:
            self._check_trigger(trigger)
        with core.lock:
            if self._closed or core.closed:
                self._check_open()
            record = self._fetch_locked(cq)
            if trigger is not None:
                self._maybe_install(trigger, cq, record is not None)
        if record is None:
            raise NotFound(f"no record matches {q!r}")
        return record

    def get_names(self, q: str, *params: object, trigger: Trigger | None = None) -> list[str]:
        """All names matching ``q``, in natural order (``[]`` if none)."""
        cq = self._query(q, params)
        self._check_trigger(trigger)
        with self._core.lock:
            self._check_open()
            names: list[str] = self._core.call("store_names", cq.name, cq.constraints)
            self._maybe_install(trigger, cq, bool(names))
        names.sort(key=natural_key)
        return names

    def get_all(self, q: str, *params: object) -> list[Record]:
        """All records matching ``q``, in natural name order."""
        cq = self._query(q, params)
        with self._core.lock:
            self._check_open()
            rows = self._core.call("store_all", cq.name, cq.constraints)
        rows.sort(key=lambda row: natural_key(row[0]))
        return [Record._trusted(n, attrs_from_prolog(d), rev) for n, rev, d in rows]

    def exists(self, q: str, *params: object, trigger: Trigger | None = None) -> bool:
        """Whether any record matches ``q``."""
        cq = self._query(q, params)
        self._check_trigger(trigger)
        with self._core.lock:
            self._check_open()
            found: bool = self._core.call("store_exists", cq.name, cq.constraints)
            self._maybe_install(trigger, cq, found)
        return found

    def set(self, rec: str, *params: object, sequential: bool = False, ephemeral: bool = False,
            trigger: Trigger | None = None) -> Record:
        """Store (replace) a record; comparisons in ``rec`` are preconditions checked
        atomically (ConditionFailed). With ``sequential``, the name is a base to which
        the next number of its counter is appended. With ``ephemeral``, the record is
        deleted when this session ends."""
        cr = compile_record(rec, params, max_length=self._core.max_query_length)
        self._check_trigger(trigger)
        core = self._core
        with core.lock:
            self._check_open()
            revision = core.revision + 1
            try:
                name = core.call("store_set", cr.name, cr.pairs, cr.conditions,
                                 bool(sequential), revision)
            except ConditionFailed:
                self._maybe_install(trigger, self._query(rec, params), False)
                raise
            core.revision = revision
            record = Record._trusted(name, cr.attributes, revision)
            core.own_locked(name, self if ephemeral else None)
            core.changed_locked(Mode.ON_SET, record, revision)
            if trigger is not None:
                tq = self._query(rec, params) if not sequential else \
                    self._query(str(record), ())
                self._maybe_install(trigger, tq, True)
        return record

    def delete(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        """Delete the named record if it matches ``q``; return it. NotFound otherwise."""
        cq = self._query(q, params)
        if cq.exact_name is None:
            raise QueryError(f"delete needs a plain record name, not {cq.query.name}")
        self._check_trigger(trigger)
        with self._core.lock:
            self._check_open()
            deleted = self._core.delete_locked(cq.exact_name, cq.constraints)
            self._maybe_install(trigger, cq, deleted is not None)
        if deleted is None:
            raise NotFound(f"no record matches {q!r}")
        return deleted[0]

    def set_many(self, records: Iterable[Record | str | tuple[str, Mapping[str, Value]]],
                 *, batch: int = 5000,
                 progress: Callable[[int], None] | None = None) -> int:
        """Store many records (plain replace, no conditions) in batches; return the count.

        Each batch is one atomic Prolog transaction; triggers fire for every record as
        for ``set``. ``progress(n)`` is called after each batch with the running total.
        Bad input raises before its batch changes anything.
        """
        total = 0
        chunk: list[BulkRow] = []
        for item in records:
            chunk.append(bulk_row(item, self._core.max_query_length))
            if len(chunk) >= batch:
                total += self._load_batch(chunk)
                chunk = []
                if progress is not None:
                    progress(total)
        if chunk:
            total += self._load_batch(chunk)
            if progress is not None:
                progress(total)
        return total

    def _load_batch(self, chunk: list[BulkRow]) -> int:
        core = self._core
        with core.lock:
            self._check_open()
            return core.load_locked(chunk)

    # --- triggers, waiting, publish/subscribe --------------------------------------

    def watch(self, q: str, handler: Handler, *params: object,
              on: Mode = Mode.ON_SET | Mode.ON_DEL, persist: bool = True) -> Trigger:
        """Install a trigger on ``q`` for future changes; returns it (see remove_trigger)."""
        trigger = Trigger(handler, on=on, persist=persist)
        self.exists(q, *params, trigger=trigger)
        return trigger

    def watch_existing(self, q: str, handler: Handler, *params: object,
                       on: Mode = Mode.ON_SET | Mode.ON_DEL) -> Trigger:
        """Like watch, but first deliver one ON_SET event per current match, in natural
        name order; then future changes, with no duplicate and no gap."""
        trigger = Trigger(handler, on=on, persist=True)
        cq = self._query(q, params)
        core = self._core
        with core.lock:
            self._check_open()
            rows = core.call("store_all", cq.name, cq.constraints)
            rows.sort(key=lambda row: natural_key(row[0]))
            self._maybe_install(trigger, cq, True)
            assert trigger.id is not None
            core.dispatcher.put_many(
                (handler, Event(Mode.ON_SET, Record._trusted(n, attrs_from_prolog(d), rev),
                                trigger.id, core.revision))
                for n, rev, d in rows)
        return trigger

    def remove_trigger(self, trigger: Trigger | int) -> None:
        """Remove an installed trigger; its handler gets a last event with mode REMOVED."""
        qid = trigger.id if isinstance(trigger, Trigger) else trigger
        with self._core.lock:
            self._check_open()
            inst = self._core.installed.get(qid) if isinstance(qid, int) else None
            if inst is None or not isinstance(inst.obj, Trigger):
                raise TriggerNotFound(f"no installed trigger {qid!r}")
            self._core.remove_locked(qid)  # type: ignore[arg-type]

    def wait_for(self, q: str, *params: object, timeout: float | None = None) -> Record:
        """The first record matching ``q`` now, else the first one set later.

        Raises WaitTimeout (a TimeoutError) after ``timeout`` seconds; leaves no trigger
        behind however it ends. Must not be called from an event handler.
        """
        core = self._core
        if core._dispatcher is not None and threading.current_thread() is core._dispatcher.thread:
            raise OctopusError("wait_for from an event handler would deadlock the dispatcher")
        record = wait_with_trigger(self.get, self.remove_trigger, q, params, timeout)
        if record is None:  # the session or engine closed while waiting
            raise EngineClosed("closed while waiting")
        return record

    def subscribe(self, q: str, handler: Handler, *params: object) -> Subscription:
        """Receive every message published from now on that matches ``q`` (ON_PUBLISH)."""
        if not callable(handler):
            raise QueryError("a subscription's handler must be callable")
        cq = self._query(q, params)
        with self._core.lock:
            self._check_open()
            sub = Subscription(handler, str(cq.query), 0)
            sub.id = self._core.install_locked(sub, cq, Mode.ON_PUBLISH, True, self)
        return sub

    def unsubscribe(self, subscription: Subscription | int) -> None:
        """End a subscription; its handler gets a last event with mode REMOVED."""
        qid = subscription.id if isinstance(subscription, Subscription) else subscription
        with self._core.lock:
            self._check_open()
            inst = self._core.installed.get(qid) if isinstance(qid, int) else None
            if inst is None or not isinstance(inst.obj, Subscription):
                raise TriggerNotFound(f"no subscription {qid!r}")
            self._core.remove_locked(qid)  # type: ignore[arg-type]

    def publish(self, message: str, *params: object) -> int:
        """Deliver ``message`` to every matching subscription; return how many."""
        cr = compile_record(message, params, what="publish",
                            max_length=self._core.max_query_length)
        core = self._core
        with core.lock:
            self._check_open()
            index = core.subscription_index
            if not len(index):
                return 0
            candidates = index.candidates(cr.name, cr.attributes)
            if not candidates:
                return 0
            record = Record._trusted(cr.name, cr.attributes, core.revision)
            return core.fire_locked(candidates, Mode.ON_PUBLISH, record, core.revision)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far has been handled (False on timeout).

        Returns at once when called from a handler."""
        dispatcher = self._core._dispatcher
        return True if dispatcher is None else dispatcher.flush(timeout)

    # --- the knowledge base (octopus.kb) --------------------------------------------

    @property
    def kb(self) -> KnowledgeBase:
        """The engine's knowledge base (shared by all of its sessions)."""
        self._check_open()
        return self._core.knowledge_base()

    def consult(self, path: str | os.PathLike[str], *, progress: Progress = None) -> int:
        """Load a knowledge-base file; see :meth:`KnowledgeBase.consult`."""
        return self.kb.consult(path, progress=progress)

    def add_facts(self, text: str, *, progress: Progress = None) -> int:
        """Add knowledge-base clauses; see :meth:`KnowledgeBase.add_facts`."""
        return self.kb.add_facts(text, progress=progress)

    def prolog(self, goal: str, *, limit: int | None = None,
               **bindings: object) -> list[dict[str, Any]]:
        """Solutions of a knowledge-base goal; see :meth:`KnowledgeBase.prolog`."""
        return self.kb.prolog(goal, limit=limit, **bindings)

    def prolog_once(self, goal: str, **bindings: object) -> dict[str, Any] | None:
        """The first solution or None; see :meth:`KnowledgeBase.prolog_once`."""
        return self.kb.prolog_once(goal, **bindings)

    # --- sessions --------------------------------------------------------------------

    def session(self) -> Session:
        """A new session of this engine (a context manager)."""
        with self._core.lock:
            self._check_open()
            s = Session(self._core, self._engine)
            self._engine._sessions.add(s)
        return s

    @property
    def revision(self) -> int:
        """The engine's current revision (that of its last change)."""
        return self._core.revision

    @property
    def closed(self) -> bool:
        return self._closed or self._core.closed

    def close(self) -> None:
        """End the session: delete its ephemeral records (firing ON_DEL triggers) and
        remove its triggers and subscriptions (each gets its REMOVED event).
        Closing twice is harmless."""
        core = self._core
        with core.lock:
            if self._closed or core.closed:
                self._closed = True
                return
            self._release_locked()
            self._closed = True
            if self._engine is not self:
                self._engine._sessions.discard(self)

    def _release_locked(self) -> None:
        core = self._core
        for name in sorted(self._ephemeral, key=natural_key):
            core.delete_locked(name, [])
        for qid in sorted(self._owned_queries):
            core.remove_locked(qid)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {state} revision={self._core.revision}>"


class Engine(Session):
    """The embedded Octopus engine: a record store with triggers and pub/sub in-process.

    The engine is itself a session that lives until :meth:`close`. Use it as a context
    manager, or call ``close()``; the engine's Prolog module is then emptied.
    """

    def __init__(self, *, max_query_length: int = DEFAULT_MAX_LENGTH) -> None:
        if not isinstance(max_query_length, int) or max_query_length < 1:
            raise QueryError("max_query_length must be a positive int")
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        super().__init__(Core(max_query_length), None)

    def close(self) -> None:
        core = self._core
        with core.lock:
            if core.closed:
                return
            for s in list(self._sessions):
                if not s._closed:
                    s._release_locked()
                    s._closed = True
            self._release_locked()
            self._closed = True
            core.closed = True
            core.rt.call("octopus_store", "store_destroy", core.module)
            core.rt.call("octopus_triggers", "trigger_clear", core.module)
        if core._kb is not None:
            core._kb.close()
        if core._dispatcher is not None:
            core._dispatcher.stop()

    def __enter__(self) -> Engine:
        return self

    def count(self) -> int:
        """The number of stored records."""
        with self._core.lock:
            self._check_open()
            return int(self._core.call("store_count"))

    def warm(self) -> None:
        """Build the store's clause indexes now (worth it after a large bulk load)."""
        with self._core.lock:
            self._check_open()
            self._core.call("store_warm")


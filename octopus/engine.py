"""The embedded engine and its sessions: thin handles on a :class:`~octopus.core.Core`.

A :class:`Session` is a core and a session id; each method compiles nothing and decides
nothing itself, it names the session and passes the call to the core, which owns every
piece of state (see the theory of operation in :mod:`octopus.core`). The network
:class:`~octopus.server.client.Client` has the same methods with the same signatures;
tests/test_parity.py checks that they stay twins.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from octopus.bulk import read_file
from octopus.core import Change, Core
from octopus.errors import KnowledgeBaseError, OctopusError, PersistenceError, QueryError
from octopus.events import Handler, Mode, Subscription, Trigger
from octopus.explain import DEFAULT_LIMIT, WaitExplanation
from octopus.kb import KnowledgeBase, Limits, Progress, Solutions
from octopus.query.parser import DEFAULT_MAX_LENGTH
from octopus.recipes.factories import RecipeFactories
from octopus.record import Record, Value
from octopus.rules import (
    Invariant,
    RowHandler,
    RuleLimits,
    RuleWatch,
    check_arg,
    check_bindings,
    check_relation_name,
)
from octopus.waiting import wait_for

if TYPE_CHECKING:
    from octopus.durable.persistence import Persistence

__all__ = ["Engine", "Session"]


class Session(RecipeFactories):
    """The Octopus API (docs/api.md). Obtain one from :meth:`Engine.session`.

    Thread-safe: every method may be called from any thread. A session's ephemeral
    records, triggers and subscriptions end when it is closed.
    """

    def __init__(self, core: Core, sid: int) -> None:
        self._core = core
        self._sid = sid

    # --- the store -------------------------------------------------------------------

    def get(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        """The first record matching ``q`` in natural name order; NotFound if none."""
        return self._core.get(self._sid, q, params, trigger)

    def get_names(self, q: str, *params: object, trigger: Trigger | None = None) -> list[str]:
        """All names matching ``q``, in natural order (``[]`` if none)."""
        return self._core.get_names(self._sid, q, params, trigger)

    def get_all(self, q: str, *params: object) -> list[Record]:
        """All records matching ``q``, in natural name order."""
        return self._core.get_all(self._sid, q, params)

    def exists(self, q: str, *params: object, trigger: Trigger | None = None) -> bool:
        """Whether any record matches ``q``."""
        return self._core.exists(self._sid, q, params, trigger)

    def set(self, rec: str, *params: object, sequential: bool = False, ephemeral: bool = False,
            trigger: Trigger | None = None) -> Record:
        """Store (replace) a record; comparisons and regexes in ``rec`` are preconditions
        checked atomically (ConditionFailed). With ``sequential``, the name is a base to
        which the next number of its counter is appended. With ``ephemeral``, the record
        is deleted when this session ends."""
        return self._core.set(self._sid, rec, params, sequential, ephemeral, trigger)

    def delete(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        """Delete the named record if it matches ``q``; return it. NotFound otherwise."""
        return self._core.delete(self._sid, q, params, trigger)

    def set_many(self, records: Iterable[Record | str | tuple[str, Mapping[str, Value]]],
                 *, batch: int = 5000, progress: Callable[[int], None] | None = None) -> int:
        """Store many records (plain replace, no conditions) in batches; return the count.

        Each batch is one atomic Prolog transaction; triggers fire for every record as
        for ``set``. ``progress(n)`` is called after each batch with the running total.
        Bad input raises before its batch changes anything.
        """
        return self._core.set_many(self._sid, records, batch, progress)

    def load(self, source: str | os.PathLike[str] | Iterable[str], *, batch: int = 10_000,
             progress: Callable[[int], None] | None = None) -> int:
        """Store the records of a file (a path, or a binary file object) or of lines of
        text: record texts, one
        per line, as ``octopus data dump`` and ``str(record)`` print them (the format:
        docs/language.md, "Records in bulk"); return how many were stored.

        Each batch of ``batch`` records is one atomic Prolog call and a change per
        record, as for :meth:`set_many`. A bad record raises a QueryError (a ParseError
        for bad text) whose ``line`` is its line number, before its batch changes
        anything; earlier batches stay stored, and ``error.loaded`` says how many
        records they held. A string is a file name, never a record.
        """
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as f:
                return self._core.load(self._sid, read_file(f, self._core.max_query_length),
                                       batch, progress)
        if hasattr(source, "read") and not isinstance(source, io.TextIOBase):  # binary
            reader = cast(BinaryIO, source)
            return self._core.load(self._sid, read_file(reader, self._core.max_query_length),
                                   batch, progress)
        if isinstance(source, bytes | bytearray):
            raise QueryError("load takes a file name or lines of text, not bytes")
        return self._core.load(self._sid, source, batch, progress)

    # --- triggers, waiting, publish/subscribe --------------------------------------

    def watch(self, q: str, handler: Handler, *params: object,
              on: Mode = Mode.ON_SET | Mode.ON_DEL, persist: bool = True) -> Trigger:
        """Install a trigger on ``q`` for future changes; returns it (see remove_trigger)."""
        trigger = Trigger(handler, on=on, persist=persist)
        self._core.exists(self._sid, q, params, trigger)
        return trigger

    def watch_existing(self, q: str, handler: Handler, *params: object,
                       on: Mode = Mode.ON_SET | Mode.ON_DEL) -> Trigger:
        """Like watch, but first deliver one ON_SET event per current match, in natural
        name order; then future changes, with no duplicate and no gap."""
        return self._core.watch_existing(self._sid, q, params, handler, on)

    def remove_trigger(self, trigger: Trigger | int) -> None:
        """Remove a trigger this session installed; its handler gets a last event with
        mode REMOVED. TriggerNotFound for any other."""
        self._core.remove_trigger(self._sid, trigger)

    def wait_for(self, q: str, *params: object, timeout: float | None = None) -> Record:
        """The first record matching ``q`` now, else the first one set later.

        Raises WaitTimeout (a TimeoutError) after ``timeout`` seconds; leaves no trigger
        behind however it ends. Must not be called from an event handler.
        """
        if self._core.on_dispatcher_thread():
            raise OctopusError("wait_for from an event handler would deadlock the dispatcher")
        return wait_for(self, q, params, timeout)

    def explain_wait(self, q: str, *params: object,
                     limit: int = DEFAULT_LIMIT) -> WaitExplanation:
        """Why ``wait_for(q)`` would block, or not (:class:`~octopus.explain.WaitExplanation`):
        the records matching now with the sessions keeping them, the record of the
        query's exact name and the constraints it fails, and the sessions waiting for
        ``q``. One atomic look; lists at most ``limit`` records."""
        return self._core.explain_wait(self._sid, q, params, limit)

    def subscribe(self, q: str, handler: Handler, *params: object) -> Subscription:
        """Receive every message published from now on that matches ``q`` (ON_PUBLISH)."""
        return self._core.subscribe(self._sid, q, params, handler)

    def unsubscribe(self, subscription: Subscription | int) -> None:
        """End a subscription of this session; its handler gets a last event with mode
        REMOVED."""
        self._core.unsubscribe(self._sid, subscription)

    def publish(self, message: str, *params: object) -> int:
        """Deliver ``message`` to every matching subscription; return how many."""
        return self._core.publish(self._sid, message, params)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far has been handled (False on timeout).

        Returns at once when called from a handler."""
        return self._core.flush(timeout)

    def on_handler_thread(self) -> bool:
        """Whether the caller is a handler of this engine's events (its dispatcher
        thread): a wait there could never see the event that ends it."""
        return self._core.on_dispatcher_thread()

    # --- consistency (docs/cluster.md) ----------------------------------------------

    def sync(self, timeout: float | None = None) -> int:
        """Make the next reads linearizable: wait until this engine has applied every
        change committed anywhere in its cluster before the call; return the revision it
        has then. Unavailable if the cluster has no quorum. Returns at once on an engine
        that is not a replica (it is always in sync)."""
        return self._core.sync(self._sid, timeout)

    def staleness(self) -> float:
        """At most how many seconds old this engine's state may be: 0.0 when it is not
        a replica or has heard from a quorum of its cluster within the last heartbeat;
        growing while the quorum is out of reach (reads go on meanwhile)."""
        return self._core.staleness()

    # --- the knowledge base (octopus.kb) --------------------------------------------

    @property
    def kb(self) -> KnowledgeBase:
        """The engine's knowledge base (shared by all of its sessions)."""
        return self._core.knowledge_base()

    def consult(self, path: str | os.PathLike[str], *, progress: Progress = None) -> int:
        """Load a knowledge-base file; see :meth:`KnowledgeBase.consult`."""
        return self.kb.consult(path, progress=progress)

    def add_facts(self, text: str, *, progress: Progress = None) -> int:
        """Add knowledge-base clauses; see :meth:`KnowledgeBase.add_facts`."""
        return self.kb.add_facts(text, progress=progress)

    def prolog(self, goal: str, *, limit: int | None = None, timeout: float | None = None,
               **bindings: object) -> list[dict[str, Any]]:
        """Solutions of a knowledge-base goal; see :meth:`KnowledgeBase.prolog`."""
        return self.kb.prolog(goal, limit=limit, timeout=timeout, **bindings)

    def prolog_once(self, goal: str, *, timeout: float | None = None,
                    **bindings: object) -> dict[str, Any] | None:
        """The first solution or None; see :meth:`KnowledgeBase.prolog_once`."""
        return self.kb.prolog_once(goal, timeout=timeout, **bindings)

    def prolog_iter(self, goal: str, *, batch: int = 1, timeout: float | None = None,
                    **bindings: object) -> Solutions:
        """Solutions one step at a time; see :meth:`KnowledgeBase.prolog_iter`."""
        return self.kb.prolog_iter(goal, batch=batch, timeout=timeout, **bindings)

    # --- rules over live records (docs/rules.md) --------------------------------------

    def rules(self, text: str) -> list[str]:
        """Load rules into the knowledge base, checked first against the rule family
        (a rule outside it raises RuleError and loads nothing), and declare the
        relations they define, so that they can be watched by name (also over the
        wire). Returns them as ``"name/arity"``."""
        return self._core.load_rules(text)

    def watch_rule(self, goal: str, handler: RowHandler, *,
                   on: Mode = Mode.ON_SET | Mode.ON_DEL, existing: bool = False,
                   **bindings: object) -> RuleWatch:
        """Watch the rows of ``goal`` (knowledge-base text, e.g. ``"unbound(Dev)"``):
        the handler gets a :class:`~octopus.rules.RowEvent` when a row appears
        (ON_SET) or disappears (ON_DEL), in revision order, exactly once, atomically
        with the change that caused it. A row is the values of the goal's named
        variables (except those bound by ``bindings``, given as data, and those
        starting with ``_``). With ``existing``, the current rows come first, with no
        gap. RuleError if the goal is outside the rule family."""
        checked = check_bindings(bindings)
        if not isinstance(goal, str):
            raise QueryError(f"goal must be a str, got {type(goal).__name__}")
        return self._core.watch_rule(self._sid, ("goal", goal, checked), goal, handler, on,
                                     existing)

    def watch_relation(self, relation: str, handler: RowHandler, *args: object,
                       on: Mode = Mode.ON_SET | Mode.ON_DEL,
                       existing: bool = False) -> RuleWatch:
        """Watch a relation declared by :meth:`rules`, its arguments given as data
        (``None``: any value; a str is an identifier; no arguments at all: any value
        at every position). A row is all of the relation's arguments, named as in its
        rules. Otherwise as :meth:`watch_rule`."""
        check_relation_name(relation)
        values = [check_arg(a, f"argument {i + 1}") for i, a in enumerate(args)]
        query = f"{relation}/{len(values)}" if values else relation
        return self._core.watch_rule(self._sid, ("relation", relation, values), query,
                                     handler, on, existing)

    def remove_rule_watch(self, watch: RuleWatch | int) -> None:
        """Remove a derived watch this session installed (as ``watch.remove()``); its
        handler gets REMOVED. TriggerNotFound for any other."""
        self._core.remove_rule_watch(self._sid, watch)

    def explain_rule(self, goal: str, **bindings: object) -> list[tuple[str, str, int]]:
        """Why ``goal`` has no solution (or what it has): for each of its literals in
        order, up to the first that fails, ``(literal, "ok" | "fail" | "unknown",
        solutions so far)``, counting at most 100."""
        checked = check_bindings(bindings)
        if not isinstance(goal, str):
            raise QueryError(f"goal must be a str, got {type(goal).__name__}")
        return self._core.explain_rule(goal, checked)

    # --- sessions --------------------------------------------------------------------

    def session(self) -> Session:
        """A new session of this engine (a context manager)."""
        return Session(self._core, self._core.open_session())

    @property
    def id(self) -> int:
        """The session's id in its engine (explanations name sessions by it)."""
        return self._sid

    @property
    def name(self) -> str | None:
        """The name explanations show for this session (None: none)."""
        return self._core.session_name(self._sid)

    @name.setter
    def name(self, name: str | None) -> None:
        self._core.name_session(self._sid, name)

    @property
    def revision(self) -> int:
        """The engine's current revision (that of its last change)."""
        return self._core.revision

    @property
    def closed(self) -> bool:
        return not self._core.is_open(self._sid)

    def close(self) -> None:
        """End the session: delete its ephemeral records (firing ON_DEL triggers) and
        remove its triggers and subscriptions (each gets its REMOVED event).
        Closing twice is harmless."""
        self._core.close_session(self._sid)

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
    manager, or call ``close()``: every session ends, and the engine's Prolog modules
    are emptied.

    Without ``path`` the engine lives in memory only. With ``path`` (a directory,
    created if needed) it is durable (docs/durability.md): it recovers what the
    directory holds, then journals every change before applying it. ``fsync`` is
    ``"always"`` (a change returns once it is on disk; concurrent writers share
    fsyncs), ``"everysec"`` (a process crash loses nothing, a power loss about the
    last second) or ``"no"`` (the kernel decides). The journal is rewritten into a
    snapshot when it outgrows ``compact_ratio`` times the last snapshot and
    ``compact_min_bytes``. Raises PersistenceError if the directory cannot be used
    (another engine holds it, or it is corrupt).
    """

    def __init__(self, *, max_query_length: int = DEFAULT_MAX_LENGTH,
                 path: str | os.PathLike[str] | None = None, fsync: str = "everysec",
                 compact_ratio: float = 1.0, compact_min_bytes: int = 16 << 20,
                 etcd: str | Sequence[str] | None = None, prefix: str = "/octopus/",
                 lease_ttl: int = 10, kb_limits: Limits | None = None) -> None:
        """With ``etcd`` (endpoint URLs, a list or comma-separated), the engine is a
        replica of the cluster stored under ``prefix`` in that etcd cluster: it joins
        the servers and engines already there (docs/cluster.md). Its sessions are etcd
        leases of ``lease_ttl`` seconds. A replica keeps its state in etcd, so ``path``
        and ``etcd`` do not go together.

        ``kb_limits`` bounds every knowledge-base call (default ``Limits()``,
        docs/knowledge-base.md). A durable engine replays its journaled loads within
        them as it opens: give it the limits its loads needed."""
        if isinstance(max_query_length, bool) or not isinstance(max_query_length, int) \
                or max_query_length < 1:
            raise QueryError("max_query_length must be a positive int")
        if path is not None and not isinstance(path, str | os.PathLike):
            raise QueryError(f"path must be a str or path, got {type(path).__name__}")
        if path is not None and etcd is not None:
            raise QueryError("a replica's state is in etcd: give path= or etcd=, not both")
        if kb_limits is not None and not isinstance(kb_limits, Limits):
            raise KnowledgeBaseError(
                f"kb_limits must be a Limits, got {type(kb_limits).__name__}")
        core = Core(max_query_length, kb_limits)
        self._persistence: Persistence | None = None
        if path is not None:
            from octopus.durable.persistence import Persistence

            persistence = Persistence(core, path, fsync=fsync, compact_ratio=compact_ratio,
                                      compact_min_bytes=compact_min_bytes)
            try:
                persistence.open()
            except BaseException:
                core.close()
                raise
            self._persistence = persistence
        if etcd is not None:
            from octopus.cluster.replica import Replica

            try:
                Replica(core, etcd, prefix=prefix, lease_ttl=lease_ttl).start()
            except BaseException:
                core.close()
                raise
        super().__init__(core, core.open_session())

    def close(self) -> None:
        """Close every other session of the engine, then its own, then the engine (a
        durable engine syncs its journal and releases its directory). Closing twice is
        harmless."""
        persistence = self._persistence
        if persistence is not None:
            persistence.stop()
        self._core.close(last=self._sid)
        if persistence is not None:
            persistence.close()

    @property
    def path(self) -> str | None:
        """The data directory of a durable engine (None: in memory)."""
        p = self._persistence
        return None if p is None else str(p.directory)

    def compact(self) -> None:
        """Write a snapshot of the whole state now and start a new journal (a durable
        engine does this by itself as the journal grows). PersistenceError if it
        cannot, or if the engine is in memory."""
        if self._persistence is None:
            raise PersistenceError("compact needs a durable engine (Engine(path=...))")
        self._core._check_core()
        self._persistence.compact()

    def __enter__(self) -> Engine:
        return self

    def observe(self, observer: Callable[[Change], None]) -> Callable[[], None]:
        """Hand every change committed from now on to ``observer``, in revision order,
        inside the commit (see :mod:`octopus.core`); returns a function that stops it.
        The observer must not block or call the engine."""
        return self._core.observe(observer)

    def count(self) -> int:
        """The number of stored records."""
        return self._core.count()

    def stats(self) -> dict[str, int | float | str]:
        """Counters of the engine's state: revision, records, indexed keys (the keys
        queries use), sessions, ephemeral records, triggers, subscriptions, events
        pending; for a durable engine also its persistence (:meth:`persistence`)."""
        stats: dict[str, int | float | str] = dict(self._core.stats())
        stats.update(self.persistence())
        return stats

    def persistence(self) -> dict[str, int | float | str]:
        """The state of a durable engine's journal and snapshots (empty in memory):
        fsync policy, status, journal size and entries, last fsync and last snapshot
        (Unix times), snapshot size, the last and longest writer pause of a snapshot,
        recovery time (docs/durability.md lists every key)."""
        p = self._persistence
        return {} if p is None else p.stats()

    def warm(self) -> None:
        """Build the store's clause indexes now (worth it after a large bulk load)."""
        self._core.warm()

    def invariant(self, name: str, rules: str) -> Invariant:
        """Refuse, from now on, every set or delete that would make a row of the
        relation defined by ``rules`` appear (``"violation(Dev) :- ..."``; clauses of
        one head, calling knowledge-base rules and the record view). The write raises
        :class:`~octopus.errors.InvariantViolated` (a ConditionFailed naming the
        invariant and the row) and changes nothing. ConditionFailed at once if the
        relation already has a row; RuleError if it is outside the rule family. Not
        available on a replica of a cluster."""
        return self._core.invariant(name, rules)

    def remove_invariant(self, invariant: Invariant | str) -> None:
        """Lift an invariant (by object or name)."""
        self._core.remove_invariant(invariant)

    def invariants(self) -> list[Invariant]:
        """The installed invariants."""
        return self._core.invariants()

    @property
    def rule_limits(self) -> RuleLimits:
        """What evaluating rules may cost; assign a new RuleLimits to change them."""
        return self._core.rule_engine().limits

    @rule_limits.setter
    def rule_limits(self, limits: RuleLimits) -> None:
        if not isinstance(limits, RuleLimits):
            raise QueryError(f"rule_limits must be a RuleLimits, got {type(limits).__name__}")
        self._core.rule_engine().limits = limits

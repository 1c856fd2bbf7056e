"""Rules over live records: derived watches and invariants (docs/rules.md).

The knowledge base reads the engine's live records through ``record(Name)`` and
``attr(Name, Key, Value)`` (prolog/rules_view.pl). On top of that view:

- a **derived watch** (:meth:`octopus.Session.watch_rule`,
  :meth:`octopus.Session.watch_relation`) tells a handler when a row of a relation
  defined by rules appears (``Mode.ON_SET``) or disappears (``Mode.ON_DEL``);
- an **invariant** (:meth:`octopus.Engine.invariant`) refuses every set or delete that
  would make a row of its violation relation appear.

Theory of operation (the guarantees are in docs/guarantees.md):

1. Rules are compiled when a watch or invariant is installed: the goal is unfolded
   through the knowledge base's rules into a small family of conjunctions (joins over
   ``record/1``, ``attr/3`` and knowledge-base facts, negation, comparisons); other
   rules are refused with :class:`~octopus.errors.RuleError` (prolog/rules_family.pl
   says exactly which).
2. A write hands each record it changes to the rules inside its own Prolog
   transaction, after the change (prolog/rules_delta.pl). The keys the rules read are
   compared once, and a table per key names the generators to run: only those whose
   literal reads a changed key (or the record's existence), with the record bound
   first; a write no rule reads evaluates nothing. Every candidate row is checked
   before and after the change, unless the generator that found it already tells. So
   a relation is kept current by looking at what the change can affect, never by
   recomputing it.
3. The rows of a write come back with the write (:attr:`PrologStore.rows`) and this
   module, an observer of the core's change stream, queues their events to the
   dispatcher in the same critical section as the change: in revision order, exactly
   once, atomic with the change, like trigger events. ``existing=True`` queues the
   current rows first, in the critical section that installs the watch: no gap, no
   duplicate.
4. An invariant whose violation relation would gain a row throws inside the
   transaction: the write is undone, nothing is committed, no revision is used, no
   event fires; the caller gets :class:`~octopus.errors.InvariantViolated`. A
   session's end is the exception: its ephemeral records go whatever an invariant
   says (a dead client cannot be refused), and the violation is logged.
5. Every evaluation is bounded in inferences: installing (the whole relation) and each
   change (per watch). A watch over its limit on a change is removed with a final
   ``REMOVED`` event (the change goes on); an invariant over its limit refuses the
   write (:class:`~octopus.errors.RuleError`): it is never given up silently.
6. Knowledge-base predicates that read no record are treated as constants: rows that
   appear or disappear because such facts change are not reported.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

from octopus.adapter import (
    PrologKnowledgeBase,
    PrologRules,
    PrologStore,
    RuleSpec,
    row_values,
)
from octopus.errors import QueryError, RuleError, TriggerNotFound
from octopus.events import Mode

if TYPE_CHECKING:
    from octopus.core import Change
    from octopus.events import Dispatcher

__all__ = ["Invariant", "RowEvent", "RowHandler", "RuleEngine", "RuleLimits", "RuleWatch"]

log = logging.getLogger("octopus.rules")

_NAME = re.compile(r"[a-z][A-Za-z0-9_]*\Z")
_VARIABLE = re.compile(r"[A-Z_][A-Za-z0-9_]*\Z")


@final
@dataclass(frozen=True, slots=True)
class RowEvent:
    """One delivery of a derived watch.

    ``mode`` is ON_SET (the row appeared), ON_DEL (it disappeared) or REMOVED (the
    watch ended: removed, its session closed, or over its limit; ``row`` is None).
    ``row`` holds the row's values in the order of ``names``: identifiers as
    :class:`~octopus.Atom`, strings, numbers, booleans (other Prolog terms as their
    text). ``revision`` is that of the change that caused it (for the current rows
    delivered first, and REMOVED, the revision when it happened).
    """

    mode: Mode
    row: tuple[Any, ...] | None
    names: tuple[str, ...]
    trigger_id: int
    revision: int

    @property
    def bindings(self) -> dict[str, Any]:
        """The row as ``{name: value}`` (empty for REMOVED)."""
        return {} if self.row is None else dict(zip(self.names, self.row, strict=True))

    @property
    def record(self) -> None:
        """Always None: a row is not a record (kept so code written for Event can
        test ``event.record``)."""
        return None


RowHandler = Callable[[RowEvent], Any]


class _Row(tuple[Any, ...]):
    """A row's delivery as queued by the writer: ``(handler, kind, values, names,
    trigger_id, revision)``, kind ``"set"`` or ``"del"``, values as the write left them
    (encoded). A tuple, so that queueing it costs the writer no Python-level
    construction; :func:`_deliver` decodes the values and makes the :class:`RowEvent`
    on the dispatcher thread (as the dispatcher makes record triggers' events).
    ``trigger_id`` and ``mode`` name it if the handler raises."""

    __slots__ = ()

    @property
    def trigger_id(self) -> int:
        return int(self[4])

    @property
    def mode(self) -> Mode:
        return Mode.ON_SET if self[1] == "set" else Mode.ON_DEL


def _deliver(row: _Row) -> Any:
    handler, kind, values, names, qid, revision = row
    return handler(RowEvent(Mode.ON_SET if kind == "set" else Mode.ON_DEL,
                            row_values(values), names, qid, revision))


@dataclass(frozen=True)
class RuleLimits:
    """What evaluating rules may cost (docs/rules.md, Limits).

    - ``install_inferences``: computing a relation when a watch or invariant is
      installed (its current rows);
    - ``change_inferences``: one watch's or invariant's work on one change;
    - ``max_rows``: rows a relation may have when installed (``existing=True`` or an
      invariant).
    """

    install_inferences: int = 50_000_000
    change_inferences: int = 1_000_000
    max_rows: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("install_inferences", "change_inferences", "max_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RuleError(f"RuleLimits.{name} must be a positive int, got {value!r}")

    def _prolog(self) -> list[int]:
        return [self.install_inferences, self.change_inferences, self.max_rows]


class _Installed:
    """What a derived watch and an invariant share: installed until ``remove()``, which
    asks the core to uninstall it (the core clears ``_remove`` when it is gone)."""

    id: int | None

    def __init__(self) -> None:
        self.id = None
        self._remove: Callable[[Any], None] | None = None

    @property
    def installed(self) -> bool:
        return self._remove is not None

    def remove(self) -> None:
        """End it: a derived watch's handler gets a last REMOVED event; an invariant is
        lifted. TriggerNotFound if it has already ended."""
        remove = self._remove
        if remove is None:
            raise TriggerNotFound(f"{self._what()} is not installed")
        remove(self)

    def _what(self) -> str:
        raise NotImplementedError


class RuleWatch(_Installed):
    """A derived watch, installed by ``watch_rule`` or ``watch_relation``; like a
    :class:`~octopus.Trigger`, ``remove()`` ends it (its handler gets REMOVED)."""

    def __init__(self, handler: RowHandler, query: str, on: Mode) -> None:
        super().__init__()
        self.handler = handler
        self.query = query
        self.on = on
        self.names: tuple[str, ...] = ()
        #: The row kinds (prolog/rules_delta.pl) delivered: a set, not ``on``, is
        #: tested per row (a Flag's ``&`` costs a Python call).
        self._kinds = frozenset(k for k, m in (("set", Mode.ON_SET), ("del", Mode.ON_DEL))
                               if on & m)

    def _what(self) -> str:
        return f"rule watch {self.id}"

    def __repr__(self) -> str:
        return f"<RuleWatch id={self.id} query={self.query!r} names={self.names}>"


class Invariant(_Installed):
    """An installed invariant: ``remove()`` lifts it."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__()
        self.name = name
        self.text = text

    def _what(self) -> str:
        return f"invariant {self.name!r}"

    def __repr__(self) -> str:
        return f"<Invariant {self.name!r} id={self.id}>"


def check_on(on: object) -> Mode:
    if not isinstance(on, Mode) or not on & (Mode.ON_SET | Mode.ON_DEL) \
            or on & (Mode.REMOVED | Mode.ON_PUBLISH):
        raise QueryError(f"a rule watch watches Mode.ON_SET and/or Mode.ON_DEL, not {on!r}")
    return on


def check_bindings(bindings: Mapping[str, object]) -> list[tuple[str, Any]]:
    """Goal bindings as data: Prolog variable names to plain values."""
    checked = []
    for name, value in bindings.items():
        if not _VARIABLE.match(name):
            raise RuleError(f"binding {name!r} is not a Prolog variable name")
        checked.append((name, check_arg(value, f"binding {name}")))
    return checked


def check_arg(value: object, where: str) -> object:
    """A value a rule may be given: None (any), str (an identifier), int, float,
    bool."""
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, str) and not value.isascii():
            value.encode("utf-8")      # lone surrogates cannot cross to Prolog
        return value
    raise RuleError(f"{where}: a rule argument is None, str, int, float or bool, not "
                    f"{type(value).__name__}")


def check_relation_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RuleError(f"a relation is named by a plain Prolog name, not {name!r}")
    return name


class RuleEngine:
    """The derived watches and invariants of one core.

    Created by the core on first use; every ``*_locked`` method is called with the
    core's lock held. It observes the core's change stream (:meth:`observe`).
    """

    def __init__(self, store: PrologStore, kb: PrologKnowledgeBase | str,
                 dispatcher: Callable[[], Dispatcher]) -> None:
        self.store = store
        kb_module = kb if isinstance(kb, str) else kb.module
        self.prolog = PrologRules(store, kb_module)
        self._dispatcher = dispatcher
        self.limits = RuleLimits()
        self._watches: dict[int, tuple[RuleWatch, int]] = {}     # id -> (watch, session)
        self._invariants: dict[str, Invariant] = {}
        self._ids = 0
        self._owned: dict[int, set[int]] = {}                    # session -> watch ids
        self._declare_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._watches) + len(self._invariants)

    @property
    def watch_count(self) -> int:
        return len(self._watches)

    @property
    def invariant_count(self) -> int:
        return len(self._invariants)

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # --- watches -------------------------------------------------------------------

    def watch_locked(self, sid: int, spec: RuleSpec, watch: RuleWatch, existing: bool,
                     revision: int, remover: Callable[[RuleWatch], None]) -> RuleWatch:
        """Install ``watch`` for session ``sid``; with ``existing``, queue its current
        rows first."""
        qid = self._next_id()
        names, rows = self.prolog.install(qid, spec, self.limits._prolog(), existing)
        watch.id = qid
        watch.names = tuple(names)
        watch._remove = remover
        self._watches[qid] = (watch, sid)
        self._owned.setdefault(sid, set()).add(qid)
        if rows and watch.on & Mode.ON_SET:
            names_t = watch.names
            self._dispatcher().put_many(
                (watch.handler, RowEvent(Mode.ON_SET, tuple(row), names_t, qid, revision))
                for row in rows)
        return watch

    def lookup(self, sid: int, watch: RuleWatch | int) -> int | None:
        qid = watch.id if isinstance(watch, RuleWatch) else watch
        entry = self._watches.get(qid) if isinstance(qid, int) else None
        if entry is None or entry[1] != sid:
            return None
        return qid

    def remove_locked(self, qid: int, revision: int) -> None:
        """Uninstall watch ``qid`` and queue its REMOVED event."""
        self.prolog.remove(qid)
        self._forget(qid, revision)

    def _forget(self, qid: int, revision: int) -> None:
        self._dispatcher().put(*self._ended(qid, revision))

    def _ended(self, qid: int, revision: int) -> tuple[RowHandler, RowEvent]:
        """Forget watch ``qid`` (already uninstalled in Prolog): its REMOVED delivery."""
        watch, sid = self._watches.pop(qid)
        watch._remove = None
        owned = self._owned.get(sid)
        if owned is not None:
            owned.discard(qid)
            if not owned:
                del self._owned[sid]
        return watch.handler, RowEvent(Mode.REMOVED, None, watch.names, qid, revision)

    def owns(self, sid: int) -> bool:
        """Whether session ``sid`` has a watch installed (a dict read: no lock needed)."""
        return bool(self._owned.get(sid))

    def session_closed_locked(self, sid: int, revision: int) -> None:
        """Remove the watches of a session that ends."""
        for qid in sorted(self._owned.get(sid, ())):
            self.remove_locked(qid, revision)

    # --- invariants ------------------------------------------------------------------

    def invariant_locked(self, name: str, text: str,
                         remover: Callable[[Invariant], None]) -> Invariant:
        if name in self._invariants:
            raise RuleError(f"an invariant named {name!r} is already installed")
        inv = Invariant(name, text)
        qid = self._next_id()
        self.prolog.install(qid, ("invariant", name, text), self.limits._prolog(), True)
        inv.id = qid
        inv._remove = remover
        self._invariants[name] = inv
        return inv

    def remove_invariant_locked(self, inv: Invariant | str) -> None:
        name = inv.name if isinstance(inv, Invariant) else inv
        found = self._invariants.get(name) if isinstance(name, str) else None
        if found is None or (isinstance(inv, Invariant) and found is not inv):
            raise TriggerNotFound(f"no invariant {name!r}")
        del self._invariants[name]
        assert found.id is not None
        self.prolog.remove(found.id)
        found._remove = None

    def invariants(self) -> list[Invariant]:
        return list(self._invariants.values())

    # --- the change stream -----------------------------------------------------------

    def observe(self, change: Change) -> None:
        """Queue the events of the rows ``change`` made appear or disappear (called by
        the core inside the commit)."""
        rows = self.store.rows
        if not rows:
            return
        revision = change.revision
        deliveries: list[tuple[Callable[[Any], Any], Any]] = []
        watches = self._watches
        taken = 0
        for row in rows:
            rev, qid, kind, values = row
            if rev is not None and rev != revision:
                break
            taken += 1
            entry = watches.get(qid)
            if kind == "set" or kind == "del":
                if entry is not None:
                    watch = entry[0]
                    if kind in watch._kinds:
                        deliveries.append((_deliver, _Row((watch.handler, kind, values,
                                                           watch.names, qid, revision))))
                continue
            if kind == "violated":
                log.warning("a session's end deleted %s and broke invariant %s: %s",
                            change.name, self._invariant_name(qid), values)
            elif entry is not None:         # removed: over its limit on this change
                log.warning("rule watch %d (%s) removed: %s", qid, entry[0].query, values)
                deliveries.append(self._ended(qid, revision))
        del rows[:taken]
        if deliveries:
            self._dispatcher().put_many(deliveries)

    def _invariant_name(self, qid: int) -> str:
        for inv in self._invariants.values():
            if inv.id == qid:
                return inv.name
        return str(qid)

    def destroy(self) -> None:
        self.prolog.destroy()

"""The trigger registry: installed triggers and subscriptions, their owners, their
roaring-bitmap index, and their queries on the Prolog side.

Theory of operation (the guarantees are in docs/guarantees.md):

1. The registry is changed only by the core, under the core's lock, in the same
   critical section as the call or change it belongs to: installing a trigger with a
   call, matching a change (which also uninstalls the one-shot triggers it fires), and
   removing a trigger are each atomic with respect to every other call.
2. Matching is two-step: :class:`QueryIndex` narrows a record down to candidate ids
   with roaring bitmaps (each query sits in exactly one bitmap, keyed by the most
   selective thing it requires: its exact name, else one ``key == value`` it requires,
   else one key it requires, else the bitmap of unconstrained queries); then Prolog
   runs the full match on the candidates only. Candidates whose query is ``_`` or an
   exact name with only ``key: _`` and ``key: value`` constraints (an int, bool, string
   or identifier value) are decided in Python (:func:`decided_checks`), exactly as
   Prolog would, and skip the Prolog step unless a value's kind differs from its
   operand's. Non-matching triggers therefore cost (almost) nothing.
3. :meth:`TriggerRegistry.match` returns the deliveries of one change in id order, as
   plain tuples; the core hands them to the dispatcher in the same critical section, so
   events leave in revision order, and the dispatcher thread makes the Event objects.
4. Only the session that installed a trigger or subscription may remove it; for any
   other session it does not exist (:class:`~octopus.errors.TriggerNotFound`).
5. Installing writes the Prolog side first: a query Prolog refuses (a bad regex)
   leaves no trace in the registry.
6. A trigger or subscription whose full match takes more than its CPU budget on a
   change (5 ms, prolog/triggers.pl) is removed in that critical section, with its
   final REMOVED event and a warning on the ``octopus.events`` logger: a change is never
   refused because of someone's trigger, and no trigger taxes every later write.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from pyroaring import BitMap64

from octopus.adapter import PrologStore, encode_attributes
from octopus.events import Handler, Mode, Subscription, Trigger
from octopus.query.compile import CompiledQuery
from octopus.record import Atom, Record, Value

__all__ = ["Delivery", "Installed", "QueryIndex", "TriggerRegistry"]

log = logging.getLogger("octopus.events")

#: A handler and the fields of the event to give it (mode, record, trigger id, revision):
#: the dispatcher thread makes the Event (Dispatcher.put_deliveries), not the writer.
Delivery = tuple[Handler, Mode, Record | None, int, int]

#: Candidates few enough to sort out one by one in Python rather than with bitmap
#: operations (each of which allocates a bitmap).
_FEW = 64

_SET_REMOVED = Mode.ON_SET | Mode.REMOVED
_DEL_REMOVED = Mode.ON_DEL | Mode.REMOVED
_PUBLISH_REMOVED = Mode.ON_PUBLISH | Mode.REMOVED
#: No candidates (never changed).
_NONE = BitMap64()
_WITH_REMOVED = {Mode.ON_SET: _SET_REMOVED, Mode.ON_DEL: _DEL_REMOVED,
                 Mode.ON_PUBLISH: _PUBLISH_REMOVED}


def _value_key(value: Value) -> Any:
    """Index key of a value, equal for values the query language calls equal
    (1 and 1.0 already are; a bool must not collide with 1 or 0)."""
    if isinstance(value, bool):
        return ("bool", value)
    return value


#: The operand of a ``key: _`` check (any value).
_ANY: Any = object()
#: Operand types whose equality with a stored value of the same kind Python decides
#: exactly as prolog/match.pl's value_eq/2 does (floats are left to Prolog).
_EXACT = frozenset({int, bool, str, Atom})
_TEXT = frozenset({str, Atom})

#: What a record must have to match a query, given that it is a candidate for it:
#: (key, operand) pairs, the operand a value it must equal or _ANY.
Checks = tuple[tuple[str, Any], ...]


def decided_checks(query: CompiledQuery) -> Checks | None:
    """The checks that decide ``query`` in Python for its candidates (None: only the
    full match in Prolog does).

    Such a query is ``_`` or an exact name, with ``key: _`` and ``key: value``
    constraints only, each value an int, bool, string or identifier: a candidate
    already has the name (its one bitmap is by_name, by_value, by_key or
    unconstrained, see :meth:`QueryIndex.add`), and the checks test the rest."""
    if query.name is not None and query.exact_name is None:
        return None             # a name regex
    checks = []
    for key, op, operand in query.constraints:
        if op == "any":
            checks.append((key, _ANY))
        elif op == "eq" and type(operand) in _EXACT:
            checks.append((key, operand))
        else:
            return None
    return tuple(checks)


def holds(checks: Checks, attributes: Mapping[str, Value]) -> bool | None:
    """Whether ``attributes`` pass ``checks``; None when a value's kind differs from
    its operand's (``1 == 1.0``, a float: Prolog decides)."""
    for key, operand in checks:
        value = attributes.get(key)
        if value is None:
            return False
        if operand is _ANY:
            continue
        kind, wanted = type(value), type(operand)
        if kind is not wanted and (kind not in _TEXT or wanted not in _TEXT):
            return None
        if value != operand:
            return False
    return True


class QueryIndex:
    """Candidate ids for a record: a superset of the ids whose query matches it."""

    def __init__(self) -> None:
        self.by_name: dict[str, BitMap64] = {}
        self.by_value: dict[tuple[str, Any], BitMap64] = {}
        self.by_key: dict[str, BitMap64] = {}
        self.unconstrained = BitMap64()
        # Queries decided in Python (see decided_keys): no full match in Prolog.
        self.certain = BitMap64()
        self.slot: dict[int, tuple[dict[Any, BitMap64] | None, Any]] = {}

    def __len__(self) -> int:
        return len(self.slot)

    def add(self, qid: int, query: CompiledQuery) -> None:
        table: dict[Any, BitMap64] | None = None
        key: Any = None
        if query.exact_name is not None:
            table, key = self.by_name, query.exact_name
        else:
            for k, op, value in query.constraints:
                if op == "eq":
                    table, key = self.by_value, (k, _value_key(value))
                    break
            if table is None and query.constraints:
                table, key = self.by_key, query.constraints[0][0]
        if decided_checks(query) is not None:
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
        """The candidates; the caller must not change the bitmap (it may be one of the
        index's own)."""
        found = [self.unconstrained] if self.unconstrained else []
        bitmap = self.by_name.get(name)
        if bitmap is not None:
            found.append(bitmap)
        by_value = self.by_value
        if by_value:
            for key, value in attributes.items():
                bitmap = by_value.get((key, ("bool", value) if value.__class__ is bool
                                       else value))
                if bitmap is not None:
                    found.append(bitmap)
        by_key = self.by_key
        if by_key:
            for key in attributes:
                bitmap = by_key.get(key)
                if bitmap is not None:
                    found.append(bitmap)
        if len(found) == 1:
            return found[0]
        # Unions only when needed: each allocates a bitmap.
        return BitMap64.union(*found) if found else _NONE


class Installed:
    """One installed trigger or subscription."""

    __slots__ = ("checks", "handler", "id", "mode", "obj", "on", "owner", "persist",
                 "query")

    def __init__(self, qid: int, obj: Trigger | Subscription, query: CompiledQuery,
                 mode: Mode, persist: bool, owner: int) -> None:
        self.id = qid
        self.obj = obj
        self.query = query
        self.mode = mode
        self.persist = persist
        self.owner = owner
        self.handler = obj.handler
        self.on = mode.value            # an int: enum.Flag's & is slow on the write path
        self.checks = decided_checks(query)

    @property
    def is_subscription(self) -> bool:
        return bool(self.mode & Mode.ON_PUBLISH)


class TriggerRegistry:
    """Every trigger and subscription of one engine (see the theory of operation)."""

    def __init__(self, store: PrologStore) -> None:
        self._store = store
        self._ids = itertools.count(1)
        self._installed: dict[int, Installed] = {}
        self._triggers = QueryIndex()
        self._subscriptions = QueryIndex()
        self._on_set = BitMap64()
        self._on_del = BitMap64()
        self._owned: dict[int, set[int]] = {}        # session -> ids it installed

    def __len__(self) -> int:
        return len(self._installed)

    def __iter__(self) -> Iterator[Installed]:
        return iter(list(self._installed.values()))

    @property
    def trigger_count(self) -> int:
        return len(self._triggers)

    @property
    def subscription_count(self) -> int:
        return len(self._subscriptions)

    def install(self, owner: int, obj: Trigger | Subscription, query: CompiledQuery,
                mode: Mode, persist: bool) -> int:
        """Install ``obj`` for session ``owner``; its new id. QueryError (and nothing
        installed) if Prolog refuses the query."""
        qid = next(self._ids)
        self._store.trigger_add(qid, query.prolog_name, query.prolog_constraints)
        self._installed[qid] = Installed(qid, obj, query, mode, persist, owner)
        if mode & Mode.ON_PUBLISH:
            self._subscriptions.add(qid, query)
        else:
            self._triggers.add(qid, query)
            if mode & Mode.ON_SET:
                self._on_set.add(qid)
            if mode & Mode.ON_DEL:
                self._on_del.add(qid)
        self._owned.setdefault(owner, set()).add(qid)
        return qid

    def lookup(self, owner: int, qid: object, subscription: bool) -> Installed | None:
        """The trigger (or subscription) ``qid`` if session ``owner`` installed it."""
        inst = self._installed.get(qid) if isinstance(qid, int) else None
        if inst is None or inst.owner != owner or inst.is_subscription != subscription:
            return None
        return inst

    def uninstall(self, qid: int) -> Installed:
        """Forget ``qid`` (which must be installed)."""
        inst = self._installed.pop(qid)
        if inst.is_subscription:
            self._subscriptions.remove(qid)
        else:
            self._triggers.remove(qid)
            self._on_set.discard(qid)
            self._on_del.discard(qid)
        self._store.trigger_remove(qid)
        owned = self._owned[inst.owner]
        owned.discard(qid)
        if not owned:
            del self._owned[inst.owner]
        return inst

    def owned_by(self, owner: int) -> list[int]:
        """The ids session ``owner`` installed, in installation order."""
        return sorted(self._owned.get(owner, ()))

    def match(self, mode: Mode, record: Record, revision: int) -> list[Delivery]:
        """The deliveries of a change (ON_SET or ON_DEL) or a message (ON_PUBLISH), in
        id order; one-shot triggers that fire are uninstalled, and their event carries
        REMOVED."""
        if mode is Mode.ON_PUBLISH:
            index = self._subscriptions
            if not index.slot:
                return []
            attributes = record.attributes
            candidates = index.candidates(record.name, attributes)
        else:
            index = self._triggers
            if not index.slot:
                return []
            attributes = record.attributes
            candidates = index.candidates(record.name, attributes)
            if len(candidates) > _FEW:
                candidates = candidates & (self._on_set if mode is Mode.ON_SET
                                           else self._on_del)
        if not candidates:
            return []
        installed = self._installed
        matched: list[int] = []
        unsure: list[int] = []
        if len(candidates) <= _FEW:
            bit = mode.value
            for qid in candidates:
                inst = installed[qid]
                if not inst.on & bit:
                    continue
                checks = inst.checks
                if checks is None:
                    unsure.append(qid)
                elif not checks:
                    matched.append(qid)
                else:
                    hit = holds(checks, attributes)
                    if hit:
                        matched.append(qid)
                    elif hit is None:
                        unsure.append(qid)
        else:
            for qid in candidates & index.certain:
                checks = installed[qid].checks
                hit = holds(checks, attributes) if checks else True
                if hit:
                    matched.append(qid)
                elif hit is None:
                    unsure.append(qid)
            unsure.extend(candidates - index.certain)
            unsure.sort()
        costly: list[int] = []
        if unsure:
            hits, costly = self._store.trigger_match(
                unsure, record.name, encode_attributes(attributes))
            if hits:
                matched.extend(hits)
                matched.sort()
        deliveries: list[Delivery] = []
        for qid in matched:
            inst = installed[qid]
            if inst.persist:
                deliveries.append((inst.handler, mode, record, qid, revision))
            else:
                self.uninstall(qid)
                deliveries.append((inst.handler, _WITH_REMOVED[mode], record, qid, revision))
        for qid in costly:
            # Removed rather than left to tax every write or to miss changes unseen:
            # its owner learns from the REMOVED event (point 6 of the theory).
            inst = self.uninstall(qid)
            log.warning("%s %d (%s) removed: matching it against %s took more than its "
                        "CPU budget",
                        "subscription" if inst.is_subscription else "trigger", qid,
                        inst.query.query, record.name)
            deliveries.append((inst.handler, Mode.REMOVED, None, qid, revision))
        return deliveries

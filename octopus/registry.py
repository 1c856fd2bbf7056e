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
   runs the full match on the candidates only. Candidates whose query is a bare name or
   ``_`` match by being candidates and skip the Prolog step. Non-matching triggers
   therefore cost (almost) nothing.
3. :meth:`TriggerRegistry.match` returns the deliveries of one change in id order; the
   core hands them to the dispatcher in the same critical section, so events leave in
   revision order.
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
from octopus.events import Event, Handler, Mode, Subscription, Trigger
from octopus.query.compile import CompiledQuery
from octopus.record import Record, Value

__all__ = ["Delivery", "Installed", "QueryIndex", "TriggerRegistry"]

log = logging.getLogger("octopus.events")

#: A handler and the event to give it.
Delivery = tuple[Handler, Event]


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
        if not query.constraints and (query.name is None or query.exact_name is not None):
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


class Installed:
    """One installed trigger or subscription."""

    __slots__ = ("handler", "id", "mode", "obj", "owner", "persist", "query")

    def __init__(self, qid: int, obj: Trigger | Subscription, query: CompiledQuery,
                 mode: Mode, persist: bool, owner: int) -> None:
        self.id = qid
        self.obj = obj
        self.query = query
        self.mode = mode
        self.persist = persist
        self.owner = owner
        self.handler = obj.handler

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
        """The deliveries of a change (ON_SET or ON_DEL) or a message (ON_PUBLISH);
        one-shot triggers that fire are uninstalled, and their event carries REMOVED."""
        if mode is Mode.ON_PUBLISH:
            index = self._subscriptions
            if not len(index):
                return []
            candidates = index.candidates(record.name, record.attributes)
        else:
            index = self._triggers
            if not len(index):
                return []
            watching = self._on_set if mode is Mode.ON_SET else self._on_del
            candidates = index.candidates(record.name, record.attributes) & watching
        if not candidates:
            return []
        matched = candidates & index.certain
        unsure = candidates - matched
        costly: list[int] = []
        if unsure:
            hits, costly = self._store.trigger_match(
                list(unsure), record.name, encode_attributes(record.attributes))
            matched |= BitMap64(hits)
        deliveries: list[Delivery] = []
        for qid in matched:
            inst = self._installed[qid]
            event_mode = mode
            if not inst.persist:
                self.uninstall(qid)
                event_mode = mode | Mode.REMOVED
            deliveries.append((inst.handler, Event(event_mode, record, qid, revision)))
        for qid in costly:
            # Removed rather than left to tax every write or to miss changes unseen:
            # its owner learns from the REMOVED event (point 6 of the theory).
            inst = self.uninstall(qid)
            log.warning("%s %d (%s) removed: matching it against %s took more than its "
                        "CPU budget",
                        "subscription" if inst.is_subscription else "trigger", qid,
                        inst.query.query, record.name)
            deliveries.append((inst.handler, Event(Mode.REMOVED, None, qid, revision)))
        return deliveries

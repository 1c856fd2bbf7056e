"""The shared state of one engine, and the critical sections that change it.

:class:`Core` is what every :class:`~octopus.engine.Session` of an engine shares: the
private Prolog module with the records, the installed triggers and subscriptions and
their bitmap indexes, the revision counter, the owners of ephemeral records, the event
dispatcher and the knowledge base. Its ``*_locked`` methods are the pieces of a call's
critical section; they must be called with ``core.lock`` held (see the theory of
operation in :mod:`octopus.engine`).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pyroaring import BitMap64

from octopus._prolog import runtime
from octopus.errors import QueryError
from octopus.events import Dispatcher, Event, Mode, QueryIndex, Subscription, Trigger
from octopus.kb import KnowledgeBase
from octopus.query.compile import CompiledQuery, compile_record
from octopus.record import Atom, Record, Value, check_value, is_name, short_repr

if TYPE_CHECKING:
    from octopus.engine import Session

__all__ = ["BulkRow", "Core", "attrs_from_prolog", "bulk_row", "janus_pairs"]

_engine_numbers = itertools.count(1)
_KNOWN_KEYS: set[str] = set()  # attribute keys already validated (bounded)

# One record of a bulk load: name, attributes in janus encoding, attributes.
BulkRow = tuple[str, list[tuple[str, Any]], Mapping[str, Value]]


def bulk_row(item: Record | str | tuple[str, Mapping[str, Value]], max_length: int) -> BulkRow:
    """Validate one item of ``set_many`` (a Record, record text or ``(name, attrs)``)."""
    if isinstance(item, Record):
        return item.name, janus_pairs(item._attrs), item._attrs
    if isinstance(item, str):
        cr = compile_record(item, max_length=max_length)
        if cr.conditions:
            raise QueryError("set_many does not take conditions")
        return cr.name, cr.pairs, cr.attributes
    try:
        name, attrs = item
        if not is_name(name):
            raise ValueError(f"invalid record name {name!r}")
        pairs = []
        for key, value in attrs.items():
            if key not in _KNOWN_KEYS:
                if not is_name(key):
                    raise ValueError(f"invalid attribute key {key!r}")
                if len(_KNOWN_KEYS) < 10_000:
                    _KNOWN_KEYS.add(key)
            kind = type(value)
            if kind is str:
                if not value.isascii():
                    value.encode("utf-8")  # lone surrogates cannot cross to Prolog
            elif kind is Atom:
                if not is_name(value):
                    raise ValueError(f"invalid identifier {value!r}")
                value = ("a", str.__str__(value))
            elif kind is not bool:
                check_value(value)  # ints too: they have a range (octopus.record)
            pairs.append((key, value))
    except (TypeError, ValueError, AttributeError) as e:
        raise QueryError(f"not a record: {short_repr(item, 200)} ({e})") from None
    return name, pairs, attrs


def attrs_from_prolog(d: dict[str, Any]) -> dict[str, Value]:
    """Prolog's stored form (identifiers as ("a", text)) to Record attributes, sorted."""
    attrs = dict(sorted(d.items()))
    for k, v in attrs.items():
        if type(v) is tuple:
            attrs[k] = Atom(v[1])
    return attrs


def janus_pairs(attrs: Mapping[str, Value]) -> list[tuple[str, Any]]:
    return [(k, ("a", str.__str__(v)) if isinstance(v, Atom) else v) for k, v in attrs.items()]


class Installed:
    """An installed trigger or subscription."""

    __slots__ = ("handler", "mode", "obj", "owner", "persist", "query")

    def __init__(self, obj: Trigger | Subscription, query: CompiledQuery, mode: Mode,
                 persist: bool, owner: Session) -> None:
        self.obj = obj
        self.query = query
        self.mode = mode
        self.persist = persist
        self.owner = owner
        self.handler = obj.handler


class Core:
    """The shared state of one engine. Methods ending in ``_locked`` need the lock."""

    def __init__(self, max_query_length: int) -> None:
        self.rt = runtime()
        self.number = next(_engine_numbers)
        self.module = self.rt.new_module("octopus_db")
        self.rt.call("octopus_store", "store_create", self.module)
        self.max_query_length = max_query_length
        self.lock = threading.Lock()
        self.revision = 0
        self.closed = False
        self.owners: dict[str, Session] = {}          # ephemeral record -> its session
        self.installed: dict[int, Installed] = {}
        self.trigger_index = QueryIndex()
        self.subscription_index = QueryIndex()
        self.on_set = BitMap64()
        self.on_del = BitMap64()
        self.ids = itertools.count(1)
        self._dispatcher: Dispatcher | None = None
        self._kb: KnowledgeBase | None = None
        self._kb_lock = threading.Lock()

    def knowledge_base(self) -> KnowledgeBase:
        """The engine's knowledge base, created on first use."""
        with self._kb_lock:
            if self._kb is None:
                self._kb = KnowledgeBase()
            return self._kb

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(f"octopus-events-{self.number}")
        return self._dispatcher

    def call(self, predicate: str, *args: Any) -> Any:
        return self.rt.call("octopus_store", predicate, self.module, *args)

    # --- changes and their events (lock held) ----------------------------------------

    def changed_locked(self, mode: Mode, record: Record, revision: int) -> None:
        """Queue an event for every installed trigger the change matches."""
        if not self.installed:
            return
        watching = self.on_set if mode is Mode.ON_SET else self.on_del
        candidates = self.trigger_index.candidates(record.name, record.attributes) & watching
        if candidates:
            self.fire_locked(candidates, mode, record, revision)

    def fire_locked(self, candidates: BitMap64, mode: Mode, record: Record,
                    revision: int) -> int:
        index = self.subscription_index if mode is Mode.ON_PUBLISH else self.trigger_index
        matched = candidates & index.certain
        unsure = candidates - matched
        if unsure:
            matched |= BitMap64(self.rt.call(
                "octopus_triggers", "trigger_match", self.module, list(unsure), record.name,
                janus_pairs(record.attributes)))
        deliveries = []
        for qid in matched:
            inst = self.installed[qid]
            event_mode = mode
            if not inst.persist:
                self.uninstall_locked(qid)
                event_mode = mode | Mode.REMOVED
            deliveries.append((inst.handler, Event(event_mode, record, qid, revision)))
        if deliveries:
            self.dispatcher.put_many(deliveries)
        return len(deliveries)

    def install_locked(self, obj: Trigger | Subscription, query: CompiledQuery, mode: Mode,
                       persist: bool, owner: Session) -> int:
        qid = next(self.ids)
        self.rt.call("octopus_triggers", "trigger_add", self.module, qid, query.name,
                     query.constraints)
        self.installed[qid] = Installed(obj, query, mode, persist, owner)
        if mode & Mode.ON_PUBLISH:
            self.subscription_index.add(qid, query)
        else:
            self.trigger_index.add(qid, query)
            if mode & Mode.ON_SET:
                self.on_set.add(qid)
            if mode & Mode.ON_DEL:
                self.on_del.add(qid)
        owner._owned_queries.add(qid)
        return qid

    def uninstall_locked(self, qid: int) -> Installed:
        inst = self.installed.pop(qid)
        if inst.mode & Mode.ON_PUBLISH:
            self.subscription_index.remove(qid)
        else:
            self.trigger_index.remove(qid)
            self.on_set.discard(qid)
            self.on_del.discard(qid)
        self.rt.call("octopus_triggers", "trigger_remove", self.module, qid)
        inst.owner._owned_queries.discard(qid)
        return inst

    def remove_locked(self, qid: int) -> None:
        """Uninstall and queue the final REMOVED event."""
        inst = self.uninstall_locked(qid)
        self.dispatcher.put(inst.handler, Event(Mode.REMOVED, None, qid, self.revision))

    def own_locked(self, name: str, owner: Session | None) -> None:
        """Record ``name`` as ``owner``'s ephemeral record (None: nobody's). A set
        replaces the whole record, its ownership included."""
        previous = self.owners.pop(name, None)
        if previous is not None:
            previous._ephemeral.discard(name)
        if owner is not None:
            self.owners[name] = owner
            owner._ephemeral.add(name)

    def load_locked(self, chunk: list[BulkRow]) -> int:
        """Store a batch of records in one transaction and fire their triggers."""
        if self.owners:
            for name, _, _ in chunk:
                self.own_locked(name, None)
        base = self.revision
        count = int(self.call("store_load", [(name, pairs) for name, pairs, _ in chunk], base))
        self.revision = base + count
        if self.installed:
            for i, (name, _, attrs) in enumerate(chunk, start=1):
                self.changed_locked(Mode.ON_SET, Record(name, attrs, base + i), base + i)
        return count

    def delete_locked(self, name: str, constraints: list[Any]) -> tuple[Record, int] | None:
        reply = self.call("store_delete", name, constraints)
        if reply is None:
            return None
        old_rev, attrs = reply
        self.revision += 1
        record = Record._trusted(name, attrs_from_prolog(attrs), old_rev)
        owner = self.owners.pop(name, None)
        if owner is not None:
            owner._ephemeral.discard(name)
        self.changed_locked(Mode.ON_DEL, record, self.revision)
        return record, self.revision

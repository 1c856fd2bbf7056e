"""The typed Prolog adapter: every predicate Octopus calls, and every conversion between
Python values and Prolog terms, in both directions.

No other module knows the name of a Prolog predicate or the shape of its reply: the
core asks :class:`PrologStore` for ``first(query) -> Record | None``, the knowledge
base asks :class:`PrologKnowledgeBase` for ``query(...) -> list[dict]`` and the rules
(:mod:`octopus.rules`) ask :class:`PrologRules` to compile and install derived watches
and invariants. The calls
themselves run through :mod:`octopus._prolog` (the only module importing janus).

Values on the way in (what :func:`encode_value` makes and janus converts):

    | Python           | janus argument      | Prolog, stored (prolog/match.pl) |
    |------------------|---------------------|----------------------------------|
    | int, float       | itself              | integer, float                   |
    | str              | str (an atom)       | string                           |
    | Atom (identifier)| [text]              | [String]                         |
    | bool             | itself              | @(true), @(false)                |

A query travels as a name pattern (a name, ``None`` for ``_``, ``("re", pattern)``) and a
list of ``(key, op, value)`` constraints; ``op`` is ``eq ne lt le gt ge any re``.

Replies on the way out are built only from lists, dicts, strings, numbers and
``@(none)``/``@(true)``/``@(false)``. Never pairs: janus-swi 1.5.3 converts a Prolog
``-(A, B)`` to a Python tuple with one reference too many on each element, so every
element would leak (``Py_INCREF`` before ``PyTuple_SetItem`` in ``janus.c``; a read of a
20-attribute record leaked 5.7 KB). Identifiers are therefore one-element lists, and the
knowledge base exports pairs as ``{"$pair": [k, v]}`` (rebuilt into tuples here).
tests/store/test_leaks.py guards this with an allocation count per call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from octopus._prolog import PrologRuntime, runtime
from octopus.errors import InvariantViolated, KnowledgeBaseError, OctopusError, RuleError
from octopus.ordered import KeyIndex, Span, kind_of, name_order
from octopus.record import Atom, Record, Value

__all__ = [
    "EncodedConstraint",
    "EncodedName",
    "PrologKnowledgeBase",
    "PrologRules",
    "PrologStore",
    "RuleRow",
    "decode_attributes",
    "encode_attributes",
    "encode_value",
    "row_values",
]

#: A name pattern as Prolog takes it: a name, None for ``_``, or ("re", pattern).
EncodedName = str | tuple[str, str] | None
#: A constraint as Prolog takes it: (key, op, encoded value or pattern or None).
EncodedConstraint = tuple[str, str, Any]


def encode_value(value: Value) -> Any:
    """A record value as janus passes it to the store (see the module's table)."""
    if type(value) is Atom:
        return [str.__str__(value)]
    return value


def encode_attributes(attrs: Mapping[str, Value]) -> list[tuple[str, Any]]:
    """Attributes as the (key, value) pairs the store takes."""
    return [(k, [str.__str__(v)] if type(v) is Atom else v) for k, v in attrs.items()]


def decode_attributes(d: Mapping[str, Any]) -> dict[str, Value]:
    """A stored dict back to Record attributes, sorted by key (SWI-Prolog orders a
    dict's keys by atom handle, not by text)."""
    attrs = dict(sorted(d.items()))
    for k, v in attrs.items():
        if type(v) is list:
            attrs[k] = Atom(v[0])
    return attrs


#: The Prolog stacks a thread keeps after a bulk batch (prolog/store.pl,
#: store_trim_above/3): a batch of 10,000 records needs ~10 MiB.
_BULK_STACKS = 32 << 20


class _Pulled:
    """A value Prolog fetches itself (``py_call(Obj:value, V, [py_string_as(string)])``)
    rather than receiving it as an argument: janus then makes each Python str a Prolog
    string, where an argument's strs arrive as atoms (prolog/store.pl, store_bulk/7)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _record(name: str, revision: int, d: Mapping[str, Any]) -> Record:
    return Record._trusted(name, decode_attributes(d), revision)


#: One row a write left for the derived watches (prolog/rules.pl, rules_change/8), as
#: janus gives it: ``[revision or None for a delete, watch id, kind, values]``; kind is
#: ``"set"`` or ``"del"`` (values: the row, still encoded: :func:`row_values` decodes
#: them, on the dispatcher thread), ``"removed"`` (the watch exceeded its limit;
#: values: the reason) or ``"violated"`` (a session's end broke an invariant; the
#: row's text).
RuleRow = list[Any]


def row_values(values: list[Any]) -> tuple[Any, ...]:
    """The values of a ``set`` or ``del`` :data:`RuleRow` as a row holds them."""
    return tuple([_row_value(v) for v in values])


def _row_value(value: Any) -> Any:
    """A value of a derived row as prolog/rules_delta.pl exports it (export_value/2)."""
    kind = type(value)
    if kind is list:
        return Atom(value[0])
    if kind is dict:
        if "list" in value:
            return [_row_value(v) for v in value["list"]]
        return str(value["text"])
    return value


def _refusal(reply: Mapping[str, Any]) -> OctopusError:
    """The exception for a write an invariant refused (store.pl, rules_refusal/2)."""
    if "violation" in reply:
        invariant, row = reply["violation"]
        return InvariantViolated(f"invariant {invariant} would be violated by {row}; "
                                 "nothing changed", invariant=str(invariant), row=str(row))
    invariant, reason = reply["unchecked"]
    return RuleError(f"invariant {invariant} could not be checked ({reason}); the write "
                     "is refused (nothing changed)")


class PrologStore:
    """One engine's records, sequence counters and trigger queries (a private module of
    prolog/store.pl and prolog/triggers.pl), and the ordered index of each attribute
    key that queries use (octopus/ordered.py).

    How a key becomes indexed: the first query that constrains it builds its index
    from the records (one pass); from then on every write keeps it exact, from what
    the store reports it replaced. At most :attr:`MAX_INDEXED_KEYS` keys are indexed;
    a query on another key drops the least recently queried index (its key is built
    again if a query needs it). A key no record has keeps its (empty) index, so a
    key that comes and goes never costs a pass over the store per query.

    How a query runs: a name goes straight to its record. Otherwise every
    constrained key's index gives the names that can match (a superset for ``!=``,
    ``_`` and regexes); the smallest set drives. When it is the whole answer (no name
    pattern; comparisons only; the other keys equalities, checked in their indexes)
    Prolog is not asked at all; otherwise Prolog matches those candidates in full, or
    visits every record when the candidates are most of them.

    Not thread-safe by itself: the core serialises every call under its lock (reads
    too: they may build an index).
    """

    _STORE = "octopus_store"
    _TRIGGERS = "octopus_triggers"
    #: Indexed keys kept at most (each costs ~50-120 bytes per record having the key).
    MAX_INDEXED_KEYS = 64

    def __init__(self, rt: PrologRuntime | None = None) -> None:
        self._rt = rt or runtime()
        self.module = self._rt.new_module("octopus_db")
        self._rt.call(self._STORE, "store_create", self.module)
        self._indexes: OrderedDict[str, KeyIndex] = OrderedDict()
        self._keys: list[str] = []          # the indexed keys, in a fixed order
        self._token = object()              # replaced whenever an index goes (see _Shape)
        self._count = 0                     # records: kept from what writes report
        #: Every record's name in clause order as of store generation ``_names_at``
        #: (store_key_column/4): the next index built before a write reuses them,
        #: strings and all. Dropped by every write, so it never keeps a deleted name.
        self._names: list[str] = []
        self._names_at = -1
        self._collected_at = _COLLECT_FROM  # the count at which to run store_collect
        self._buckets = 0                   # the size of rec/3's index then
        #: Rows for the derived watches left by the last write (see :data:`RuleRow`):
        #: emptied at the start of every write, read by the rules' observer of the
        #: change stream in the same critical section.
        self.rows: list[RuleRow] = []

    def _write(self, predicate: str, *args: Any) -> Any:
        """A write: its value, with the rows it leaves for the derived watches kept in
        :attr:`rows`; an invariant's refusal raised."""
        self.rows = []
        if self._names_at >= 0:
            self._forget_names()
        reply = self._call(predicate, *args)
        if type(reply) is dict:
            return self._rule_reply(reply)
        return reply

    def _rule_reply(self, reply: Mapping[str, Any]) -> Any:
        """The value of a write's reply with rules (its rows kept in :attr:`rows`), or
        the invariant's refusal raised."""
        rows = reply.get("rows")
        if rows is None:
            raise _refusal(reply)
        self.rows = rows                # decoded by the dispatcher (row_values)
        return reply["value"]

    @property
    def rt(self) -> PrologRuntime:
        """The runtime the calls go through (bench/ times raw calls with it)."""
        return self._rt

    def _call(self, predicate: str, *args: Any) -> Any:
        return self._rt.call(self._STORE, predicate, self.module, *args)

    # --- the ordered indexes -------------------------------------------------------------

    def indexed_keys(self) -> list[str]:
        """The keys that have an index, least recently queried first."""
        return list(self._indexes)

    def _index(self, key: str) -> KeyIndex:
        index = self._indexes.get(key)
        if index is not None:
            self._indexes.move_to_end(key)
            return index
        generation, names, values = self._call("store_key_column", key, self._names_at)
        kept = names is None
        if kept:
            names = self._names
        else:
            self._names, self._names_at = names, generation
        index = KeyIndex.from_column(names, values)
        del names, values
        self._call("store_release")
        if not kept:
            # New name strings (~70 bytes each): hold the ones an index has already.
            donor = max(self._indexes.values(), key=len, default=None)
            if donor is not None and len(donor) and len(index):
                index.share_names(donor)
        if len(self._indexes) >= self.MAX_INDEXED_KEYS:
            self._indexes.popitem(last=False)
            self._token = object()
        self._indexes[key] = index
        self._keys = list(self._indexes)
        return index

    def _forget_names(self) -> None:
        self._names = []
        self._names_at = -1

    def adopt_indexes(self, indexes: Mapping[str, KeyIndex], names: list[str]) -> None:
        """Take ``indexes`` (built elsewhere from exactly the stored records: a restored
        snapshot's) as the indexes of their keys, the first ones least recently used;
        ``names``, every record's name in clause order, the ones they hold."""
        if indexes:
            self._names, self._names_at = names, int(self._call("store_generation"))
        for key, index in indexes.items():
            if key in self._indexes:
                self._indexes.move_to_end(key)
            elif len(self._indexes) >= self.MAX_INDEXED_KEYS:
                self._indexes.popitem(last=False)
                self._token = object()
            self._indexes[key] = index
        self._keys = list(self._indexes)

    def _drop_indexes(self) -> None:
        """Forget every index (they are built again on demand): after a write whose
        effect on them is unknown."""
        self._forget_names()
        self._indexes.clear()
        self._keys = []
        self._token = object()

    def _follow(self, keys: list[str], name: str, olds: list[Any] | None,
                pairs: Iterable[tuple[str, Any]], attrs: Mapping[str, Any] | None = None
                ) -> None:
        """Bring the indexes of ``keys`` up to date after record ``name`` was stored with
        ``pairs`` (``attrs``, if given, the same as a mapping), replacing one whose values
        of ``keys`` were ``olds`` (None: none). A value that compares equal to the one it
        replaces leaves its entry alone."""
        indexes = self._indexes
        try:
            if olds is None:
                for key, value in pairs:
                    index = indexes.get(key)
                    if index is not None:
                        index.add(value, name)
                return
            new = dict(pairs) if attrs is None else attrs
            for key, old in zip(keys, olds, strict=True):
                value = new.get(key)
                if old is None:
                    if value is not None:
                        indexes[key].add(value, name)
                elif value is None:
                    indexes[key].remove(old, name)
                elif old.__class__ is value.__class__ and old == value:
                    pass            # unchanged (the common case, without kind_of)
                elif kind_of(old) != kind_of(value):
                    index = indexes[key]
                    index.remove(old, name)
                    index.add(value, name)
        except BaseException:
            # The store changed; an index that missed it would give wrong answers.
            self._drop_indexes()
            raise

    def _plan(self, name: EncodedName, constraints: Sequence[EncodedConstraint],
              memo: Any = None) -> _Plan:
        """Where a query's records are: see the class docstring. Every query that is
        not by name runs this, so it is plain loops. ``memo`` (a compiled query, cached
        per text) keeps the query's shape — its keys and their constraints — and which
        key drove it last time; the spans themselves are found anew every time."""
        if not constraints or name.__class__ is str:
            return _SCAN
        shape = memo.plan if memo is not None else None
        if shape.__class__ is not _Shape or shape.store is not self._token:
            shape = _Shape(self._token, name, constraints)
            if memo is not None:
                memo.plan = shape
        if shape.eqs is not None:
            return self._plan_eqs(shape, shape.eqs)
        indexes = self._indexes
        keyed: dict[str, KeyIndex] = {}
        for key in shape.keys:
            index = indexes.get(key)
            if index is None:
                index = self._index(key)
            else:
                indexes.move_to_end(key)
            keyed[key] = index
        total = self._count
        by_key = shape.by_key
        first = shape.driver
        if first is None or first not in keyed:
            narrowest = -1
            for key, items in by_key.items():
                estimate = keyed[key].estimate(*items[0])
                if narrowest < 0 or estimate < narrowest:
                    first, narrowest = key, estimate
        assert first is not None
        best_key, best = first, _spans(keyed[first], by_key[first])
        best_count = _count(best, total)
        # A driver this small is cheaper to use than to compare with the others.
        if best_count > _SMALL and len(by_key) > 1:
            for key, items in by_key.items():
                if key != first:
                    spans = _spans(keyed[key], items)
                    count = _count(spans, best_count)
                    if count < best_count:
                        best_key, best, best_count = key, spans, count
        shape.driver = best_key
        if best_count == 0:         # a regex is still checked (and refused) by Prolog
            return _NOTHING if shape.exact else _NONE
        if shape.exact and shape.eq_only_besides(best_key):
            checks = []
            for key, items in by_key.items():
                if key != best_key:
                    index = keyed[key]
                    for _, operand in items:
                        if not index.everyone_has(operand, total):
                            checks.append((index, operand))
            return _Plan(best, checks)
        if 2 * best_count > total:
            return _SCAN              # most records: one pass in Prolog is cheaper
        return _Plan(best, None)

    def _plan_eqs(self, shape: _Shape, eqs: list[tuple[str, Any]]) -> _Plan:
        """:meth:`_plan` for the commonest query: no name, one equality a key. The same
        plan, in fewer steps: each key's span is located once, the driver's counted
        first, and the other keys become checks only when their value is not everyone's.
        """
        indexes = self._indexes
        total = self._count
        found: list[tuple[KeyIndex, Any]] = []
        for key, operand in eqs:
            index = indexes.get(key)
            if index is None:
                index = self._index(key)
            else:
                indexes.move_to_end(key)
            found.append((index, operand))
        at = shape.driver_at
        if at < 0:  # no hint yet: the key whose value spans the fewest chunks first
            narrowest = -1
            for i, (index, operand) in enumerate(found):
                estimate = index.estimate("eq", operand)
                if narrowest < 0 or estimate < narrowest:
                    at, narrowest = i, estimate
        index, operand = found[at]
        best = index.eq_span(operand)
        best_count = best.count(total)
        # A driver this small is cheaper to use than to compare with the others.
        if best_count > _SMALL and len(found) > 1:
            for i, (index, operand) in enumerate(found):
                if i != at:
                    span = index.eq_span(operand)
                    count = span.count(best_count)
                    if count < best_count:
                        at, best, best_count = i, span, count
        shape.driver_at = at
        if best_count == 0:
            return _NOTHING
        checks = []
        for i, (index, operand) in enumerate(found):
            if i != at and not index.everyone_has(operand, total):
                checks.append((index, operand))
        return _Plan([best], checks)

    # --- reads ---------------------------------------------------------------------------

    def get(self, name: str) -> Record | None:
        """The record called ``name``."""
        reply = self._call("store_get", name)
        return None if reply is None else _record(name, reply[0], reply[1])

    def get_many(self, names: list[str]) -> dict[str, Record]:
        """The records called ``names`` (one store call), by name; a name without a
        record is left out."""
        rows = self._call("store_get_many", names)
        return {n: _record(n, rev, d) for n, rev, d in rows}

    @staticmethod
    def _candidates(plan: _Plan) -> list[str] | None:
        return None if plan.spans is None else plan.names()

    def first(self, name: EncodedName, constraints: Sequence[EncodedConstraint],
              pick: Any, memo: Any = None) -> Record | None:
        """The matching record whose name ``pick`` chooses from several (natural order).
        ``memo``: see :meth:`_plan`."""
        plan = self._plan(name, constraints, memo)
        if plan.exact:
            names = plan.answer()
            return self.get(pick(names) if len(names) > 1 else names[0]) if names else None
        reply = self._call("store_first", self._candidates(plan), name, constraints)
        if reply is None:
            return None
        if type(reply) is dict:         # several matches: {"names": [...]}
            chosen = pick(reply["names"])
            return self.get(chosen)
        return _record(reply[0], reply[1], reply[2])

    def names(self, name: EncodedName, constraints: Sequence[EncodedConstraint],
              memo: Any = None) -> list[str]:
        """The matching names, unordered."""
        plan = self._plan(name, constraints, memo)
        if plan.exact:
            return plan.answer()
        names: list[str] = self._call("store_names", self._candidates(plan), name,
                                      constraints)
        return names

    def all(self, name: EncodedName, constraints: Sequence[EncodedConstraint],
            memo: Any = None) -> list[Record]:
        """The matching records, unordered."""
        plan = self._plan(name, constraints, memo)
        if plan.exact:
            rows = self._call("store_get_many", plan.answer())
        else:
            rows = self._call("store_all", self._candidates(plan), name, constraints)
        return [_record(n, rev, d) for n, rev, d in rows]

    def exists(self, name: EncodedName, constraints: Sequence[EncodedConstraint],
               memo: Any = None) -> bool:
        plan = self._plan(name, constraints, memo)
        if plan.exact:
            return plan.any()
        return bool(self._call("store_exists", self._candidates(plan), name, constraints))

    def count(self) -> int:
        """The number of records."""
        return self._count

    def recount(self) -> int:
        """The number of records, counted in Prolog (linear in the store's size)."""
        return int(self._call("store_count"))

    # --- writes ------------------------------------------------------------------------

    def set(self, name: str, pairs: Sequence[tuple[str, Any]],
            conditions: Sequence[EncodedConstraint], sequential: bool,
            revision: int, attrs: Mapping[str, Any] | None = None) -> str | None:
        """Store a record at ``revision`` if the stored one meets ``conditions``; the
        final name (a sequential set appends its number), or None if the conditions
        did not hold (nothing changed). ``attrs``: the attributes ``pairs`` encode, as a
        mapping, if the caller has it (spares building one)."""
        # _write() inlined: this is the path of every set, and each layer of calls and
        # argument tuples costs (bench/compare.py --stages).
        keys = self._keys
        self.rows = []
        if self._names_at >= 0:
            self._forget_names()
        reply = self._rt.call(self._STORE, "store_set", self.module, name, pairs, conditions,
                              sequential, revision, keys)
        if reply.__class__ is not list:
            if reply is False:
                return None
            reply = self._rule_reply(reply)
        final, olds = reply
        if olds is None:
            self._count += 1
            if self._count >= self._collected_at:
                self._collect()
            if keys:
                self._follow(keys, final, None, pairs, attrs)
        elif olds:                  # [] when no indexed value changed
            self._follow(keys, final, olds, pairs, attrs)
        return str(final)

    def delete(self, name: str, constraints: Sequence[EncodedConstraint],
               forced: bool = False) -> Record | None:
        """Delete the record if it meets ``constraints``; the deleted record, or None.
        ``forced`` (a session's end; no constraints): invariants do not refuse it."""
        if forced:
            reply = self._write("store_expire", name)
        else:
            reply = self._write("store_delete", name, constraints)
        if reply is None:
            return None
        self._count -= 1
        old = reply[1]
        if self._keys:
            self._follow(self._keys, name, [old.get(k) for k in self._keys], ())
        return _record(name, reply[0], old)

    def load(self, rows: Iterable[tuple[str, Sequence[tuple[str, Any]]]],
             base_revision: int) -> int:
        """Store rows (name, pairs) in one transaction; the i-th gets revision base+i."""
        rows = list(rows)
        keys = self._keys
        count, new, olds = self._write("store_load", rows, base_revision, keys)
        self._count += new
        self._call("store_trim")
        if self._count >= self._collected_at:
            self._collect()
        if keys:
            for (name, pairs), old in zip(rows, olds, strict=True):
                self._follow(keys, name, old, pairs)
        return int(count)

    def bulk(self, shapes: list[list[str]], flat: list[Any], distinct: bool,
             base_revision: int) -> int:
        """:meth:`load` with the batch encoded flat (the bulk path: prolog/store.pl,
        store_bulk/7): ``shapes`` the sorted key lists, ``flat`` per record its shape's
        1-based number, its name and its values in key order, in stored form (an
        identifier as ``[text]``); ``distinct`` if no name comes twice."""
        keys = self._keys
        count, new, olds = self._write("store_bulk", shapes, _Pulled(flat), distinct,
                                       base_revision, keys)
        self._count += new
        self._call("store_trim_above", _BULK_STACKS)
        if self._count >= self._collected_at:
            self._collect()
        if keys:
            self._follow_flat(keys, shapes, flat, olds)
        return int(count)

    def _follow_flat(self, keys: list[str], shapes: list[list[str]], flat: list[Any],
                     olds: list[Any]) -> None:
        """:meth:`_follow` for each record of a bulk batch, read off its flat form: a new
        record adds its values of the indexed keys (found once per shape), a replaced
        one goes through :meth:`_follow`."""
        indexes = self._indexes
        at: list[list[tuple[KeyIndex, int]]] = [
            [(indexes[k], i) for i, k in enumerate(shape, 2) if k in indexes]
            for shape in shapes]
        i = 0
        try:
            for old in olds:
                shape = flat[i] - 1
                name = flat[i + 1]
                if old is None:
                    for index, offset in at[shape]:
                        index.add(flat[i + offset], name)
                    i += 2 + len(shapes[shape])
                else:
                    start = i + 2
                    i = start + len(shapes[shape])
                    self._follow(keys, name, old, (),
                                 dict(zip(shapes[shape], flat[start:i], strict=True)))
        except BaseException:
            self._drop_indexes()        # as _follow: an index that missed a change
            raise

    def _collect(self, force: bool = False) -> None:
        """Free the record index table Prolog retired as the store grew, if it rebuilt
        one since the last time (always with ``force``), and give the memory back
        (prolog/store.pl, store_collect/3). SWI-Prolog 9.2 rebuilds the index of names
        twice as big when it holds more than 1.5 clauses a bucket: the next time
        is a few records past that point, so a retired table (~55 bytes a record)
        lives only until then; and at the latest when the store has grown by an
        eighth, should a rebuild come at another point."""
        self._buckets = buckets = int(self._call("store_collect",
                                                 -1 if force else self._buckets))
        count = self._count
        at = count + count // 8
        rebuild = buckets * 3 // 2 + _PAST_REBUILD
        if count < rebuild < at:
            at = rebuild
        self._collected_at = max(_COLLECT_FROM, at)

    def warm(self) -> None:
        """Build the clause indexes now rather than on the first query needing them,
        and free the index tables Prolog retired while the store grew."""
        self._call("store_warm")
        self._collect(force=True)

    # --- write-ahead: decide, then apply (octopus.durable) -------------------------------

    def plan_set(self, name: str, conditions: Sequence[EncodedConstraint],
                 sequential: bool) -> tuple[str, int | None] | None:
        """What :meth:`set` would do, changing nothing: None if the conditions do not
        hold, else the final name and (sequential) the base's counter after the set."""
        reply = self._call("store_plan_set", name, conditions, sequential)
        if reply is False:
            return None
        final, counter = reply
        return str(final), (None if counter is None else int(counter))

    def match(self, name: str, constraints: Sequence[EncodedConstraint]) -> Record | None:
        """The record ``name`` if it meets ``constraints`` (what :meth:`delete` would
        delete), changing nothing."""
        reply = self._call("store_match", name, constraints)
        return None if reply is None else _record(name, reply[0], reply[1])

    def put(self, name: str, pairs: Sequence[tuple[str, Any]], counter: tuple[str, int] | None,
            revision: int) -> None:
        """Store a record unconditionally; ``counter`` (base, next) raises the base's
        sequence counter to at least ``next``. With rules, as :meth:`set` (rows kept in
        :attr:`rows`, an invariant's refusal raised)."""
        keys = self._keys
        olds = self._write("store_put", name, pairs, None if counter is None else list(counter),
                          revision, keys)
        if olds is None:
            self._count += 1
            if self._count >= self._collected_at:
                self._collect()
            if keys:
                self._follow(keys, name, None, pairs)
        elif olds:                  # [] when no indexed value changed
            self._follow(keys, name, olds, pairs)

    def _trial(self, predicate: str, *args: Any) -> None:
        reply = self._call(predicate, *args)
        if type(reply) is dict:
            raise _refusal(reply)

    def trial_put(self, name: str, pairs: Sequence[tuple[str, Any]],
                  counter: tuple[str, int] | None, revision: int) -> None:
        """Raise what an invariant would say to :meth:`put`, changing nothing."""
        self._trial("store_trial_put", name, pairs,
                    None if counter is None else list(counter), revision)

    def trial_delete(self, name: str) -> None:
        """Raise what an invariant would say to deleting ``name``, changing nothing."""
        self._trial("store_trial_delete", name)

    def trial_load(self, rows: Sequence[tuple[str, Sequence[tuple[str, Any]]]],
                   base_revision: int) -> None:
        """Raise what an invariant would say to :meth:`load`, changing nothing."""
        self._trial("store_trial_load", rows, base_revision)

    def replay(self, ops: list[list[Any]]) -> int:
        """Apply journal operations (recovery): ``["s", rev, name, pairs, counter]`` or
        ``["d", name]``; each is idempotent. The indexes follow, from what each
        operation replaced (the indexes of a restored snapshot)."""
        keys = self._keys
        self._forget_names()
        entries, change, olds = self._call("store_replay", ops, keys)
        self._count += change
        if keys:
            follow = self._follow
            for op, old in zip(ops, olds, strict=True):
                if op[0] == "s":
                    follow(keys, op[2], old, op[3])
                elif old is not None:
                    follow(keys, op[1], old, ())
        if self._count >= self._collected_at:
            self._collect()
        return int(entries)

    def write_snapshot(self, path: str, keys: Sequence[str] = ()) -> tuple[int, int]:
        """Copy records and counters to ``path`` from a consistent view while other
        threads go on writing, and after them, from the same view, the columns of
        ``keys`` (every record's value of each) for :meth:`read_indexes`: the number of
        records and the byte offset of the columns (0 without keys)."""
        count, index_at = self._call("store_snapshot", path, list(keys))
        return int(count), int(index_at)

    def read_indexes(self, path: str, index_at: int
                     ) -> tuple[dict[str, KeyIndex], list[str]]:
        """The indexes of the keys whose columns :meth:`write_snapshot` wrote into
        ``path`` at ``index_at``, and the names they hold (every record's, in the
        order the snapshot has them). Touches nothing of this store, so it may run in
        another thread while :meth:`restore` loads the records (the sorting is
        Python's, the loading Prolog's: two cores)."""
        keys, names, columns = self._rt.call(self._STORE, "store_read_columns", path,
                                             index_at)
        by_name = name_order(names) if len(keys) > 1 else None
        indexes = {}
        for key, values in zip(keys, columns, strict=True):
            indexes[str(key)] = KeyIndex.from_column(names, values, by_name)
        return indexes, names

    def restore(self, path: str) -> int:
        """Load a file written by :meth:`write_snapshot` into this empty store (the
        indexes it had are given to :meth:`adopt_indexes`, not kept here)."""
        self._drop_indexes()
        count = int(self._call("store_restore", path))
        self._count = count
        self._call("store_trim")
        return count

    def destroy(self) -> None:
        """Drop every record, index, counter and trigger query."""
        self._call("store_destroy")
        self._drop_indexes()
        self._count = 0
        self._collected_at = _COLLECT_FROM
        self._buckets = 0

    # --- trigger queries -----------------------------------------------------------------

    def trigger_add(self, qid: int, name: EncodedName,
                    constraints: Sequence[EncodedConstraint]) -> None:
        """Prepare and remember a trigger query (QueryError if it is invalid)."""
        self._rt.call(self._TRIGGERS, "trigger_add", self.module, qid, name, constraints)

    def trigger_remove(self, qid: int) -> bool:
        return bool(self._rt.call(self._TRIGGERS, "trigger_remove", self.module, qid))

    def trigger_match(self, qids: list[int], name: str,
                      pairs: Sequence[tuple[str, Any]]) -> tuple[list[int], list[int]]:
        """(matched, costly): those of ``qids`` whose query matches the record ``name``
        with ``pairs``, and those whose match took more than its CPU budget
        (prolog/triggers.pl), which count as no match."""
        matched, costly = self._rt.call(self._TRIGGERS, "trigger_match", self.module,
                                        qids, name, pairs)
        return matched, costly


_COMPARISONS = frozenset({"eq", "lt", "le", "gt", "ge"})
#: Records from which growth frees Prolog's retired record index tables (store_collect).
_COLLECT_FROM = 4096
#: How many records past an expected rebuild of the index of names to look for it (the
#: rebuild comes with the first lookup after the clause that crosses the bound).
_PAST_REBUILD = 16
#: Candidates few enough to use without counting the other constraints' spans.
_SMALL = 16


class _Shape:
    """What a query's plan needs of its text: the constrained keys, each with its
    (op, operand) list, whether the index can answer it alone, and a hint: the key that
    drove it last time (its spans are counted first). Valid for one store while its
    set of indexes stays the same (``store`` is that store's token)."""

    __slots__ = ("by_key", "driver", "driver_at", "eqs", "exact", "keys", "store")

    def __init__(self, store: object, name: EncodedName,
                 constraints: Sequence[EncodedConstraint]) -> None:
        self.store = store
        self.by_key: dict[str, list[tuple[str, Any]]] = {}
        exact = name is None
        for key, op, operand in constraints:
            self.by_key.setdefault(key, []).append((op, operand))
            if op not in _COMPARISONS:
                exact = False
        self.exact = exact
        self.keys = list(self.by_key)
        self.driver: str | None = None
        #: (key, operand) of each key, when the query is only equalities, one a key, and
        #: no name (:meth:`PrologStore._plan_eqs`); else None.
        self.eqs: list[tuple[str, Any]] | None = None
        self.driver_at = -1     # the hint of _plan_eqs: the position in eqs of the driver
        if exact and all(len(items) == 1 and items[0][0] == "eq"
                         for items in self.by_key.values()):
            self.eqs = [(key, items[0][1]) for key, items in self.by_key.items()]

    def eq_only_besides(self, key: str) -> bool:
        """Whether every constraint on another key than ``key`` is an equality."""
        for k, items in self.by_key.items():
            if k != key:
                for op, _ in items:
                    if op != "eq":
                        return False
        return True


def _spans(index: KeyIndex, items: list[tuple[str, Any]]) -> list[Span]:
    """The spans of ``index`` that the (op, operand) constraints allow, intersected."""
    op, operand = items[0]
    spans = [index.eq_span(operand)] if op == "eq" else index.spans(op, operand)
    for op, operand in items[1:]:
        spans = _intersect(spans, index.spans(op, operand))
    return spans


def _count(spans: list[Span], limit: int) -> int:
    total = 0
    for span in spans:
        total += span.count(limit)
    return total


def _intersect(a: list[Span], b: list[Span]) -> list[Span]:
    """The spans of both lists' common pairs (spans of one key's runs)."""
    out = []
    for x in a:
        for y in b:
            z = x.intersect(y)
            if z is not None:
                out.append(z)
    return out


class _Plan:
    """A query's candidates: ``spans`` of one key's index (None: visit every record);
    ``checks``, (index, value) equalities on other keys, make them the exact answer
    (None: the candidates need Prolog's full match)."""

    __slots__ = ("checks", "spans")

    def __init__(self, spans: list[Span] | None,
                 checks: list[tuple[KeyIndex, Any]] | None) -> None:
        self.spans, self.checks = spans, checks

    @property
    def exact(self) -> bool:
        return self.checks is not None

    def names(self) -> list[str]:
        assert self.spans is not None
        if len(self.spans) == 1:
            return self.spans[0].name_list()
        return [n for s in self.spans for n in s.name_list()]

    def _matching(self) -> Iterator[str]:
        assert self.spans is not None and self.checks is not None
        checks = self.checks
        for span in self.spans:
            for n in span.names():
                for index, v in checks:
                    if not index.holds(v, n):
                        break
                else:
                    yield n

    def answer(self) -> list[str]:
        if not self.checks:
            return self.names()
        if len(self.checks) == 1:
            (index, v), = self.checks
            return [n for n in self.names() if index.holds(v, n)]
        return list(self._matching())

    def any(self) -> bool:
        for _ in self._matching():
            return True
        return False


_SCAN = _Plan(None, None)          # visit every record in Prolog
_NOTHING = _Plan([], [])           # nothing can match
_NONE = _Plan([], None)            # nothing can match; Prolog still checks the query


def _plain(value: Any) -> Any:
    """A knowledge-base value as exported by prolog/skb.pl, with pairs and dicts rebuilt."""
    kind = type(value)
    if kind is list:
        return [_plain(v) for v in value]
    if kind is dict:
        if "$pair" in value:
            k, v = value["$pair"]
            return (_plain(k), _plain(v))
        return {k: _plain(v) for k, v in value["$dict"].items()}
    return value


class PrologKnowledgeBase:
    """One engine's knowledge base: a module for its facts and rules and one for the
    bookkeeping of loads and iterators (prolog/skb.pl). Every Prolog error is a
    KnowledgeBaseError.

    ``limits`` arguments are ``[timeout, inferences, stack_bytes, solutions,
    reply_bytes]`` (see :class:`octopus.kb.Limits`)."""

    _SKB = "octopus_skb"

    def __init__(self, rt: PrologRuntime | None = None) -> None:
        self._rt = rt or runtime()
        self.module = self._rt.new_module("octopus_kb")
        self._aux = self._rt.new_module("octopus_kbaux")
        self._call("kb_create", self.module, self._aux)

    def _call(self, predicate: str, *args: Any) -> Any:
        try:
            return self._rt.call(self._SKB, predicate, *args)
        except KnowledgeBaseError:
            raise
        except OctopusError as e:       # Prolog's own error, or janus could not convert
            raise KnowledgeBaseError(str(e)) from None

    def load_begin(self, source: tuple[str, str]) -> int:
        """Open ``("file", path)`` or ``("text", text)``; its size, for progress bars."""
        return int(self._call("kb_load_begin", self.module, self._aux, source))

    def load_chunk(self, max_terms: int) -> tuple[int, bool]:
        """Read and check up to ``max_terms`` more terms: (position, done)."""
        position, done = self._call("kb_load_chunk", self.module, self._aux, max_terms)
        return int(position), bool(done)

    def load_commit(self, key: str | None, limits: list[float | int]) -> int:
        """Add what was read in one transaction (replacing an earlier load of the file
        ``key``), running its directives within ``limits``; the number of clauses."""
        return int(self._call("kb_load_commit", self.module, self._aux, key, limits))

    def load_abort(self) -> None:
        """Abandon a load in progress (idempotent)."""
        self._call("kb_load_abort", self._aux)

    def add_rows(self, predicate: str, rows: list[list[object]]) -> int:
        """Assert ``predicate(*row)`` for each row, all or nothing; how many."""
        return int(self._call("kb_add_rows", self.module, predicate, rows))

    def query(self, goal: str, bindings: list[tuple[str, object]], limits: list[float | int],
              most: int, strict: bool) -> list[dict[str, Any]]:
        """The solutions of ``goal`` with ``bindings`` (at most ``most``; with
        ``strict``, more is an error): dicts of its output variables."""
        solutions = self._call("kb_query", self.module, self._aux, goal, bindings, limits,
                               [most, strict])
        return [{k: _plain(v) for k, v in s.items()} for s in solutions]

    def iter_open(self, goal: str, bindings: list[tuple[str, object]],
                  limits: list[float | int]) -> int:
        """Check ``goal`` and start it in a Prolog engine of its own; the iterator's id."""
        return int(self._call("kb_iter_open", self.module, self._aux, goal, bindings, limits))

    def iter_next(self, iterator: int, most: int, timeout: float,
                  reply_bytes: int) -> tuple[list[dict[str, Any]], bool | str]:
        """Up to ``most`` more solutions within ``timeout`` seconds, and False while
        there may be more, True when the goal has no more, or the message of an error
        that ended the step after those solutions (True and errors close it)."""
        solutions, done = self._call("kb_iter_next", self.module, self._aux, iterator,
                                     [most, timeout, reply_bytes])
        return ([{k: _plain(v) for k, v in s.items()} for s in solutions],
                done if isinstance(done, str) else bool(done))

    def iter_close(self, iterator: int) -> None:
        """End an iterator (idempotent)."""
        self._call("kb_iter_close", self._aux, iterator)

    def destroy(self) -> None:
        """Close every iterator and drop every fact and rule."""
        self._call("kb_destroy", self.module, self._aux)



#: How a derived watch or invariant is given to :meth:`PrologRules.install`:
#: ``("goal", text, bindings)``, ``("relation", name, args)`` (None: any value) or
#: ``("invariant", name, text)``.
RuleSpec = tuple[str, str, Any]


def _rule_arg(value: Any) -> Any:
    """A binding or relation argument as rules_install/8 imports it (import_arg/2)."""
    if type(value) is Atom:
        return [str.__str__(value)]
    return value


class PrologRules:
    """One engine's derived watches and invariants: a module of prolog/rules.pl next to
    its store and knowledge base. Errors are :class:`~octopus.errors.RuleError`.

    Not thread-safe by itself: the core calls it under its lock."""

    _RULES = "octopus_rules"

    def __init__(self, store: PrologStore, kb_module: str) -> None:
        self._rt = store.rt
        self.module = self._rt.new_module("octopus_rules")
        self._store = store.module
        self._kb = kb_module
        self._call("rules_create", self.module, self._store)

    def _call(self, predicate: str, *args: Any) -> Any:
        try:
            return self._rt.call(self._RULES, predicate, *args)
        except RuleError:
            raise
        except OctopusError as e:
            raise RuleError(str(e)) from None

    @staticmethod
    def attach_view(kb_module: str, store: PrologStore) -> None:
        """Define the read-only record view (record/1, attr/3) of ``store`` in the
        knowledge-base module ``kb_module``."""
        store.rt.call(PrologRules._RULES, "rules_view", kb_module, store.module)

    def parse(self, text: str) -> list[tuple[str, int, list[str]]]:
        """The relations ``text`` defines, checked against the rule family as if it
        were loaded: ``(name, arity, argument names)``. Nothing is loaded."""
        return [(str(n), int(a), [str(x) for x in names])
                for n, a, names in self._call("rules_parse", self._kb, text)]

    def declare(self, relations: list[tuple[str, int, list[str]]]) -> None:
        """Make relations returned by :meth:`parse` watchable by name."""
        self._call("rules_declare", self.module, [list(r) for r in relations])

    def relation(self, name: str, arity: int) -> list[str]:
        """The argument names of the declared relation ``name/arity`` (RuleError if
        there is none)."""
        return [str(n) for n in self._call("rules_relation", self.module, name, arity, [])]

    def install(self, qid: int, spec: RuleSpec, limits: list[int],
                initial: bool) -> tuple[list[str], list[list[Any]]]:
        """Compile and install watch or invariant ``qid``: the row's variable names and,
        if ``initial`` (always for an invariant), the current rows in standard order.
        InvariantViolated if an invariant already has a row (nothing installed)."""
        kind, a, b = spec
        if kind == "goal":
            arg: Any = ["goal", a, [[k, _rule_arg(v)] for k, v in b]]
        elif kind == "relation":
            arg = ["relation", a, [_rule_arg(v) for v in b]]
        else:
            arg = ["invariant", a, b]
        reply = self._call("rules_install", self.module, self._kb, self._store, qid, arg,
                           limits, initial)
        if type(reply) is dict:
            raise InvariantViolated(f"invariant {a} is already violated by "
                                    f"{reply['violated']}", invariant=a,
                                    row=str(reply["violated"]))
        names, rows = reply
        return [str(n) for n in names], [[_row_value(v) for v in row] for row in rows]

    def remove(self, qid: int) -> bool:
        """Uninstall watch or invariant ``qid``; whether it was installed."""
        return bool(self._call("rules_remove", self.module, self._store, qid))

    def explain(self, goal: str, bindings: list[tuple[str, Any]],
                inferences: int) -> list[tuple[str, str, int]]:
        """For each literal of ``goal`` in order, up to the first that fails: its text,
        ``"ok"``/``"fail"``/``"unknown"``, and how many solutions the goal has up to it
        (at most 100 counted; -1 unknown)."""
        reply = self._call("rules_explain", self._kb, self._store, goal,
                           [[k, _rule_arg(v)] for k, v in bindings], [inferences])
        return [(str(t), str(s), int(n)) for t, s, n in reply]

    def destroy(self) -> None:
        """Uninstall everything and forget the declared relations."""
        self._call("rules_destroy", self.module, self._store)

"""The typed Prolog adapter: every predicate Octopus calls, and every conversion between
Python values and Prolog terms, in both directions.

No other module knows the name of a Prolog predicate or the shape of its reply: the
core asks :class:`PrologStore` for ``first(query) -> Record | None`` and the knowledge
base asks :class:`PrologKnowledgeBase` for ``query(...) -> list[dict]``. The calls
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

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from octopus._prolog import PrologRuntime, runtime
from octopus.errors import KnowledgeBaseError, OctopusError
from octopus.record import Atom, Record, Value

__all__ = [
    "EncodedConstraint",
    "EncodedName",
    "PrologKnowledgeBase",
    "PrologStore",
    "decode_attributes",
    "encode_attributes",
    "encode_value",
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


def _record(name: str, revision: int, d: Mapping[str, Any]) -> Record:
    return Record._trusted(name, decode_attributes(d), revision)


class PrologStore:
    """One engine's records, key index tables, sequence counters and trigger queries:
    a private module of prolog/store.pl and prolog/triggers.pl.

    Not thread-safe by itself: the core serialises every call under its lock.
    """

    _STORE = "octopus_store"
    _TRIGGERS = "octopus_triggers"

    def __init__(self, rt: PrologRuntime | None = None) -> None:
        self._rt = rt or runtime()
        self.module = self._rt.new_module("octopus_db")
        self._rt.call(self._STORE, "store_create", self.module)

    @property
    def rt(self) -> PrologRuntime:
        """The runtime the calls go through (bench/ times raw calls with it)."""
        return self._rt

    def _call(self, predicate: str, *args: Any) -> Any:
        return self._rt.call(self._STORE, predicate, self.module, *args)

    # --- reads -------------------------------------------------------------------------

    def get(self, name: str) -> Record | None:
        """The record called ``name``."""
        reply = self._call("store_get", name)
        return None if reply is None else _record(name, reply[0], reply[1])

    def first(self, name: EncodedName, constraints: Sequence[EncodedConstraint],
              pick: Any) -> Record | None:
        """The matching record whose name ``pick`` chooses from several (natural order)."""
        reply = self._call("store_first", name, constraints)
        if reply is None:
            return None
        if type(reply) is dict:         # several matches: {"names": [...]}
            chosen = pick(reply["names"])
            return self.get(chosen)
        return _record(reply[0], reply[1], reply[2])

    def names(self, name: EncodedName, constraints: Sequence[EncodedConstraint]) -> list[str]:
        """The matching names, unordered."""
        names: list[str] = self._call("store_names", name, constraints)
        return names

    def all(self, name: EncodedName, constraints: Sequence[EncodedConstraint]) -> list[Record]:
        """The matching records, unordered."""
        return [_record(n, rev, d)
                for n, rev, d in self._call("store_all", name, constraints)]

    def exists(self, name: EncodedName, constraints: Sequence[EncodedConstraint]) -> bool:
        return bool(self._call("store_exists", name, constraints))

    def count(self) -> int:
        """The number of records."""
        return int(self._call("store_count"))

    def key_tables(self) -> int:
        """The number of attribute keys with an index table (keys some record has)."""
        return int(self._call("store_keys"))

    # --- writes ------------------------------------------------------------------------

    def set(self, name: str, pairs: Sequence[tuple[str, Any]],
            conditions: Sequence[EncodedConstraint], sequential: bool,
            revision: int) -> str | None:
        """Store a record at ``revision`` if the stored one meets ``conditions``; the
        final name (a sequential set appends its number), or None if the conditions
        did not hold (nothing changed)."""
        reply = self._call("store_set", name, pairs, conditions, sequential, revision)
        return None if reply is False else str(reply)

    def delete(self, name: str, constraints: Sequence[EncodedConstraint]) -> Record | None:
        """Delete the record if it meets ``constraints``; the deleted record, or None."""
        reply = self._call("store_delete", name, constraints)
        return None if reply is None else _record(name, reply[0], reply[1])

    def load(self, rows: Iterable[tuple[str, Sequence[tuple[str, Any]]]],
             base_revision: int) -> int:
        """Store rows (name, pairs) in one transaction; the i-th gets revision base+i."""
        return int(self._call("store_load", list(rows), base_revision))

    def warm(self) -> None:
        """Build the clause indexes now rather than on the first query needing them."""
        self._call("store_warm")

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
        sequence counter to at least ``next``."""
        self._call("store_put", name, pairs, None if counter is None else list(counter),
                   revision)

    def replay(self, ops: list[list[Any]]) -> int:
        """Apply journal operations in one transaction: ``["s", rev, name, pairs,
        counter]`` or ``["d", name]``; each is idempotent."""
        return int(self._call("store_replay", ops))

    def write_snapshot(self, path: str) -> int:
        """Copy records and counters to ``path`` from a consistent view while other
        threads go on writing; the number of records."""
        return int(self._call("store_snapshot", path))

    def restore(self, path: str) -> int:
        """Load a file written by :meth:`write_snapshot` into this empty store."""
        return int(self._call("store_restore", path))

    def destroy(self) -> None:
        """Drop every record, index table, counter and trigger query."""
        self._call("store_destroy")

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

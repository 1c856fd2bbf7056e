"""From a bound syntax tree to what the store runs: typed constraints and their encoding.

This module decides what each form means in each call (docs/language.md):

* in a **query** (get, get_names, exists, delete, triggers, subscriptions) every item is
  a constraint, and ``key: value`` means equality;
* in a **set**, ``key: value`` is a stored attribute and every other item
  (``key == v``, ``key < v``, ``key: r'...'`` ...) is a precondition; ``key: _`` is an
  error, the name must be plain, and a key may be stored only once;
* a **message** (publish) is a record to match, never stored: plain name, stored
  attributes only.

A :class:`CompiledQuery` carries the constraints twice: typed (Python values, for the
trigger index) and encoded for Prolog by :mod:`octopus.adapter` (the only module that
knows the encoding). Parses become templates once per text (cached); binding
parameters fills a template's slots without rebuilding the syntax tree.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from octopus.adapter import EncodedConstraint, EncodedName, encode_attributes, encode_value
from octopus.errors import ParameterError, QueryError
from octopus.query.ast import (
    AnyName,
    Constraint,
    Name,
    Placeholder,
    Query,
    Regex,
    bind,
    bind_name,
    bind_pattern,
    bind_value,
)
from octopus.query.cache import bounded_lru
from octopus.query.fast import read_record
from octopus.query.parser import DEFAULT_MAX_LENGTH, parse
from octopus.record import Value, is_name

__all__ = ["CompiledQuery", "CompiledRecord", "TypedConstraint", "compile_query",
           "compile_record"]

_ORDERING = frozenset({"lt", "le", "gt", "ge"})

#: (key, op, operand): op one of ``eq ne lt le gt ge any re``; the operand is a Value,
#: the pattern of a regex, or None for ``any``.
TypedConstraint = tuple[str, str, Any]


def _encode(constraints: list[TypedConstraint]) -> list[EncodedConstraint]:
    return [(k, op, encode_value(v) if op not in ("re", "any") else v)
            for k, op, v in constraints]


class CompiledQuery:
    """A query ready for the store.

    ``name`` is the exact name, None for ``_`` or ``Regex`` for a name pattern;
    ``constraints`` are typed; ``prolog_name`` and ``prolog_constraints`` are their
    encoding for the store. ``query`` is the bound syntax tree, built only when
    someone asks for it (trigger descriptions, error messages).
    """

    __slots__ = ("_query", "_source", "constraints", "exact_name", "name", "plan",
                 "prolog_constraints", "prolog_name")

    def __init__(self, name: str | Regex | None, constraints: list[TypedConstraint],
                 query: Query | None = None,
                 source: tuple[Query, tuple[object, ...]] | None = None) -> None:
        self.name = name
        self.constraints = constraints
        self.exact_name: str | None = name if isinstance(name, str) else None
        self.prolog_name: EncodedName = ("re", name.pattern) if isinstance(name, Regex) else name
        self.prolog_constraints = _encode(constraints)
        self._query = query
        self._source = source
        self.plan: object = None    # how the store last ran this query (octopus/adapter.py)

    @property
    def query(self) -> Query:
        if self._query is None:
            assert self._source is not None
            self._query = bind(*self._source)
        return self._query

    def renamed(self, name: str) -> CompiledQuery:
        """The same constraints on the exact name ``name`` (a sequential set's trigger)."""
        q = self.query
        return CompiledQuery(name, self.constraints, Query(Name(name), q.constraints, 0))

    def __repr__(self) -> str:
        return f"<CompiledQuery {self.query}>"


class CompiledRecord(NamedTuple):
    """A record to store or publish: its name, attributes and set preconditions. (A
    named tuple: made for every set, it costs a third of a frozen dataclass.)"""

    name: str
    attributes: dict[str, Value]              # sorted by key
    pairs: list[tuple[str, Any]]              # the attributes encoded for Prolog
    conditions: list[EncodedConstraint]       # encoded for Prolog


def _operand(key: str, op: str, value: Any) -> Any:
    """A constraint's (bound) value, checked for its operator."""
    if isinstance(value, bool) and op in _ORDERING:
        raise QueryError(f"booleans can only be compared with ==, != or ':' (key {key!r})")
    return value


def _constraint_item(c: Constraint) -> TypedConstraint:
    """(key, op, operand), the value left a Placeholder to fill later."""
    if c.op == "any":
        return (c.key, "any", None)
    if c.op == "re":
        if isinstance(c.value, Placeholder):     # %r or %p, bound later
            return (c.key, "re", c.value)
        assert isinstance(c.value, Regex)
        return (c.key, "re", c.value.pattern)
    op = "eq" if c.op == "is" else c.op
    value = c.value if isinstance(c.value, Placeholder) else _operand(c.key, op, c.value)
    return (c.key, op, value)


def _fill(items: tuple[TypedConstraint, ...], params: tuple[object, ...]
          ) -> list[TypedConstraint]:
    return [((k, op, bind_pattern(v.kind, params[v.index], v.index).pattern) if op == "re"
             else (k, op, _operand(k, op, bind_value(v.kind, params[v.index], v.index))))
            if isinstance(v, Placeholder) else (k, op, v) for k, op, v in items]


def _check_count(q: Query, params: tuple[object, ...]) -> None:
    if len(params) != q.placeholders:
        raise ParameterError(
            f"the query has {q.placeholders} placeholder(s) but {len(params)} "
            f"parameter(s) were given")


# --- caches ----------------------------------------------------------------------------
#
# Compiled texts are cached in two tiers, each bounded in bytes: short texts (the common
# case) in an lru_cache, which costs 0.5 µs a hit where a byte-weighing cache costs 2.4;
# a text of at most _SHORT characters compiles to at most ~12 KB (measured: 49 KB for a
# 1,020-character query of 161 constraints), so 2,048 of them hold at most ~25 MB, and
# ~1-2 KB each in practice. Longer texts go to an LRU cache weighed entry by entry
# (octopus/query/cache.py), 16 MiB in all; the parse memo (octopus/query/parser.py) is bounded too.

_SHORT = 256
T = TypeVar("T")


def _weigh(args: tuple[Any, ...], compiled: object) -> int:
    # Each constraint takes at least 4 characters and ~300 bytes compiled: 75 per char.
    text: str = args[0]
    return 2 * sys.getsizeof(text) + 200 + 75 * len(text)


def _tiered(func: Callable[..., T]) -> Callable[..., T]:
    """``func(text, ...)`` memoised in the two tiers described above."""
    short = lru_cache(maxsize=2048)(func)
    long = bounded_lru(maxsize=512, maxbytes=16 << 20, weigh=_weigh)(func)

    def cached(text: str, *args: Any) -> T:
        return short(text, *args) if len(text) <= _SHORT else long(text, *args)

    cached.short, cached.long = short, long  # type: ignore[attr-defined]  # attributes of a function
    return cached


# --- queries -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _QueryTemplate:
    ast: Query
    name: str | Regex | Placeholder | None
    items: tuple[TypedConstraint, ...]        # values may be Placeholders


@_tiered
def _query_template(text: str, max_length: int) -> _QueryTemplate:
    q = parse(text, max_length=max_length)
    name: str | Regex | Placeholder | None
    if isinstance(q.name, Name):
        name = q.name.text
    elif isinstance(q.name, AnyName):
        name = None
    else:
        name = q.name
    return _QueryTemplate(q, name, tuple(_constraint_item(c) for c in q.constraints))


def _bind_query(t: _QueryTemplate, params: tuple[object, ...]) -> CompiledQuery:
    _check_count(t.ast, params)
    name = t.name
    if isinstance(name, Placeholder):
        bound = bind_name(name, params[name.index])
        name = bound if isinstance(bound, Regex) else bound.text
    if not params:
        return CompiledQuery(name, list(t.items), query=t.ast)
    return CompiledQuery(name, _fill(t.items, params), source=(t.ast, params))


@_tiered
def _cached_query(text: str, max_length: int) -> CompiledQuery:
    return _bind_query(_query_template(text, max_length), ())


_short_query: Callable[[str, int], CompiledQuery] = \
    _cached_query.short  # type: ignore[attr-defined]  # an attribute of a function


def compile_query(text: object, params: tuple[object, ...] = (),
                  max_length: int = DEFAULT_MAX_LENGTH) -> CompiledQuery:
    """Parse (memoised), bind and encode a query."""
    if not isinstance(text, str):
        parse(text)  # raises the QueryError for a non-text query
        raise AssertionError("unreachable")
    if not params:
        if len(text) <= _SHORT:
            return _short_query(text, max_length)
        return _cached_query(text, max_length)
    return _bind_query(_query_template(text, max_length), params)


# --- records -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _RecordTemplate:
    ast: Query
    name: str | Placeholder
    stored: tuple[tuple[str, Any], ...]       # sorted by key; values may be Placeholders
    conditions: tuple[TypedConstraint, ...]


@_tiered
def _record_template(text: str, what: str, max_length: int) -> _RecordTemplate:
    q = parse(text, max_length=max_length)
    if not isinstance(q.name, (Name, Placeholder)) or \
            (isinstance(q.name, Placeholder) and q.name.kind in ("r", "p")):
        raise QueryError(f"{what} needs a plain record name, not {q.name}")
    stored: dict[str, Any] = {}
    conditions = []
    for c in q.constraints:
        if c.op == "is":
            if c.key in stored:
                raise QueryError(f"attribute {c.key!r} is given two values")
            stored[c.key] = c.value
        elif c.op == "any":
            raise QueryError(f"{what}: '{c}' is not a value; only comparisons and regular "
                             f"expressions may be conditions")
        elif what == "publish":
            raise QueryError(f"a published message cannot have conditions ('{c}')")
        else:
            conditions.append(_constraint_item(c))
    name = q.name.text if isinstance(q.name, Name) else q.name
    return _RecordTemplate(q, name, tuple(sorted(stored.items())), tuple(conditions))


def _bind_record(t: _RecordTemplate, params: tuple[object, ...]) -> CompiledRecord:
    if len(params) != t.ast.placeholders:
        _check_count(t.ast, params)
    name = t.name
    if isinstance(name, Placeholder):
        given = params[name.index]
        if name.kind in ("s", "n") and given.__class__ is str and is_name(given):
            name = given                    # the common case, without a Name object
        else:
            bound = bind_name(name, given)
            assert isinstance(bound, Name)  # %r and %p are refused in a record's name
            name = bound.text
    attrs: dict[str, Value] = {}
    for k, v in t.stored:
        attrs[k] = bind_value(v.kind, params[v.index], v.index) \
            if v.__class__ is Placeholder else v
    return CompiledRecord(name, attrs, encode_attributes(attrs),
                          _encode(_fill(t.conditions, params)) if t.conditions else [])


@_tiered
def _cached_record(text: str, what: str, max_length: int) -> CompiledRecord:
    # A text of `key: literal` items (the canonical text of every record) needs no tree:
    # read_record reads it as PLY would (tests/query/test_fast.py), with one expression
    # per shape of the texts before, and a text seen once does not also fill the parse
    # memo and the template cache.
    fast = read_record(text, max_length)
    if fast is not None:
        name, attrs, pairs = fast
        return CompiledRecord(name, attrs, pairs, [])
    return _bind_record(_record_template(text, what, max_length), ())


_short_record: Callable[[str, str, int], CompiledRecord] = \
    _cached_record.short  # type: ignore[attr-defined]  # an attribute of a function


def compile_record(text: object, params: tuple[object, ...] = (), *, what: str = "set",
                   max_length: int = DEFAULT_MAX_LENGTH) -> CompiledRecord:
    """Parse (memoised), bind and check a record to store (``what='set'``) or publish."""
    if not isinstance(text, str):
        parse(text)  # raises the QueryError for a non-text record
        raise AssertionError("unreachable")
    if not params:
        # The tier chosen here rather than in _tiered's wrapper: one call less for
        # every set of a text (bench/compare.py, set_new_text).
        if len(text) <= _SHORT:
            return _short_record(text, what, max_length)
        return _cached_record(text, what, max_length)
    return _bind_record(_record_template(text, what, max_length), params)

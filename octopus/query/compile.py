"""From a bound AST to the plain Python values janus hands to the Prolog store.

This module decides what each form means in each call (SPEC section 3):

* in a **query** (get, get_names, exists, delete, triggers, subscriptions) every item is
  a constraint, and ``key: value`` means equality;
* in a **set**, ``key: value`` is a stored attribute and comparisons (``key == v``,
  ``key < v`` ...) are preconditions; ``key: _`` and ``key: r'...'`` are errors, the
  name must be plain, and a key may be stored only once;
* a **message** (publish) is a record to match, never stored: plain name, stored
  attributes only.

Parses are turned into templates once per text (cached); binding parameters fills the
template's slots without rebuilding the syntax tree.

The janus encoding (see prolog/match.pl): a name is a ``str``; ``_`` is ``None``; a
regex name is ``("re", pattern)``; a constraint is ``(key, op, value)``; a string value
is a ``str``; an identifier is ``("a", text)``; numbers and booleans are themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

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
    bind_value,
)
from octopus.query.parser import DEFAULT_MAX_LENGTH, parse
from octopus.record import Atom, Value

__all__ = ["CompiledQuery", "CompiledRecord", "compile_query", "compile_record"]

_ORDERING = frozenset({"lt", "le", "gt", "ge"})


class CompiledQuery:
    """A query ready for the store: ``name`` and ``constraints`` in janus encoding.

    ``query`` is the bound syntax tree, built only when someone asks for it (trigger
    descriptions, error messages): the hot path needs just the encoding.
    """

    __slots__ = ("_query", "_source", "constraints", "exact_name", "name")

    def __init__(self, name: Any, constraints: list[tuple[str, str, Any]],
                 query: Query | None = None,
                 source: tuple[Query, tuple[object, ...]] | None = None) -> None:
        self.name = name                    # str | None | ("re", pattern)
        self.constraints = constraints
        self.exact_name: str | None = name if isinstance(name, str) else None
        self._query = query
        self._source = source

    @property
    def query(self) -> Query:
        if self._query is None:
            assert self._source is not None
            self._query = bind(*self._source)
        return self._query

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(c[0] for c in self.constraints)


@dataclass(frozen=True, slots=True)
class CompiledRecord:
    """A record to store or publish: its name, attributes and set preconditions."""

    name: str
    attributes: dict[str, Value]          # sorted by key
    pairs: list[tuple[str, Any]]          # attributes in janus encoding
    conditions: list[tuple[str, str, Any]]


def encode_value(value: Value) -> Any:
    if isinstance(value, Atom):
        return ("a", str.__str__(value))
    return value


def _operand(key: str, op: str, value: Any) -> Any:
    """The janus encoding of a constraint's (bound) value."""
    if isinstance(value, bool) and op in _ORDERING:
        raise QueryError(f"booleans can only be compared with ==, != or ':' (key {key!r})")
    return encode_value(value)


def _constraint_item(c: Constraint) -> tuple[str, str, Any]:
    """(key, op, value) with the value encoded, or left a Placeholder to fill later."""
    if c.op == "any":
        return (c.key, "any", None)
    if c.op == "re":
        assert isinstance(c.value, Regex)
        return (c.key, "re", c.value.pattern)
    op = "eq" if c.op == "is" else c.op
    value = c.value if isinstance(c.value, Placeholder) else _operand(c.key, op, c.value)
    return (c.key, op, value)


def _fill(items: list[tuple[str, str, Any]] | tuple[tuple[str, str, Any], ...],
          params: tuple[object, ...]) -> list[tuple[str, str, Any]]:
    return [(k, op, _operand(k, op, bind_value(v.kind, params[v.index], v.index)))
            if isinstance(v, Placeholder) else (k, op, v) for k, op, v in items]


def _check_count(q: Query, params: tuple[object, ...]) -> None:
    if len(params) != q.placeholders:
        raise ParameterError(
            f"the query has {q.placeholders} placeholder(s) but {len(params)} "
            f"parameter(s) were given")


# --- queries -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _QueryTemplate:
    ast: Query
    name: Any                                   # janus name, or a Placeholder
    items: tuple[tuple[str, str, Any], ...]     # values may be Placeholders


@lru_cache(maxsize=4096)
def _query_template(text: str, max_length: int) -> _QueryTemplate:
    q = parse(text, max_length=max_length)
    name: Any
    if isinstance(q.name, Name):
        name = q.name.text
    elif isinstance(q.name, AnyName):
        name = None
    elif isinstance(q.name, Regex):
        name = ("re", q.name.pattern)
    else:
        name = q.name
    return _QueryTemplate(q, name, tuple(_constraint_item(c) for c in q.constraints))


def _bind_query(t: _QueryTemplate, params: tuple[object, ...]) -> CompiledQuery:
    _check_count(t.ast, params)
    name = t.name
    if isinstance(name, Placeholder):
        name = bind_name(name, params[name.index]).text
    if not params:
        return CompiledQuery(name, list(t.items), query=t.ast)
    return CompiledQuery(name, _fill(t.items, params), source=(t.ast, params))


@lru_cache(maxsize=4096)
def _cached_query(text: str, max_length: int) -> CompiledQuery:
    return _bind_query(_query_template(text, max_length), ())


def compile_query(text: object, params: tuple[object, ...] = (),
                  max_length: int = DEFAULT_MAX_LENGTH) -> CompiledQuery:
    """Parse (memoised), bind and encode a query."""
    if not isinstance(text, str):
        parse(text)  # raises the QueryError for a non-text query
    if not params:
        return _cached_query(text, max_length)  # type: ignore[arg-type]
    return _bind_query(_query_template(text, max_length), params)  # type: ignore[arg-type]


# --- records -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _RecordTemplate:
    ast: Query
    name: str | Placeholder
    stored: tuple[tuple[str, Any], ...]         # sorted by key; values may be Placeholders
    conditions: tuple[tuple[str, str, Any], ...]


@lru_cache(maxsize=4096)
def _record_template(text: str, what: str, max_length: int) -> _RecordTemplate:
    q = parse(text, max_length=max_length)
    if not isinstance(q.name, (Name, Placeholder)):
        raise QueryError(f"{what} needs a plain record name, not {q.name}")
    stored: dict[str, Any] = {}
    conditions = []
    for c in q.constraints:
        if c.op == "is":
            if c.key in stored:
                raise QueryError(f"attribute {c.key!r} is given two values")
            stored[c.key] = c.value
        elif c.op in ("any", "re"):
            raise QueryError(f"{what}: '{c}' is not a value; only comparisons may "
                             f"be conditions")
        elif what == "publish":
            raise QueryError(f"a published message cannot have conditions ('{c}')")
        else:
            conditions.append(_constraint_item(c))
    name = q.name.text if isinstance(q.name, Name) else q.name
    return _RecordTemplate(q, name, tuple(sorted(stored.items())), tuple(conditions))


def _bind_record(t: _RecordTemplate, params: tuple[object, ...]) -> CompiledRecord:
    _check_count(t.ast, params)
    name = t.name
    if isinstance(name, Placeholder):
        name = bind_name(name, params[name.index]).text
    attrs: dict[str, Value] = {
        k: bind_value(v.kind, params[v.index], v.index) if isinstance(v, Placeholder) else v
        for k, v in t.stored}
    pairs = [(k, encode_value(v)) for k, v in attrs.items()]
    return CompiledRecord(name, attrs, pairs, _fill(t.conditions, params))


@lru_cache(maxsize=4096)
def _cached_record(text: str, what: str, max_length: int) -> CompiledRecord:
    return _bind_record(_record_template(text, what, max_length), ())


def compile_record(text: object, params: tuple[object, ...] = (), *, what: str = "set",
                   max_length: int = DEFAULT_MAX_LENGTH) -> CompiledRecord:
    """Parse (memoised), bind and check a record to store (``what='set'``) or publish."""
    if not isinstance(text, str):
        parse(text)  # raises the QueryError for a non-text record
    if not params:
        return _cached_record(text, what, max_length)  # type: ignore[arg-type]
    return _bind_record(_record_template(text, what, max_length), params)  # type: ignore[arg-type]

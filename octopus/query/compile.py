"""From a bound AST to the plain Python values janus hands to the Prolog store.

This module decides what each form means in each call (SPEC section 3):

* in a **query** (get, get_names, exists, delete, triggers, subscriptions) every item is
  a constraint, and ``key: value`` means equality;
* in a **set**, ``key: value`` is a stored attribute and comparisons (``key == v``,
  ``key < v`` ...) are preconditions; ``key: _`` and ``key: r'...'`` are errors, the
  name must be plain, and a key may be stored only once;
* a **message** (publish) is a record to match, never stored: plain name, stored
  attributes only.

The janus encoding (see prolog/match.pl): a name is a ``str``; ``_`` is ``None``; a
regex name is ``("re", pattern)``; a constraint is ``(key, op, value)``; a string value
is a ``str``; an identifier is ``("a", text)``; numbers and booleans are themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from octopus.errors import QueryError
from octopus.query.ast import AnyName, Constraint, Name, Query, Regex, bind
from octopus.query.parser import DEFAULT_MAX_LENGTH, parse
from octopus.record import Atom, Value

__all__ = ["CompiledQuery", "CompiledRecord", "compile_query", "compile_record"]

_ORDERING = frozenset({"lt", "le", "gt", "ge"})


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    """A query ready for the store: ``name`` and ``constraints`` in janus encoding."""

    query: Query
    name: Any                       # str | None | ("re", pattern)
    constraints: list[tuple[str, str, Any]]
    exact_name: str | None          # the record name when the query names exactly one

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


def _encode_constraint(c: Constraint) -> tuple[str, str, Any]:
    if c.op == "any":
        return (c.key, "any", None)
    if c.op == "re":
        assert isinstance(c.value, Regex)
        return (c.key, "re", c.value.pattern)
    if isinstance(c.value, bool) and c.op in _ORDERING:
        raise QueryError(f"booleans can only be compared with ==, != or ':' (key {c.key!r})")
    return (c.key, "eq" if c.op == "is" else c.op, encode_value(c.value))  # type: ignore[arg-type]


def _encode_name(q: Query) -> Any:
    name = q.name
    if isinstance(name, Name):
        return name.text
    if isinstance(name, AnyName):
        return None
    if isinstance(name, Regex):
        return ("re", name.pattern)
    raise QueryError("unbound placeholder in name position")  # bind() prevents this


def _query_from_ast(q: Query) -> CompiledQuery:
    name = _encode_name(q)
    return CompiledQuery(q, name, [_encode_constraint(c) for c in q.constraints],
                         name if isinstance(name, str) else None)


def _record_from_ast(q: Query, *, what: str) -> CompiledRecord:
    if not isinstance(q.name, Name):
        raise QueryError(f"{what} needs a plain record name, not {q.name}")
    stored: dict[str, Value] = {}
    conditions: list[tuple[str, str, Any]] = []
    for c in q.constraints:
        if c.op == "is":
            if c.key in stored:
                raise QueryError(f"attribute {c.key!r} is given two values")
            stored[c.key] = c.value  # type: ignore[assignment]
        elif c.op in ("any", "re"):
            raise QueryError(f"{what}: '{c}' is not a value; only comparisons may "
                             f"be conditions")
        elif what == "publish":
            raise QueryError(f"a published message cannot have conditions ('{c}')")
        else:
            conditions.append(_encode_constraint(c))
    attrs = dict(sorted(stored.items()))
    pairs = [(k, encode_value(v)) for k, v in attrs.items()]
    return CompiledRecord(q.name.text, attrs, pairs, conditions)


@lru_cache(maxsize=4096)
def _cached_query(text: str, max_length: int) -> CompiledQuery:
    # bind(..., ()) raises ParameterError if the text has placeholders (not cached).
    return _query_from_ast(bind(parse(text, max_length=max_length), ()))


@lru_cache(maxsize=4096)
def _cached_record(text: str, what: str, max_length: int) -> CompiledRecord:
    return _record_from_ast(bind(parse(text, max_length=max_length), ()), what=what)


def compile_query(text: object, params: tuple[object, ...] = (),
                  max_length: int = DEFAULT_MAX_LENGTH) -> CompiledQuery:
    """Parse (memoised), bind and encode a query."""
    if not params and isinstance(text, str):
        return _cached_query(text, max_length)
    return _query_from_ast(bind(parse(text, max_length=max_length), params))


def compile_record(text: object, params: tuple[object, ...] = (), *, what: str = "set",
                   max_length: int = DEFAULT_MAX_LENGTH) -> CompiledRecord:
    """Parse (memoised), bind and check a record to store (``what='set'``) or publish."""
    if not params and isinstance(text, str):
        return _cached_record(text, what, max_length)
    return _record_from_ast(bind(parse(text, max_length=max_length), params), what=what)

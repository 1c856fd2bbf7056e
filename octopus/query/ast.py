"""The abstract syntax of records and queries (grammar/octopus.ebnf), as frozen dataclasses.

A parsed text is a :class:`Query`: a name pattern and a tuple of constraints. The same
tree serves queries (get, delete, triggers, subscriptions) and records being stored
(set, publish); :mod:`octopus.query.compile` decides what each form means where.
Placeholders stay in the tree until :func:`bind` replaces them with typed parameters,
so a parse can be cached and reused with different parameters.

Every node prints in canonical form (``str(node)``); parsing that text gives back an
equal tree. Positions (``pos``, a 0-based offset into the source) are kept for error
messages but do not take part in equality.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MemberDescriptorType
from typing import Any, TypeAlias

from octopus.errors import ParameterError
from octopus.record import (
    MAX_INT_DIGITS,
    Atom,
    Value,
    format_value,
    int_in_range,
    is_name,
    short_repr,
)

__all__ = [
    "AnyName",
    "Constraint",
    "Name",
    "NamePattern",
    "Placeholder",
    "Query",
    "Regex",
    "bind",
    "bind_name",
    "bind_pattern",
    "bind_value",
    "escape_pattern",
    "make_constraint",
    "make_name",
    "make_query",
]

# Comparison operators as they appear in the AST, with their source spelling.
OPERATORS: dict[str, str] = {
    "is": ":",     # key: value — equality in a query, the stored value in a set
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
}


@dataclass(frozen=True, slots=True)
class Placeholder:
    """``%d %f %s %b %n``: the ``index``-th positional parameter (0-based)."""

    kind: str
    index: int

    def __str__(self) -> str:
        return f"%{self.kind}"


@dataclass(frozen=True, slots=True)
class Regex:
    """``r'...'``: a PCRE pattern, searched (not fully matched)."""

    pattern: str

    def __str__(self) -> str:
        return f"r'{self.pattern}'"


@dataclass(frozen=True, slots=True)
class Name:
    """An exact record name."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class AnyName:
    """``_``: any name."""

    def __str__(self) -> str:
        return "_"


NamePattern: TypeAlias = Name | AnyName | Regex | Placeholder
Operand: TypeAlias = Value | Placeholder | Regex | None  # None: the ``_`` of ``key: _``


@dataclass(frozen=True, slots=True)
class Constraint:
    """One ``key op value`` item.

    ``op`` is one of ``is`` (``key: value``), ``eq ne lt le gt ge``, ``any``
    (``key: _``, value None) or ``re`` (``key: r'...'``, value a :class:`Regex`).
    """

    key: str
    op: str
    value: Operand
    pos: int = field(default=-1, compare=False)

    def __str__(self) -> str:
        if self.op == "any":
            return f"{self.key}: _"
        if self.op == "re":
            return f"{self.key}: {self.value}"
        spelled = OPERATORS[self.op]
        value = self.value
        # op is a comparison, so the value is a Value: mypy cannot tie the two.
        text = str(value) if isinstance(value, Placeholder) else format_value(value)  # type: ignore[arg-type]
        return f"{self.key}: {text}" if spelled == ":" else f"{self.key} {spelled} {text}"


@dataclass(frozen=True, slots=True)
class Query:
    """A name pattern and its constraints, in source order."""

    name: NamePattern
    constraints: tuple[Constraint, ...] = ()
    placeholders: int = 0

    def __str__(self) -> str:
        ordered = sorted(self.constraints, key=lambda c: c.key)  # stable: keeps a key's order
        if not ordered:
            return f"{self.name} {{}}"
        return f"{self.name} {{ {', '.join(str(c) for c in ordered)} }}"


# --- building trees fast ----------------------------------------------------------
# A frozen dataclass's __init__ sets each field through object.__setattr__ by name,
# which is most of the cost of building a tree from an already-validated parse (the
# fast path of octopus.query.fast). These build the same objects through the slots'
# descriptors; they check nothing, so only parsers use them.

_new = object.__new__


def _slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The ``__set__`` of the slot ``name`` of ``cls`` (read from the class dict: a
    frozen dataclass's own attribute access would refuse)."""
    descriptor = cls.__dict__[name]
    assert isinstance(descriptor, MemberDescriptorType)
    return descriptor.__set__


_name_text = _slot_setter(Name, "text")
_c_key = _slot_setter(Constraint, "key")
_c_op = _slot_setter(Constraint, "op")
_c_value = _slot_setter(Constraint, "value")
_c_pos = _slot_setter(Constraint, "pos")
_q_name = _slot_setter(Query, "name")
_q_constraints = _slot_setter(Query, "constraints")
_q_placeholders = _slot_setter(Query, "placeholders")


def make_name(text: str) -> Name:
    """``Name(text)``, built faster (no checks)."""
    n = _new(Name)
    _name_text(n, text)
    return n


def make_constraint(key: str, op: str, value: Operand, pos: int) -> Constraint:
    """``Constraint(key, op, value, pos)``, built faster (no checks)."""
    c = _new(Constraint)
    _c_key(c, key)
    _c_op(c, op)
    _c_value(c, value)
    _c_pos(c, pos)
    return c


def make_query(name: NamePattern, constraints: tuple[Constraint, ...],
               placeholders: int) -> Query:
    """``Query(name, constraints, placeholders)``, built faster (no checks)."""
    q = _new(Query)
    _q_name(q, name)
    _q_constraints(q, constraints)
    _q_placeholders(q, placeholders)
    return q


_INT_LIMIT: int = 10 ** MAX_INT_DIGITS  # int_in_range, inlined in bind_value's fast path


def bind_value(kind: str, param: object, index: int) -> Value:
    """The typed value of the ``index``-th parameter for placeholder ``%kind``.

    Raises :class:`ParameterError` for a parameter of the wrong type or outside the
    value range (the same range as literals: see :func:`octopus.record.int_in_range`).
    """
    # The common cases first, checked as the general path below checks them (a set
    # binds several values per call: this path is most of its binding time).
    if (kind == "d" and type(param) is int and -_INT_LIMIT < param < _INT_LIMIT) or (
            kind == "s" and type(param) is str and param.isascii()):
        return param
    return _bind_value_checked(kind, param, index)


def _bind_value_checked(kind: str, param: object, index: int) -> Value:
    where = f"parameter {index + 1} (%{kind})"
    if kind == "d":
        if isinstance(param, bool) or not isinstance(param, int):
            raise ParameterError(f"{where} must be an int, got {type(param).__name__}")
        if not int_in_range(param):
            raise ParameterError(f"{where} has more than {MAX_INT_DIGITS} decimal digits "
                                 f"({short_repr(param)})")
        return int(param)
    if kind == "f":
        if isinstance(param, bool) or not isinstance(param, (int, float)):
            raise ParameterError(f"{where} must be a float, got {type(param).__name__}")
        try:
            value = float(param)
        except OverflowError:  # an int beyond the float range
            raise ParameterError(f"{where} is out of the float range "
                                 f"({short_repr(param)})") from None
        if not math.isfinite(value):
            raise ParameterError(f"{where} must be finite, got {value!r}")
        return value
    if kind == "s":
        if not isinstance(param, str):
            raise ParameterError(f"{where} must be a str, got {type(param).__name__}")
        _check_text(param, where)
        return str(param)
    if kind == "b":
        if not isinstance(param, bool):
            raise ParameterError(f"{where} must be a bool, got {type(param).__name__}")
        return param
    if kind == "n":
        if not is_name(param):
            raise ParameterError(f"{where} must be a valid name, got {short_repr(param)}")
        return Atom(param)
    raise ParameterError(f"unknown placeholder %{kind}")


def bind_pattern(kind: str, param: object, index: int) -> Regex:
    """The regular expression a ``%r`` (a pattern) or ``%p`` (a prefix: literal text
    the name or value must start with) parameter binds to."""
    where = f"parameter {index + 1} (%{kind})"
    if not isinstance(param, str):
        raise ParameterError(f"{where} must be a str, got {type(param).__name__}")
    _check_text(param, where)
    if kind == "r":
        return Regex(str(param))
    return Regex("^" + escape_pattern(param))


def escape_pattern(text: str) -> str:
    """``text`` as a PCRE pattern matching exactly that text: every ASCII character
    that is not a letter, digit or underscore gets a backslash (PCRE takes a backslash
    before any such character as that character); others are literal already."""
    return "".join("\\" + c if c.isascii() and not (c.isalnum() or c == "_") else c
                   for c in text)


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ParameterError(f"{where} is not valid Unicode text: {e.reason}") from None


def bind_name(pattern: Placeholder, param: object) -> Name | Regex:
    """The name a ``%s``/``%n`` placeholder in name position binds to, or the name
    pattern of a ``%r``/``%p``."""
    if pattern.kind in ("r", "p"):
        return bind_pattern(pattern.kind, param, pattern.index)
    if not is_name(param):
        raise ParameterError(
            f"parameter {pattern.index + 1} (%{pattern.kind}) in name position must be a "
            f"valid name, got {short_repr(param)}")
    return Name(param)


def bind(query: Query, params: tuple[object, ...]) -> Query:
    """Replace every placeholder of ``query`` by its typed parameter.

    Raises :class:`ParameterError` for a wrong number or type of parameters. Values
    are bound after parsing, so a parameter can never change the query's structure.
    """
    if len(params) != query.placeholders:
        raise ParameterError(
            f"the query has {query.placeholders} placeholder(s) but {len(params)} "
            f"parameter(s) were given")
    if not params:
        return query
    name = query.name
    if isinstance(name, Placeholder):
        name = bind_name(name, params[name.index])
    constraints = tuple(
        (Constraint(c.key, c.op, bind_pattern(c.value.kind, params[c.value.index],
                                              c.value.index), c.pos)
         if c.op == "re" else
         Constraint(c.key, c.op, bind_value(c.value.kind, params[c.value.index], c.value.index),
                    c.pos))
        if isinstance(c.value, Placeholder) else c
        for c in query.constraints
    )
    return Query(name, constraints, 0)

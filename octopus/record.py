"""Records: a name and attributes, with their canonical text form.

A :class:`Record` is immutable. Its ``str()`` is the canonical text of SPEC section 1:
``name { k1: v1, k2: v2 }`` with keys in byte order, integers in decimal, floats in
Python ``repr`` form, strings single-quoted with ``'`` and ``\\`` escaped, identifiers
bare, booleans ``true``/``false``; ``name {}`` when there are no attributes. Parsing the
canonical text gives back an equal record.

Attribute values are ``int``, ``float``, ``str`` (a string), :class:`Atom` (an
identifier) or ``bool``. Equality follows the query language: numbers compare
numerically (``1 == 1.0``), a string and an identifier with the same text are equal,
and booleans are equal only to booleans (``True != 1`` here, unlike in Python).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeAlias

__all__ = ["MAX_NAME_LENGTH", "Atom", "Record", "Value", "format_value", "is_name",
           "natural_key"]

# Names, keys and identifiers: a regex runs on a name at every write that a name-regex
# trigger sees, so names stay within the regex subject limit (prolog/match.pl).
MAX_NAME_LENGTH = 1024

_NAME_RE = re.compile(r"[a-z][A-Za-z0-9._\-]*\Z")
_KEYWORDS = frozenset({"true", "false"})
_DIGITS_RE = re.compile(r"[0-9]+")


class Atom(str):
    """An identifier value (``type: ethernet``): equal to the string with the same
    text, but printed bare rather than quoted."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


Value: TypeAlias = int | float | str | bool


def is_name(text: object) -> bool:
    """True if ``text`` is a valid record name or attribute key (at most
    :data:`MAX_NAME_LENGTH` characters)."""
    return (isinstance(text, str) and len(text) <= MAX_NAME_LENGTH
            and bool(_NAME_RE.match(text)) and text not in _KEYWORDS)


def _number_run(match: re.Match[str]) -> str:
    digits = match.group().lstrip("0") or "0"
    return "\x00" + chr(len(digits)) + digits


def natural_key(name: str) -> str:
    """Sort key for natural name order: digit runs compare as numbers, the rest by
    code point (``obj2 < obj10 < objb``); the name itself breaks ties (``a01``/``a1``).

    Each digit run becomes ``NUL, length, digits`` (leading zeros dropped) and the key
    ends with ``NUL NUL name``, so it is one string compared in C: a shorter number
    sorts first, equal lengths compare digit by digit, NUL (which no name contains)
    makes a text run that ends sort before one that goes on — exactly like comparing
    lists of text runs and numbers — and only names equal in that order reach the
    tie-break."""
    return _DIGITS_RE.sub(_number_run, name) + "\x00\x00" + name


def format_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def format_value(value: Value) -> str:
    """The canonical text of one attribute value."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Atom):
        return str.__str__(value)
    if isinstance(value, str):
        return format_string(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value)
    raise TypeError(f"not an Octopus value: {value!r}")


def _value_kind(value: Value) -> tuple[int, Any]:
    """A comparable, hashable form that follows the query language's equality."""
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, str):
        return (1, str(value))
    return (0, value)  # numbers: 1 == 1.0 and hash(1) == hash(1.0)


def check_value(value: object) -> Value:
    """Return ``value`` if it can be stored, else raise ``TypeError``/``ValueError``."""
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"float values must be finite, got {value!r}")
        return value
    raise TypeError(f"attribute values are int, float, str or bool, got {type(value).__name__}")


class Record:
    """A stored (or published) record: ``name``, read-only ``attributes``, ``revision``.

    ``record[key]`` reads an attribute; ``str(record)`` is the canonical text.
    """

    __slots__ = ("_attrs", "_hash", "_name", "_revision")

    def __init__(self, name: str, attributes: Mapping[str, Value] | None = None,
                 revision: int = 0) -> None:
        if not is_name(name):
            raise ValueError(f"invalid record name: {name!r}")
        attrs: dict[str, Value] = {}
        for key in sorted(attributes or ()):
            if not is_name(key):
                raise ValueError(f"invalid attribute key: {key!r}")
            attrs[key] = check_value(attributes[key])  # type: ignore[index]
        self._name = name
        self._attrs = attrs
        self._revision = revision
        self._hash: int | None = None

    @classmethod
    def _trusted(cls, name: str, attrs: dict[str, Value], revision: int) -> Record:
        """Build from already validated parts; ``attrs`` must be sorted by key."""
        self = object.__new__(cls)
        self._name = name
        self._attrs = attrs
        self._revision = revision
        self._hash = None
        return self

    @property
    def name(self) -> str:
        return self._name

    @property
    def attributes(self) -> Mapping[str, Value]:
        return MappingProxyType(self._attrs)

    @property
    def revision(self) -> int:
        """The revision of the record's last change (0 for a record never stored)."""
        return self._revision

    def __getitem__(self, key: str) -> Value:
        return self._attrs[key]

    def __contains__(self, key: object) -> bool:
        return key in self._attrs

    def __iter__(self) -> Iterator[str]:
        return iter(self._attrs)

    def __len__(self) -> int:
        return len(self._attrs)

    def __bool__(self) -> bool:
        return True  # a record without attributes is still a record

    def get(self, key: str, default: Any = None) -> Any:
        return self._attrs.get(key, default)

    def __str__(self) -> str:
        if not self._attrs:
            return f"{self._name} {{}}"
        body = ", ".join(f"{k}: {format_value(v)}" for k, v in self._attrs.items())
        return f"{self._name} {{ {body} }}"

    def __repr__(self) -> str:
        return f"<Record {self} rev={self._revision}>"

    def _identity(self) -> tuple[str, frozenset[tuple[str, tuple[int, Any]]]]:
        return (self._name, frozenset((k, _value_kind(v)) for k, v in self._attrs.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self._identity())
        return self._hash

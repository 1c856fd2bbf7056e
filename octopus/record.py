"""Records: a name and attributes, with their canonical text form.

A :class:`Record` is immutable. Its ``str()`` is the canonical text of docs/language.md:
``name { k1: v1, k2: v2 }`` with keys in byte order, integers in decimal, floats in
Python ``repr`` form, strings single-quoted with ``'`` and ``\\`` escaped, identifiers
bare, booleans ``true``/``false``; ``name {}`` when there are no attributes. Parsing the
canonical text gives back an equal record.

Attribute values are ``int``, ``float``, ``str`` (a string), :class:`Atom` (an
identifier) or ``bool``. Equality follows the query language: numbers compare
numerically (``1 == 1.0``), a string and an identifier with the same text are equal,
and booleans are equal only to booleans (``True != 1`` here, unlike in Python).

Every value that can enter the store has a canonical text. For integers this is a
range: at most :data:`MAX_INT_DIGITS` decimal digits (:func:`int_in_range`), the same
bound however the integer arrives (decimal or hex literal, ``%d``, ``Record(...)``,
the wire), and printed and read without depending on the interpreter's
``sys.set_int_max_str_digits`` setting (docs/decisions.md, Language).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeAlias, TypeGuard

from octopus.errors import QueryError

__all__ = [
    "MAX_INT_DIGITS",
    "MAX_NAME_LENGTH",
    "Atom",
    "Record",
    "Value",
    "check_value",
    "format_value",
    "int_from_decimal",
    "int_in_range",
    "int_text",
    "is_name",
    "natural_key",
    "natural_sorted",
    "short_repr",
]

# Names, keys and identifiers: a regex runs on a name at every write that a name-regex
# trigger sees, so names stay within the regex subject limit (prolog/regex.pl).
MAX_NAME_LENGTH = 1024

MAX_INT_DIGITS = 4300
"""The most decimal digits an integer value may have: Python's default limit for
int/str conversion, so every stored integer prints in canonical text."""
_INT_BOUND: int = 10 ** MAX_INT_DIGITS
# Below any interpreter limit (the smallest allowed is 640): pieces this long always
# convert, whatever sys.set_int_max_str_digits says.
_CHUNK_DIGITS = 600
_CHUNK: int = 10 ** _CHUNK_DIGITS

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


def is_name(text: object) -> TypeGuard[str]:
    """True if ``text`` is a valid record name or attribute key (at most
    :data:`MAX_NAME_LENGTH` characters)."""
    return (isinstance(text, str) and len(text) <= MAX_NAME_LENGTH
            and bool(_NAME_RE.match(text)) and text not in _KEYWORDS)


def int_in_range(value: int) -> bool:
    """True if ``value`` has at most :data:`MAX_INT_DIGITS` decimal digits."""
    return -_INT_BOUND < value < _INT_BOUND


def int_text(value: int) -> str:
    """The decimal text of an integer in range, even where the interpreter's int/str
    digit limit has been lowered below :data:`MAX_INT_DIGITS`."""
    try:
        return int.__repr__(value)
    except ValueError:
        pass
    sign, rest, parts = ("-" if value < 0 else ""), abs(value), []
    while rest >= _CHUNK:
        rest, low = divmod(rest, _CHUNK)
        parts.append(f"{low:0{_CHUNK_DIGITS}d}")
    parts.append(int.__repr__(rest))
    return sign + "".join(reversed(parts))


def int_from_decimal(digits: str) -> int:
    """The integer of an optionally signed run of ASCII digits (validated by the
    caller), even where the interpreter's int/str digit limit has been lowered."""
    try:
        return int(digits)
    except ValueError:
        pass
    negative = digits.startswith("-")
    body = digits.lstrip("+-")
    value = 0
    for start in range(0, len(body), _CHUNK_DIGITS):
        piece = body[start:start + _CHUNK_DIGITS]
        value = value * 10 ** len(piece) + int(piece)
    return -value if negative else value


def short_repr(value: object, limit: int = 60) -> str:
    """A bounded ``repr`` for error messages: never the digits of a huge integer
    (whose repr may even raise) nor a whole long string."""
    if isinstance(value, int) and not isinstance(value, bool) and not -10**40 < value < 10**40:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} long)"
    try:
        text = repr(value)
    except Exception:  # a user object whose __repr__ fails must not hide the real error
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit] + "..."


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


_NUMBERED_MIN = 16      # fewer names: the general sort is as fast


def natural_sorted(names: list[str]) -> list[str]:
    """``sorted(names, key=natural_key)``, fast for the common result of a query: names
    that are one prefix (ending in a non-digit) and a number without leading zeros
    (``hw.pci.device.7``). Their natural order is the order of (length, text), which
    two sorts in C give; checking that every name has that form is one regex search
    over them all. Other lists take the general path (~3 µs a name)."""
    if len(names) < 2:
        return list(names)
    if len(names) >= _NUMBERED_MIN:
        lo, hi = min(names), max(names)
        common = next((i for i, (a, b) in enumerate(zip(lo, hi, strict=False)) if a != b),
                      min(len(lo), len(hi)))
        prefix = lo[:common].rstrip("0123456789")
        if prefix:
            form = re.compile("(?:" + re.escape(prefix) + r"(?:0|[1-9][0-9]*)\n)*")
            if form.fullmatch("\n".join(names) + "\n"):
                ordered = sorted(names)
                ordered.sort(key=len)
                return ordered
    return sorted(names, key=natural_key)


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
        return int_text(value)
    if isinstance(value, float):
        return float.__repr__(value)
    raise QueryError(f"not an Octopus value: {short_repr(value)}")


def _value_kind(value: Value) -> tuple[int, Any]:
    """A comparable, hashable form that follows the query language's equality."""
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, str):
        return (1, str(value))
    return (0, value)  # numbers: 1 == 1.0 and hash(1) == hash(1.0)


def check_value(value: object) -> Value:
    """Return ``value`` if it can be stored, else raise :class:`QueryError`: ints in
    range, finite floats, strings without lone surrogates, identifiers that are names,
    booleans."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not int_in_range(value):
            raise QueryError(f"integers have at most {MAX_INT_DIGITS} decimal digits, got "
                             f"{short_repr(value)}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryError(f"float values must be finite, got {value!r}")
        return value
    if isinstance(value, str):
        if isinstance(value, Atom) and not is_name(value):
            raise QueryError(f"an identifier must be a valid name, got {short_repr(value)}")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise QueryError(f"strings must be valid Unicode (no lone surrogates), got "
                                 f"{short_repr(value)}") from None
        return value
    raise QueryError(
        f"attribute values are int, float, str or bool, got {type(value).__name__}")


class Record:
    """A stored (or published) record: ``name``, read-only ``attributes``, ``revision``.

    ``record[key]`` reads an attribute; ``str(record)`` is the canonical text.
    """

    __slots__ = ("_attrs", "_hash", "_name", "_revision")

    def __init__(self, name: str, attributes: Mapping[str, Value] | None = None,
                 revision: int = 0) -> None:
        if not is_name(name):
            raise QueryError(f"invalid record name: {short_repr(name)}")
        if attributes is None:
            attributes = {}
        elif not isinstance(attributes, Mapping):
            raise QueryError(f"attributes must be a mapping, got {type(attributes).__name__}")
        for key in attributes:
            if not is_name(key):
                raise QueryError(f"invalid attribute key: {short_repr(key)}")
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise QueryError(f"revision must be an int >= 0, got {short_repr(revision)}")
        self._name = str(name)
        self._attrs = {str(key): check_value(attributes[key]) for key in sorted(attributes)}
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

"""Placeholder parameters on the wire: they travel as text and are typed again by the
query's own placeholders (``%d`` int, decimal or the language's hex ``0x8086``; ``%f``
float, ``%b`` bool, ``%s``/``%n`` text), so ``redis-cli GET "_ { port: %d }" 80`` and the
Python client bind the same values."""

from __future__ import annotations

import re
import sys

from octopus.errors import ParameterError, QueryError
from octopus.query.ast import Placeholder
from octopus.query.cache import bounded_lru
from octopus.query.parser import parse
from octopus.record import MAX_INT_DIGITS, int_from_decimal

__all__ = ["FLOAT_RE", "placeholder_kinds", "text", "typed_params", "wire_param"]

INT_RE = re.compile(rb"[+-]?[0-9]+\Z")
HEX_RE = re.compile(rb"-?0[xX][0-9a-fA-F]+\Z")     # the language's hex literal
# 10**MAX_INT_DIGITS has 3,572 hex digits: a longer hex text is out of range anyway.
_HEX_MAX = 3600
FLOAT_RE = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


def _kinds_size(args: tuple[str, int], kinds: tuple[str, ...]) -> int:
    # The query text is the key (up to the server's limit, megabytes); the kinds are
    # interned one-letter strings, 8 bytes a slot.
    return sys.getsizeof(args[0]) + 8 * len(kinds) + 200


@bounded_lru(maxsize=4096, maxbytes=8 << 20, weigh=_kinds_size)
def placeholder_kinds(query: str, max_length: int) -> tuple[str, ...]:
    """The kinds (``d f s b n``) of the query's placeholders, by parameter position."""
    parsed = parse(query, max_length=max_length)
    kinds = [""] * parsed.placeholders
    if isinstance(parsed.name, Placeholder):
        kinds[parsed.name.index] = parsed.name.kind
    for c in parsed.constraints:
        if isinstance(c.value, Placeholder):
            kinds[c.value.index] = c.value.kind
    return tuple(kinds)


def text(raw: bytes, what: str = "the query") -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise QueryError(f"{what} is not valid UTF-8") from None


def wire_param(kind: str, raw: bytes, index: int) -> object:
    """A parameter from its wire text, typed by its placeholder."""
    where = f"parameter {index + 1} (%{kind})"
    if kind == "d":
        # The range itself is checked where every %d is bound (octopus.query.ast).
        if len(raw) <= MAX_INT_DIGITS + 1 and INT_RE.match(raw):
            return int_from_decimal(raw.decode("ascii"))
        if len(raw) <= _HEX_MAX and HEX_RE.match(raw):
            return int(raw, 16)
        raise ParameterError(f"{where} must be an integer (decimal, or hex as 0x1F) of at "
                             f"most {MAX_INT_DIGITS} digits, got {raw[:40]!r}")
    if kind == "f":
        if len(raw) > 400 or not FLOAT_RE.match(raw):
            raise ParameterError(f"{where} must be a number, got {raw[:40]!r}")
        return float(raw)
    if kind == "b":
        if raw in (b"true", b"1"):
            return True
        if raw in (b"false", b"0"):
            return False
        raise ParameterError(f"{where} must be true or false, got {raw[:40]!r}")
    return text(raw, where)


def typed_params(query: str, raw: list[bytes], max_length: int
                 ) -> tuple[tuple[object, ...], list[bytes]]:
    """Type the first parameters of ``raw`` by the query's placeholders; return them
    and the arguments that follow (options)."""
    kinds = placeholder_kinds(query, max_length)
    n = len(kinds)
    if len(raw) < n:
        raise ParameterError(f"the query has {n} placeholder(s) but {len(raw)} "
                             "parameter(s) were given")
    return tuple(wire_param(k, raw[j], j) for j, k in enumerate(kinds)), raw[n:]

"""Every way a value enters has the same range and the same typed errors.

Integers have at most MAX_INT_DIGITS decimal digits whether they come as a decimal or
hex literal, a ``%d`` parameter (in process or over the wire), ``Record(...)`` or
``set_many``; outside it the caller gets a ParseError/ParameterError/QueryError and
nothing is stored. Bad arguments are QueryErrors (also ValueErrors), never a bare
ValueError/OverflowError/TypeError from Python's conversions.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

import octopus
from octopus import Atom, ParameterError, ParseError, QueryError, Record
from octopus.query.parser import parse
from octopus.record import MAX_INT_DIGITS, format_value, int_from_decimal, int_text
from octopus.server.params import wire_param

LARGEST = 10**MAX_INT_DIGITS - 1     # 4,300 nines: the largest integer value
TOO_BIG = 10**MAX_INT_DIGITS


@pytest.mark.parametrize("literal", [
    "0x" + "f" * 20_000,                   # finding 7: stored but unprintable before
    f"{TOO_BIG:#x}",
    f"-{TOO_BIG:#x}",
    "1" + "0" * MAX_INT_DIGITS,
    "-1" + "0" * MAX_INT_DIGITS,
])
def test_integer_literal_out_of_range_is_a_parse_error_and_stores_nothing(
        engine: octopus.Engine, literal: str) -> None:
    text = "poison { a: " + literal + " }"
    with pytest.raises(ParseError) as info:
        engine.set(text)
    assert (info.value.line, info.value.column) == (1, 13)
    assert len(str(info.value)) < 200
    assert engine.get_names("_") == []
    with pytest.raises(ParseError):
        engine.get_names("_ { a < " + literal + " }")


@pytest.mark.parametrize("literal", [f"{LARGEST:#x}", str(LARGEST), f"-{LARGEST:#x}",
                                     str(-LARGEST)])
def test_integers_at_the_bound_are_stored_and_printed(engine: octopus.Engine,
                                                      literal: str) -> None:
    stored = engine.set("big { a: " + literal + " }")
    got = engine.get("big")
    assert got == stored and abs(got["a"]) == LARGEST  # type: ignore[arg-type]
    assert parse(str(got)).constraints[0].value == got["a"]
    assert engine.get_names("_ { a: %d }", got["a"]) == ["big"]


def test_percent_d_refuses_integers_out_of_range(engine: octopus.Engine) -> None:
    for bad in (TOO_BIG, -TOO_BIG, 2**20_000):
        with pytest.raises(ParameterError) as info:
            engine.set("x { a: %d }", bad)
        assert len(str(info.value)) < 200
        with pytest.raises(ParameterError):
            engine.get_names("_ { a > %d }", bad)
    assert engine.get_names("_") == []
    assert engine.set("x { a: %d }", LARGEST)["a"] == LARGEST


def test_percent_f_with_a_huge_int_is_a_parameter_error(engine: octopus.Engine) -> None:
    with pytest.raises(ParameterError, match="float range"):
        engine.set("x { a: %f }", 10**400)
    assert engine.get_names("_") == []
    assert engine.set("x { a: %f }", 10**300)["a"] == 1e300


@pytest.mark.parametrize("query", ["x { a: %n }", "x { a: %s }", "%n", "%s { a: 1 }"])
def test_names_and_strings_given_a_huge_int_say_so_briefly(engine: octopus.Engine,
                                                            query: str) -> None:
    with pytest.raises(ParameterError) as info:
        engine.set(query, 10**5000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(("args", "what"), [
    (("Bad",), "name"),
    ((5,), "name"),
    (("x y",), "name"),
    (("true",), "name"),
    (("x", {"a": TOO_BIG}), "digits"),
    (("x", {"a": float("nan")}), "finite"),
    (("x", {"a": float("inf")}), "finite"),
    (("x", {"a": object()}), "object"),
    (("x", {"a": None}), "NoneType"),
    (("x", {"a": Atom("Not a name")}), "identifier"),
    (("x", {"a": "lone \udcff"}), "surrogate"),
    (("x", {"Bad": 1}), "key"),
    (("x", {1: 1}), "key"),
    (("x", [("a", 1)]), "mapping"),
    (("x", {}, -1), "revision"),
    (("x", {}, "1"), "revision"),
])
def test_record_constructor_raises_query_error(args: tuple[object, ...], what: str) -> None:
    with pytest.raises(QueryError, match=what) as info:
        Record(*args)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)  # the documented rule: also a ValueError
    assert len(str(info.value)) < 200


def test_record_constructor_accepts_every_value_kind() -> None:
    r = Record("x", {"i": LARGEST, "f": -0.5, "s": "it's é", "a": Atom("eth0"), "b": True})
    assert parse(str(r)).constraints[3].value == LARGEST


def test_set_many_refuses_an_integer_out_of_range(engine: octopus.Engine) -> None:
    with pytest.raises(QueryError):
        engine.set_many([("ok", {"a": 1}), ("bad", {"a": TOO_BIG})])
    assert engine.get_names("_") == []


def test_wire_parameters_follow_the_same_range() -> None:
    assert wire_param("d", str(LARGEST).encode(), 0) == LARGEST
    assert wire_param("d", b"-" + str(LARGEST).encode(), 0) == -LARGEST
    with pytest.raises(ParameterError):
        wire_param("d", b"9" * (MAX_INT_DIGITS + 2), 0)


@pytest.fixture
def low_digit_limit() -> Iterator[None]:
    """The interpreter's int/str digit limit lowered to its minimum (640)."""
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(old)


def test_integers_convert_whatever_the_interpreter_digit_limit(low_digit_limit: None) -> None:
    for n in (LARGEST, -LARGEST, 10**700 + 12345, -(10**1200) - 1, 0, -7, 10**600):
        text = int_text(n)
        assert format_value(n) == text
        assert int_from_decimal(text) == n
        with pytest.raises(ValueError):
            str(10**700)  # the limit really is lowered
    nines = "9" * MAX_INT_DIGITS
    q = parse("x { a: " + nines + " }")
    assert q.constraints[0].value == LARGEST
    assert str(q) == "x { a: " + nines + " }"
    assert str(Record("x", {"a": -LARGEST})) == "x { a: -" + nines + " }"

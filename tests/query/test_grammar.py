"""The grammar itself: no conflicts, nothing unused, and the parser's error details."""

from __future__ import annotations

import io

import ply.yacc as yacc

from octopus.errors import ParseError, QueryError
from octopus.query.ast import AnyName, Constraint, Name, Placeholder, Regex
from octopus.query.parser import Parser, parse


def test_grammar_builds_without_conflicts_or_unused_parts() -> None:
    sink = io.StringIO()
    log = yacc.PlyLogger(sink)
    Parser(debug=True, debuglog=yacc.NullLogger(), errorlog=log)
    messages = sink.getvalue()
    for bad in ("conflict", "unused", "not used", "unreachable", "infinite recursion",
                "WARNING", "ERROR"):
        assert bad not in messages, messages


def test_parse_tree_shapes() -> None:
    q = parse("r'^hw' { a: _, b: r'x', c == 1, d: %s }")
    assert q.name == Regex("^hw")
    assert q.constraints == (
        Constraint("a", "any", None),
        Constraint("b", "re", Regex("x")),
        Constraint("c", "eq", 1),
        Constraint("d", "is", Placeholder("s", 0)),
    )
    assert parse("_").name == AnyName()
    assert parse("abc").name == Name("abc")
    assert parse("%n { a: %d }").placeholders == 2


def test_parse_error_carries_line_column_and_text() -> None:
    try:
        parse("x {\n  a: 1,\n  b: 2 c\n}")
    except ParseError as e:
        assert (e.line, e.column, e.text) == (3, 8, "c")
        assert "line 3, column 8" in str(e)
    else:
        raise AssertionError("no ParseError")


def test_unknown_escape_names_the_escape() -> None:
    try:
        parse("x { a: 'a\\qb' }")
    except ParseError as e:
        assert e.text == "\\q"
    else:
        raise AssertionError("no ParseError")


def test_length_limit_and_input_types() -> None:
    parse("x { a: '" + "y" * 60_000 + "' }")
    for bad in ("x { a: '" + "y" * 70_000 + "' }", "x { a: '" + "é" * 40_000 + "' }"):
        try:
            parse(bad)
        except QueryError as e:
            assert "limit" in str(e)
        else:
            raise AssertionError("no QueryError")
    for wrong in (b"x", None, 5, ["x"]):
        try:
            parse(wrong)
        except QueryError:
            pass
        else:
            raise AssertionError(f"{wrong!r} accepted")


def test_lone_surrogate_is_a_parse_error() -> None:
    try:
        parse("x { a: '\udcff' }")
    except ParseError as e:
        assert (e.line, e.column) == (1, 9)
    else:
        raise AssertionError("no ParseError")


def test_huge_integer_literal_is_refused_cleanly() -> None:
    try:
        parse("x { a: " + "9" * 5000 + " }")
    except ParseError as e:
        assert "too long" in str(e)
    else:
        raise AssertionError("no ParseError")


def test_parses_are_memoised() -> None:
    text = "memo { a: 1 }"
    assert parse(text) is parse(text)

"""The fast path returns exactly what PLY returns, or declines (differential tests).

Texts are generated from the grammar (every value kind, escapes, whitespace,
placeholders, regexes, huge numbers, Unicode, lone surrogates), then mutated, plus
random strings over the language's characters. For each one, ``parse_fast`` must be
None or equal to PLY's tree node for node, type for type, position for position; and
``parse`` (memo, fast path, PLY) must give PLY's tree or PLY's error.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from octopus.errors import ParseError, QueryError
from octopus.query import fast
from octopus.query import parser as parser_module
from octopus.query.ast import Name, Placeholder, Query, Regex
from octopus.query.compile import compile_record
from octopus.query.fast import RecordReader, Row, parse_fast, parse_record, read_record
from octopus.query.parser import parse, parse_ply
from octopus.record import MAX_INT_DIGITS, Atom, Record, format_string, format_value

# --- comparing trees strictly ---------------------------------------------------------


def assert_same(a: Any, b: Any, path: str = "tree") -> None:
    """Equal and of the same types all the way down, positions included (dataclass
    equality alone would accept 1 == 1.0 == True, 'x' == Atom('x') and any pos)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, tuple):
        assert len(a) == len(b), f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert repr(a) == repr(b), f"{path}: {a!r} vs {b!r}"  # -0.0 is not 0.0
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def ply_outcome(text: str) -> Query | ParseError:
    try:
        return parse_ply(text)
    except ParseError as e:
        return e


def check_fast(text: str) -> Query | None:
    """The differential property; returns the fast result."""
    fast = parse_fast(text)
    if fast is not None:
        reference = ply_outcome(text)
        assert isinstance(reference, Query), f"fast path accepted {text!r}: {reference}"
        assert_same(fast, reference)
    return fast


def check_parse(text: str) -> None:
    """parse() gives PLY's result or PLY's error (after its own Unicode check)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(ParseError, match="surrogate"):
            parse(text)
        return
    reference = ply_outcome(text)
    try:
        got: Query | ParseError = parse(text)
    except ParseError as e:
        got = e
    if isinstance(reference, ParseError):
        assert isinstance(got, ParseError), f"{text!r}: parsed, PLY said {reference}"
        assert (got.reason, got.line, got.column, got.text) == \
            (reference.reason, reference.line, reference.column, reference.text)
    else:
        assert isinstance(got, Query), f"{text!r}: {got}"
        assert_same(got, reference)


# --- generating texts from the grammar ------------------------------------------------

WS = st.text(alphabet=" \t\r\n", max_size=3)
SOME_WS = st.sampled_from(["", " ", " ", "  ", "\n", "\t", "\r\n", " \n  "])
NAMES = st.from_regex(r"[a-z][A-Za-z0-9._\-]{0,10}", fullmatch=True)
ODD_NAMES = st.sampled_from(["true", "false", "r", "trueish", "false-1", "x_", "a.b-c_D9"])
NAME = st.one_of(NAMES, ODD_NAMES)
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)  # incl. surrogates


def hex_text(n: int) -> str:
    return ("-" if n < 0 else "") + f"{abs(n):#x}"


def ints() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(10**20), 10**20).map(str),
        st.integers(-(2**64), 2**64).map(hex_text),
        st.integers(-(2**1200), 2**1200).map(hex_text),
        st.integers(-(10**400), 10**400).map(str),
        st.integers(0, 16).map(lambda k: "0x" + "F" * k),     # "0x" alone is an error
        st.integers(MAX_INT_DIGITS - 2, MAX_INT_DIGITS + 2).map(lambda k: "9" * k),
        st.integers(295, 305).map(lambda k: "7" * k),          # around the fast path's limit
        st.integers(3570, 3575).map(lambda k: "-0x" + "f" * k),
        st.sampled_from(["0", "-0", "00", "007", "-01", "0x", "1_000", "٣", "+1", "--1"]),
    )


def floats() -> st.SearchStrategy[str]:
    return st.one_of(
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from([".5", "-.5", "0.0", "-0.0", "1e5", "1E+5", "2.5e-3", "1e400",
                         "-1e400", "00.5", "5.", "1.e5", "1e", "1.5e", "0e0", "01e5",
                         "1." + "0" * 400, "." + "9" * 50, "1.5.3", "1e5e5"]),
    )


def strings() -> st.SearchStrategy[str]:
    return st.one_of(
        TEXT.map(format_string),                                # canonical, escaped
        st.lists(st.sampled_from(["a", "é", "\\'", "\\\\", "\\n", "\\t", "\\r", "\\q",
                                  "\\", "'", "\n", "\udcff", "😀", " "]),
                 max_size=6).map(lambda parts: "'" + "".join(parts) + "'"),
    )


def regexes() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(["a", ".", "\\.", "\\'", "\\\\", "\\", "'", "^", "$",
                                     "(?i)", "é", "\n", " "]),
                    max_size=6).map(lambda parts: "r'" + "".join(parts) + "'")


PLACEHOLDERS = st.sampled_from(["%d", "%f", "%s", "%b", "%n", "%r", "%p", "%x", "%"])
VALUES = st.one_of(ints(), floats(), strings(), regexes(), NAME, PLACEHOLDERS,
                   st.sampled_from(["true", "false", "_", "ethernet", "-", "'"]))
OPS = st.sampled_from([":", ":", ":", "==", "!=", "<", "<=", ">", ">=", "=", "=<", "! ="])
NAME_PATTERNS = st.one_of(NAME, st.just("_"), regexes(), PLACEHOLDERS)


@st.composite
def grammar_texts(draw: st.DrawFn) -> str:
    """Grammar-shaped texts whose tokens are drawn from valid and invalid spellings
    alike (most are errors somewhere)."""
    parts = [draw(WS), draw(NAME_PATTERNS)]
    if draw(st.booleans()):
        parts += [draw(SOME_WS), "{"]
        items = draw(st.lists(st.tuples(NAME, OPS, VALUES), max_size=5))
        for i, (key, op, value) in enumerate(items):
            sep = "," if i else ""
            parts += [sep, draw(SOME_WS), key, draw(SOME_WS), op, draw(SOME_WS), value,
                      draw(SOME_WS)]
        if draw(st.integers(0, 9)) == 0:
            parts.append(",")                                   # trailing comma
        parts += ["}" if draw(st.integers(0, 19)) else "", draw(WS)]
    return "".join(parts)


# Valid texts, then at most one odd token in them: each way the fast path must decline
# (or must not) is met in an otherwise valid text, where nothing else hides it.
KEYS = NAMES.filter(lambda n: n not in ("true", "false"))
VALID_SCALARS = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.integers(-(10**400), 10**400).map(str),
    st.integers(-(2**1200), 2**1200).map(hex_text),
    st.sampled_from(["0", "-0", "0x0", "0XfF", "-0x10", "9" * MAX_INT_DIGITS,
                     "-0x" + "f" * 3570, "7" * 300, "7" * 301]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from([".5", "-.5", "0.0", "-0.0", "1e5", "1E+5", "2.5e-3", "0e0", "1.5E-07",
                     "1." + "0" * 400, "." + "9" * 50]),
    TEXT.map(format_string),
    st.lists(st.sampled_from(["a", "é", "\\'", "\\\\", "\\n", "\\t", "\\r", "\n", "😀"]),
             max_size=5).map(lambda parts: "'" + "".join(parts) + "'"),
    KEYS, st.sampled_from(["true", "false", "truex", "false.1", "%d", "%f", "%s", "%b", "%n",
                           "%r", "%p"]),
)
VALID_REGEXES = st.lists(st.sampled_from(["a", ".", "\\.", "\\'", "\\\\", "\\q", "^", "$",
                                          "é", "\n", " ", "(?i)"]),
                         max_size=5).map(lambda parts: "r'" + "".join(parts) + "'")
VALID_OPS = st.sampled_from([":", ":", ":", "==", "!=", "<", "<=", ">", ">="])
VALID_NAME_PATTERNS = st.one_of(KEYS, st.just("_"), VALID_REGEXES,
                                st.sampled_from(["%s", "%n", "%r", "%p"]))
ODD_VALUES = st.sampled_from([
    "'a\\qb'", "'\\x'", "'\\'", "1e400", "-1e400", "00.5", "01", "-007", "0x", "٣", "1٣",
    "1" + "0" * MAX_INT_DIGITS, "0x" + "f" * 3600, "1.e5", "5.", "'open", "r'open", "%x", "%",
    "--1", "+1", "1_0", "1e", "1.5e", ".", "-", "0x1g", "12abc", "'a'b'", "r'a'b'"])
ODD_KEYS = st.sampled_from(["true", "false", "_a", "A", "1a", "_", "'a'", "%s"])
ODD_OPS = st.sampled_from(["=", "=<", "=>", "<>", "::", "! =", ""])
ODD_NAME_PATTERNS = st.sampled_from(["true", "false", "%d", "%f", "%b", "A", "_x", "r'x",
                                     "'x'", "1", ""])


@st.composite
def near_valid_texts(draw: st.DrawFn) -> str:
    n = draw(st.integers(0, 5))
    odd = draw(st.integers(-1, 3 * n + 1))      # which token is odd (-1: none)
    name = draw(ODD_NAME_PATTERNS if odd == 3 * n else VALID_NAME_PATTERNS)
    parts = [draw(WS), name, draw(SOME_WS)]
    if n or draw(st.booleans()):
        parts.append("{")
        for i in range(n):
            key = draw(ODD_KEYS if odd == 3 * i else KEYS)
            op = draw(ODD_OPS if odd == 3 * i + 1 else VALID_OPS)
            if odd == 3 * i + 2:
                value = draw(ODD_VALUES)
            elif op == ":":
                value = draw(st.one_of(VALID_SCALARS, VALID_REGEXES, st.just("_")))
            else:
                value = draw(VALID_SCALARS)
            parts += ["," if i else "", draw(SOME_WS), key, draw(SOME_WS), op,
                      draw(SOME_WS), value, draw(SOME_WS)]
        parts += ["," if odd == 3 * n + 1 and n else "", "}", draw(WS)]
    return "".join(parts)


ALPHABET = "{}:,'\\r%_-.0123456789eExX \t\n\r<>=!aZbt_٣\udcff\x00\x0b😀"


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.one_of(grammar_texts(), near_valid_texts()))
    for _ in range(draw(st.integers(1, 3))):
        if not text:
            break
        i = draw(st.integers(0, len(text)))
        action = draw(st.integers(0, 3))
        if action == 0:
            text = text[:i] + text[i + 1:]
        elif action == 1:
            text = text[:i] + draw(st.sampled_from(ALPHABET)) + text[i:]
        elif action == 2:
            j = draw(st.integers(i, len(text)))
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i]
    return text


@st.composite
def records(draw: st.DrawFn) -> Record:
    values = st.one_of(st.integers(-(10**80), 10**80),
                       st.floats(allow_nan=False, allow_infinity=False),
                       st.text(st.characters(codec="utf-8"), max_size=10),
                       NAMES.filter(lambda n: n not in ("true", "false")).map(Atom),
                       st.booleans())
    keys = NAMES.filter(lambda n: n not in ("true", "false"))
    name = draw(keys)
    return Record(name, draw(st.dictionaries(keys, values, max_size=6)))


# --- the properties -------------------------------------------------------------------


@settings(max_examples=1500)
@given(grammar_texts())
@example("x { a: 1 }")
@example("r'x'")
@example("r'x' { a: r'y', b: _ }")
@example("x{a:'it\\'s',b:-.5e3,c:0XfF,d:%n}")
@example("   _{a0000:   _{a0000:0}")  # found by hypothesis: "{" where "," belongs
def test_grammar_texts(text: str) -> None:
    check_fast(text)
    check_parse(text)


@settings(max_examples=1500)
@given(near_valid_texts())
def test_near_valid_texts(text: str) -> None:
    check_fast(text)
    check_parse(text)


@settings(max_examples=1500)
@given(mutated())
def test_mutated_texts(text: str) -> None:
    check_fast(text)
    check_parse(text)


@settings(max_examples=500)
@given(st.text(alphabet=ALPHABET, max_size=30))
def test_random_texts(text: str) -> None:
    check_fast(text)
    check_parse(text)


@given(NAMES)
def test_a_bare_name_never_reaches_ply(name: str) -> None:
    fast = check_fast(name)
    assert (fast is None) == (name in ("true", "false"))


@given(records())
def test_canonical_records_take_the_fast_path(record: Record) -> None:
    text = str(record)
    fast = check_fast(text)
    assert fast is not None, text
    assert str(fast) == text


@given(grammar_texts())
def test_valid_canonical_text_takes_the_fast_path(text: str) -> None:
    """Whatever PLY accepts prints canonically, and the canonical text is fast unless
    it holds a number of more than 300 characters."""
    q = ply_outcome(text)
    if isinstance(q, Query):
        canonical = str(q)
        fast = check_fast(canonical)
        long_number = any(isinstance(c.value, int) and len(format_value(c.value)) > 300
                          for c in q.constraints)
        assert (fast is None) == long_number, canonical


@pytest.mark.parametrize("text", [
    "hw.pci.device.7", "_", "r'^hw'", "%n", "%s { a: 1 }", "x {}", " x { } ",
    "x { a: 1, b: -2.5, c: 'it\\'s', d: eth0, e: true, f: false, g: %d, h: _, i: r'q' }",
    "_ { a == 1, b != 2, c < 3, d <= 4, e > 5, f >= 6 }",
    "x\n{\n\ta :\r\n1 ,b:2}\n",
])
def test_dominant_forms_take_the_fast_path(text: str) -> None:
    assert check_fast(text) is not None


def test_a_bare_name_parses_without_ply(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str) -> Query:
        raise AssertionError(f"PLY was asked to parse {text!r}")

    monkeypatch.setattr(parser_module, "parse_ply", refuse)
    parser_module._memo.clear()
    assert parse("never.seen.before.42").constraints == ()
    assert str(parse("hw.pci.device.9 { bus: 0, label: 'x' }")) == \
        "hw.pci.device.9 { bus: 0, label: 'x' }"
    with pytest.raises(AssertionError, match="PLY was asked"):
        parse("x { a: 01 }")  # errors always come from PLY


def test_pathological_texts_are_linear() -> None:
    """Long runs that a backtracking or searching matcher would make quadratic."""
    for text in ("x { " + "a" * 60_000 + " }", "x {" + " " * 60_000 + "a: 1",
                 "x { a: '" + "\\'" * 30_000 + " }", "x { " + "a: 1, " * 10_000 + "}"):
        check_fast(text)
        with pytest.raises(QueryError):
            parse(text)


# --- parse_record: the bulk load's fast path ------------------------------------------


def record_reference(text: str) -> tuple[str, dict[str, Any]] | None:
    """What PLY's tree says a record to store is, for a text of ``key: literal`` items
    only (None for anything else: an error, a condition, a placeholder, ...)."""
    try:
        q = parse_ply(text)
    except ParseError:
        return None
    if not isinstance(q.name, Name) or q.placeholders:
        return None
    attrs: dict[str, Any] = {}
    for c in q.constraints:
        if c.op != "is" or isinstance(c.value, Placeholder | Regex) or c.key in attrs:
            return None
        attrs[c.key] = c.value
    return q.name.text, dict(sorted(attrs.items()))


def check_record(text: str, max_length: int = 65536) -> tuple[str, dict[str, Any]] | None:
    fast = parse_record(text, max_length)
    if fast is not None:
        reference = record_reference(text)
        assert reference is not None, f"parse_record accepted {text!r}"
        assert_same(fast[0], reference[0])
        assert list(fast[1]) == list(reference[1]), text            # sorted the same
        assert_same(tuple(fast[1].values()), tuple(reference[1].values()))
        cr = compile_record(text, max_length=max_length)            # what a set stores
        assert cr.name == fast[0] and not cr.conditions
        assert_same(tuple(cr.attributes.items()), tuple(fast[1].items()))
    return fast


@settings(max_examples=1500)
@given(st.one_of(grammar_texts(), near_valid_texts(), mutated()))
@example("x{a:'it\\'s',b:-.5e3,c:0XfF,d:eth0, e :true,f:false}")
@example("x { b: 1, a: 2 }")
@example("x { a: 1, a: 1 }")
@example("true { a: 1 }")
@example("x { true: 1 }")
@example("x { a: r'y' }")
@example("x { a: 'b\\q' }")
@example("x {}")
def test_parse_record_is_ply_or_declines(text: str) -> None:
    check_record(text)


@settings(max_examples=300)
@given(st.text(alphabet=ALPHABET, max_size=30))
def test_parse_record_on_random_texts(text: str) -> None:
    check_record(text)


@given(records())
def test_canonical_records_take_the_record_fast_path(record: Record) -> None:
    text = str(record)
    fast = check_record(text)
    long_number = any(type(v) is int and len(format_value(v)) > 300
                      for v in record.attributes.values())
    assert (fast is None) == long_number, text
    if fast is not None:
        assert Record(*fast) == record


def test_parse_record_declines_texts_over_the_limit() -> None:
    assert parse_record("x { a: 'éé' }", 13) is None          # 15 bytes of UTF-8
    assert parse_record("x { a: 'éé' }", 15) == ("x", {"a": "éé"})
    assert parse_record("x { a: 'ab' }", 12) is None
    assert parse_record("x { a: '\udcff' }", 100) is None     # PLY reports it


# --- RecordReader: the bulk load's reader, shape by shape ------------------------------


def check_read(reader: RecordReader, text: str, max_length: int = 65536) -> Row | None:
    """The reader gives parse_record's result (itself checked against PLY), encoded as
    the store takes it, whatever shapes it learned from the texts before."""
    got = reader.read(text)
    want = check_record(text, max_length)
    if want is None:
        assert got is None, f"read {text!r}"
        return None
    assert got is not None, f"declined {text!r}"
    keys, row = got
    name, attrs = want
    assert keys == tuple(attrs), text
    assert_same(row[0], name)
    assert len(row) == len(attrs) + 1, text
    for value, expected in zip(row[1:], attrs.values(), strict=True):
        assert_stored(value, expected, text)
    return got


def assert_stored(stored: Any, value: Any, text: str) -> None:
    """``stored`` is ``value`` in the form the store takes (an identifier as [text])."""
    if type(value) is Atom:
        assert type(stored) is list and len(stored) == 1, text
        assert_same(stored[0], str.__str__(value))
    else:
        assert_same(stored, value)


@st.composite
def same_shape_texts(draw: st.DrawFn) -> list[str]:
    """Texts with the same keys (mostly in canonical order) and values of any kind,
    odd ones included: after the first, a reader tries the shape it learned."""
    keys = draw(st.lists(KEYS, max_size=5, unique=True))
    if draw(st.integers(0, 3)):
        keys.sort()
    value = st.one_of(VALID_SCALARS, ODD_VALUES, st.sampled_from(["true", "false", "x"]))
    space = st.one_of(st.just(" "), SOME_WS)
    texts = []
    for _ in range(draw(st.integers(2, 8))):
        parts = [draw(st.one_of(st.just(""), WS)), draw(st.one_of(KEYS, ODD_NAME_PATTERNS)),
                 draw(space), "{"]
        for i, key in enumerate(keys):
            parts += ["," if i else "", draw(space), key, draw(st.one_of(st.just(""), WS)),
                      ":", draw(space), draw(value), draw(st.one_of(st.just(""), WS))]
        parts += ["}" if draw(st.integers(0, 19)) else "", draw(st.one_of(st.just(""), WS))]
        texts.append("".join(parts))
    return texts


@settings(max_examples=400)
@given(same_shape_texts())
@example(["x { a: 1, b: 'c' }", "true { a: 1, b: 'c' }", "y { a: 0x1, b: 'c' }",
          "y { a: 1.5, b: 'c' }", "y { a: 01, b: 'c' }", "y { a: 1, b: 'c\\'' }",
          "y { a: 1, b: 'c' } ", "y{a:-0,b:'é'}", "y { a: 1, b: true }"])
@example(["x { a: true, b: e }", "x { a: false, b: true }", "x { a: truex, b: e }",
          "x { a: 1, b: false.1 }", "x { a: true, b: %d }"])
@example(["x { a: 1 }", "x { a: " + "9" * 18 + " }", "x { a: " + "9" * 19 + " }",
          "x { a: -" + "9" * 18 + " }"])
def test_the_reader_is_parse_record_shape_after_shape(texts: list[str]) -> None:
    reader = RecordReader(65536)
    for text in texts:
        check_read(reader, text)


@settings(max_examples=150)
@given(st.lists(records(), min_size=2, max_size=6), st.data())
def test_the_reader_on_canonical_records_of_one_shape(batch: list[Record],
                                                      data: st.DataObject) -> None:
    keys = sorted(batch[0].attributes)
    reader = RecordReader(65536)
    for record in batch:
        values = list(record.attributes.values()) or [1]
        attrs = {k: data.draw(st.sampled_from(values)) for k in keys}
        check_read(reader, str(Record(record.name, attrs)))


def test_the_reader_matches_a_learned_shape_without_reading_items(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reader = RecordReader(65536)
    assert check_read(reader, "a { f: 1.5, i: eth0, n: 1, s: 'x', t: true }") is not None
    calls: list[str] = []
    real = RecordReader._read_items

    def counted(self: RecordReader, text: str) -> Row | None:
        calls.append(text)
        return real(self, text)

    monkeypatch.setattr(RecordReader, "_read_items", counted)
    assert reader.read("b { f: -2e3, i: lo, n: -7, s: 'y z', t: false }") == \
        (("f", "i", "n", "s", "t"), ["b", -2e3, ["lo"], -7, "y z", False])
    assert calls == []
    assert reader.read("c { f: 1.0, i: lo, n: 'x', s: 'y', t: false }") is not None
    assert len(calls) == 1                      # another shape: read item by item
    assert reader.read("b { a: 1 }\n") == (("a",), ["b", 1])


def test_the_reader_keeps_and_compiles_a_bounded_number_of_shapes() -> None:
    reader = RecordReader(65536)
    for i in range(300):
        assert reader.read(f"x {{ k{i}: 1 }}") == ((f"k{i}",), ["x", 1])
    assert len(reader._book.shapes) <= 64
    assert reader._book.compiles == 64               # 64 at once, then one per 1,000 texts
    for i in range(2000):
        reader.read(f"x {{ j{i}: 1 }}")
    assert reader._book.compiles == 64 + 2
    assert len(reader._book.shapes) <= 64


def test_the_reader_declines_texts_over_the_limit() -> None:
    reader = RecordReader(13)
    assert reader.read("x { a: 'ab' }") == (("a",), ["x", "ab"])
    assert reader.read("x { a: 'abc' }") is None            # 14 bytes
    assert reader.read("x { a: 'é' }") == (("a",), ["x", "é"])
    assert reader.read("x { a: 'éé' }") is None             # 15 bytes of UTF-8
    assert reader.read("x { a: '\udcff' }") is None         # PLY reports it


def check_read_lines(texts: list[str]) -> bool:
    """RecordReader.read_lines, after the first text taught a reader its shape, gives
    for the other texts exactly what read() gives for each (every value of the same
    type), or declines; whether it read them."""
    reader, one_by_one = RecordReader(65536), RecordReader(65536)
    reader.read(texts[0])
    one_by_one.read(texts[0])
    got = reader.read_lines(texts[1:])
    if got is None:
        return False
    keys, columns = got
    assert len(columns) == len(keys) + 1
    for i, text in enumerate(texts[1:]):
        want = one_by_one.read(text)
        assert want is not None, f"read_lines read {text!r}, read() declines it"
        assert want[0] == keys
        for value, expected in zip((column[i] for column in columns), want[1],
                                   strict=True):
            assert_same(value, expected)
    return True


@settings(max_examples=400)
@given(same_shape_texts())
@example(["x { a: 1, b: 'c' }", "y { a: 2, b: 'd' }", "z { a: -3, b: '' }"])
@example(["x { a: 1 }", "y { a: 2 }\nz { a: 3 }"])         # a line break: declined
@example(["x { a: 1 }", "y { a: 2 }\n garbage"])
@example(["x { a: 1 }", "y { a: 2 }\n", "z { a: 3 }"])
@example(["x { a: 'p' }", "y { a: 'q\n' }"])
@example(["x { a: 1 }", "y { a: 2 }", ""])
@example(["x { a: 1, b: 2.5 }", "y { a: 2, b: 1e400 }"])   # not finite: declined
def test_read_lines_is_read_line_by_line(texts: list[str]) -> None:
    check_read_lines(texts)


@settings(max_examples=150)
@given(st.lists(records(), min_size=2, max_size=6), st.data())
def test_read_lines_reads_canonical_records_of_one_shape(batch: list[Record],
                                                         data: st.DataObject) -> None:
    keys = sorted(batch[0].attributes)
    texts = []
    for record in batch:
        values = list(record.attributes.values()) or [1]
        attrs = {k: data.draw(st.sampled_from(values)) for k in keys}
        texts.append(str(Record(record.name, attrs)))
    check_read_lines(texts)


def test_read_lines_reads_a_block_of_one_shape_and_declines_the_rest() -> None:
    texts = [f"d.{i} {{ bus: {i}, c: 'C', id: x{i}, ok: true, v: 0x1{i} }}" for i in range(5)]
    assert check_read_lines(texts)
    reader = RecordReader(65536)
    reader.read(texts[0])
    assert reader.read_lines(texts[1:3]) == (
        ("bus", "c", "id", "ok", "v"),
        [["d.1", "d.2"], [1, 2], ["C", "C"], [["x1"], ["x2"]], [True, True], [17, 18]])
    assert reader.read_lines(["d.9 { bus: 1 }"]) is None             # another shape
    assert reader.read_lines([texts[1], "  "]) is None               # a blank line
    assert reader.read_lines([texts[1] + "\n" + texts[2]]) is None   # two in one line
    assert reader.read_lines(["d.1 { bus: 1, c: 'é', id: x, ok: true, v: 1 }"]) is None
    assert RecordReader(65536).read_lines(texts) is None            # no shape yet
    short = RecordReader(40)
    short.read("a { s: 'x' }")
    assert short.read_lines(["b { s: 'y' }", "c { s: '" + "z" * 40 + "' }"]) is None


@settings(max_examples=100)
@given(st.lists(same_shape_texts(), min_size=2, max_size=4))
def test_the_reader_is_parse_record_with_shapes_interleaved(groups: list[list[str]]) -> None:
    reader = RecordReader(65536)
    for i in range(max(map(len, groups))):
        for texts in groups:
            if i < len(texts):
                check_read(reader, texts[i])


def test_the_reader_learns_shapes_of_keys_out_of_order(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = RecordReader(65536)
    assert reader.read("a { s: 'x', n: 0x10, f: 1.5, i: eth0, t: true, m: -3 }") == \
        (("f", "i", "m", "n", "s", "t"), ["a", 1.5, ["eth0"], -3, 16, "x", True])
    calls = count_item_reads(monkeypatch)
    assert reader.read("b {s:'y z',n:-0XfF, f: -2e3,i: lo,t: false,m: 7}") == \
        (("f", "i", "m", "n", "s", "t"), ["b", -2e3, ["lo"], 7, -255, "y z", False])
    assert reader.read("c { n: 1 }") == (("n",), ["c", 1])
    assert reader.read("d { s: 'x', n: 0x10, f: 1.5, i: eth0, t: true, m: -3 }") is not None
    assert calls == ["c { n: 1 }"]   # the other shape was found again by its first key


def count_item_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts read item by item from now on (by a reader or read_record)."""
    calls: list[str] = []
    real = fast._items

    def counted(text: str, max_length: int) -> Any:
        calls.append(text)
        return real(text, max_length)

    monkeypatch.setattr(fast, "_items", counted)
    return calls


# --- read_record: a set's new text, with the shapes of the texts before ----------------


@contextmanager
def fresh_shapes() -> Iterator[fast._Shapes]:
    """read_record (and compile_record) with no shape learned yet."""
    book = fast._Shapes()
    with mock.patch.object(fast, "_SHARED", book):
        yield book


def check_read_record(text: str, max_length: int = 65536) -> fast.ReadRecord | None:
    """read_record gives parse_record's result (itself checked against PLY) and the
    attributes as stored pairs, whatever shapes it learned from the texts before."""
    got = read_record(text, max_length)
    want = check_record(text, max_length)
    if want is None:
        assert got is None, f"read {text!r}"
        return None
    assert got is not None, f"declined {text!r}"
    name, attrs, pairs = got
    assert_same(name, want[0])
    assert list(attrs) == list(want[1]), text
    assert_same(tuple(attrs.values()), tuple(want[1].values()))
    assert [k for k, _ in pairs] == list(attrs), text
    for (_, stored), value in zip(pairs, attrs.values(), strict=True):
        assert_stored(stored, value, text)
    return got


@settings(max_examples=150)
@given(st.lists(same_shape_texts(), min_size=1, max_size=4))
@example([["x { b: 1, a: 'c' }", "y { b: 2, a: 'd' }", "y { b: 0x2, a: 'd' }",
           "y { b: 2, a: e }", "y { a: 'd', b: 2 }", "y { b: 2, a: 'd', }"]])
@example([["x { a: 0x" + "f" * 16 + " }", "x { a: 0x" + "f" * 17 + " }",
           "x { a: -0x" + "F" * 16 + " }", "x { a: 0x" + "0" * 17 + " }"]])
@example([["x { b: 1, a: 2 }", "x { b: 1 , a: 2 }"], ["x { b: true, c: 2 }"],
          ["x { b: 'z', a: 2 }"], ["x { b: 1.5, a: 2 }"], ["x { b: %d, a: 2 }"]])
def test_read_record_is_ply_with_shapes_interleaved(groups: list[list[str]]) -> None:
    with fresh_shapes():
        for i in range(max(map(len, groups))):
            for texts in groups:
                if i < len(texts):
                    check_read_record(texts[i])


@st.composite
def near_a_learned_text(draw: st.DrawFn) -> list[str]:
    """A valid record text (keys in any order), then texts one edit away from it: each
    meets the shape the first taught where it differs least."""
    keys = draw(st.lists(KEYS, min_size=1, max_size=5, unique=True))
    text = draw(NAMES) + " { " + ", ".join(
        f"{k}: {draw(st.one_of(VALID_SCALARS, st.sampled_from(['true', 'x'])))}"
        for k in keys) + " }"
    texts = [text]
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(text)))
        action = draw(st.integers(0, 3))
        if action == 0:
            edited = text[:i] + text[i + 1:]
        elif action == 1:
            edited = text[:i] + draw(st.sampled_from(ALPHABET + "'")) + text[i:]
        elif action == 2:
            edited = text[:i] + draw(st.one_of(VALID_SCALARS, ODD_VALUES, ODD_KEYS)) + text[i:]
        else:
            edited = text[:i] + text[i + 1:i + 2] + text[i:i + 1] + text[i + 2:]
        texts.append(edited)
    return texts


@settings(max_examples=400)
@given(near_a_learned_text())
def test_read_record_on_texts_near_a_learned_shape(texts: list[str]) -> None:
    with fresh_shapes():
        for text in texts:
            check_read_record(text)


@settings(max_examples=300)
@given(st.one_of(grammar_texts(), near_valid_texts(), mutated(),
                 records().map(str)))
@example("x { a: " + "9" * 18 + ", b: -" + "9" * 18 + ", c: 0x" + "f" * 16 + " }")
@example("x { a: " + "9" * 19 + ", b: -" + "9" * 19 + ", c: -0X" + "F" * 17 + " }")
@example("x { c: 'it\\'s', b: '', a: -.5e3, d: eth0, e: false, f: 'a\nb' }")
def test_a_text_read_once_is_matched_by_its_shape_after(text: str) -> None:
    with fresh_shapes():
        first = check_read_record(text)
        if first is None or not text.isascii() or len(first[1]) > 64:
            return
        with mock.patch.object(fast, "_items", side_effect=AssertionError(text)):
            again = read_record(text, 65536)
        assert again is not None
        assert_same(tuple(again[1].items()), tuple(first[1].items()))


def test_a_set_of_a_new_text_of_a_known_shape_is_not_read_item_by_item(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with fresh_shapes():
        first = compile_record("dev.1 { vendor: 0x8086, device_id: 1, label: 'dev 1' }")
        calls = count_item_reads(monkeypatch)
        cr = compile_record("dev.2 { vendor: 0x10de, device_id: 2, label: 'dev 2' }")
        assert calls == []
        assert cr.name == "dev.2" and not cr.conditions
        assert list(cr.attributes.items()) == [("device_id", 2), ("label", "dev 2"),
                                               ("vendor", 0x10DE)]
        assert cr.pairs == list(cr.attributes.items())
        assert list(first.attributes) == list(cr.attributes)


def test_read_record_keeps_and_compiles_a_bounded_number_of_shapes() -> None:
    with fresh_shapes() as book:
        for i in range(300):
            assert read_record(f"x {{ k{i % 7}: 1, j{i}: 2 }}", 65536) is not None
        assert len(book.shapes) <= 64
        assert book.compiles == 64                  # 64 at once, then one per 1,000 texts
        for i in range(2000):
            read_record(f"x {{ k{i % 7}: 1, i{i}: 2 }}", 65536)
        assert book.compiles == 64 + 2
        assert len(book.shapes) <= 64
        kept = set(map(id, book.shapes.values()))
        assert all(0 < len(same) <= 4 and kept.issuperset(map(id, same))
                   for same in book.by_first.values())
        assert book.last is None or id(book.last) in kept


def test_read_record_declines_texts_over_the_limit() -> None:
    with fresh_shapes():
        assert read_record("x { a: 'ab' }", 13) == ("x", {"a": "ab"}, [("a", "ab")])
        assert read_record("x { a: 'abc' }", 13) is None           # 14 bytes
        assert read_record("x { a: 'é' }", 13) == ("x", {"a": "é"}, [("a", "é")])
        assert read_record("x { a: 'éé' }", 13) is None            # 15 bytes of UTF-8
        assert read_record("x { a: '\udcff' }", 100) is None      # PLY reports it


def test_read_record_is_safe_from_many_threads() -> None:
    """Threads reading texts of 100 shapes at once (so shapes are learned and dropped
    while others match) all get parse_record's result."""
    texts = [f"t{s}.{i} {{ k{s % 10}: {i}, v: 'x{i}', s{s}: 0x{i:x}, b: true }}"
             for i in range(40) for s in range(100)]
    expected = [parse_record(t, 65536) for t in texts]
    failures: list[str] = []

    def work(offset: int) -> None:
        for j in range(len(texts)):
            k = (j * 7 + offset) % len(texts)
            got = read_record(texts[k], 65536)
            if got is None or (got[0], got[1]) != expected[k] or \
                    [type(v) for v in got[1].values()] != \
                    [type(v) for v in expected[k][1].values()]:  # type: ignore[index]
                failures.append(texts[k])

    with fresh_shapes() as book:
        threads = [threading.Thread(target=work, args=(o,)) for o in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert len(book.shapes) <= 64

"""A fast path for the texts that dominate: it returns what the PLY parser returns, or
declines.

Records and queries not seen before are parsed at the rate data arrives, and a PLY
parse costs ~100 µs. Most texts are a bare name (``hw.pci.device.7``), a record in
canonical form (``name { k: v, ... }``, as ``str(Record)`` prints it, or written by
hand with other spacing) or a simple query (``_ { key: value }``, ``_ { k > v }``).
:func:`parse_fast` reads those (in fact every valid text, except numbers written with
more than 300 characters) with a few anchored regular expressions and returns the
:class:`~octopus.query.ast.Query` the PLY parser (the grammar's authority,
:mod:`octopus.query.parser`) would return for the same text: the same tree, the same
value types (``int``/``float``/``bool``/``str``/:class:`~octopus.record.Atom`), the
same placeholder numbering and the same positions.

Guarantees:

1. ``parse_fast(text)`` is either None or equal, node for node and type for type, to
   the PLY parser's result; ``tests/query/test_fast.py`` checks it against PLY on
   generated valid and invalid texts (hypothesis).
2. It never raises for any ``str``: whenever it is not sure (an error, an escape it
   does not know, a long number, a token PLY would split differently) it returns None
   and the caller asks PLY, so every error message and position comes from PLY.
3. It keeps no state: it is safe to call from any thread without a lock.

Each token pattern below is PLY's token rule (octopus/query/lexer.py) narrowed to the
valid spellings: a number with leading zeros, for instance, is simply not matched, so
the text goes to PLY, which reports it. Every token must be followed by what the
grammar allows next (whitespace, then ``{``, ``,``, ``}`` or the end), which is what
makes a regex match here the same tokenization as PLY's.
"""

from __future__ import annotations

import math
import operator
import re
import threading
from collections.abc import Callable
from typing import Any

from octopus.query.ast import (
    AnyName,
    Constraint,
    Name,
    Placeholder,
    Query,
    Regex,
    make_constraint,
    make_name,
    make_query,
)
from octopus.record import MAX_NAME_LENGTH, Atom, Value

__all__ = ["ReadRecord", "RecordReader", "Row", "parse_fast", "parse_name", "parse_record",
           "read_record"]

# Possessive quantifiers: every token below ends where PLY's would, so giving characters
# back could never help a match; not trying keeps each match linear.
_WS = r"[ \t\r\n]*+"                      # PLY's t_ignore plus t_newline, nothing else
# At most MAX_NAME_LENGTH characters: a longer name stops matching where a name may not
# stop, so the text declines and PLY reports the length.
_NAME = r"[a-z][A-Za-z0-9._\-]{0," + str(MAX_NAME_LENGTH - 1) + "}+"
_QUOTED = r"[^'\\]*+(?:\\.[^'\\]*+)*+"    # a string or regex body, escapes paired
_DIGITS = r"(?:0|[1-9][0-9]*+)"           # no leading zeros
_EXPONENT = r"[eE][+-]?[0-9]++"
_KEYWORDS = frozenset({"true", "false"})
# Longer numbers decline: PLY checks their range (and they are never the common case).
_MAX_NUMBER_TEXT = 300

_BARE_NAME = re.compile(_NAME)
# The name pattern, in PLY's order (a regex before a name: "r'x'" is not the name "r"),
# then "{" (and "}" at once for an empty body). Groups: regex body, name, "_", the
# placeholder's kind, "{", "}".
_HEAD = re.compile(
    _WS + r"(?:r'(" + _QUOTED + r")'|(" + _NAME + r")|(_)|%([snrp]))" + _WS +
    r"(?:(\{)" + _WS + r"(?:(\})" + _WS + r")?)?", re.S)
# One item with the separator before it ("{" for the first, "," for the others; the
# loop checks which). The value's alternatives are PLY's token rules in PLY's order;
# exactly one matches, and as the value's group is the last group, ``lastindex`` says
# which.
_ITEM = re.compile(
    r"([{,])" + _WS + r"(" + _NAME + r")" + _WS + r"(:|==|!=|<=|>=|<|>)" + _WS +
    r"(?:"
    r"r'(" + _QUOTED + r")'"                                        # 4 regex body
    r"|'(" + _QUOTED + r")'"                                        # 5 string body
    r"|(-?(?:" + _DIGITS + r"\.[0-9]++(?:" + _EXPONENT + r")?"      # 6 float
    r"|\.[0-9]++(?:" + _EXPONENT + r")?"
    r"|" + _DIGITS + _EXPONENT + r"))"
    r"|(-?0[xX][0-9a-fA-F]++)"                                      # 7 hex integer
    r"|(-?" + _DIGITS + r")"                                        # 8 decimal integer
    r"|(" + _NAME + r")"                                            # 9 identifier, true, false
    r"|(_)"                                                         # 10 "key: _"
    r"|%([dfsbnrp])"                                                # 11 placeholder
    r")" + _WS, re.S)
_REGEX, _STRING, _FLOAT, _HEX, _INT, _IDENT, _ANY, _PLACEHOLDER = range(4, 12)
_CLOSE = re.compile(r"\}" + _WS)

_OPS = {":": "is", "==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_ESCAPE = re.compile(r"\\(.)", re.S)
_ESCAPES = {"'": "'", "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def parse_name(text: str) -> Query | None:
    """The PLY parser's result for a bare record name (``hw.pci.device.7``), else None."""
    if _BARE_NAME.fullmatch(text) is None or text in _KEYWORDS:
        return None
    return make_query(make_name(text), (), 0)


def parse_fast(text: str) -> Query | None:
    """The PLY parser's result for ``text``, or None to say "ask PLY"."""
    if _BARE_NAME.fullmatch(text):
        return None if text in _KEYWORDS else make_query(make_name(text), (), 0)
    head = _HEAD.match(text)
    if head is None:
        return None
    name_regex, name_text, any_name, name_kind, brace, empty = head.groups()
    placeholders = 0
    name: Name | AnyName | Regex | Placeholder
    if name_text is not None:
        if name_text in _KEYWORDS:
            return None
        name = make_name(name_text)
    elif any_name is not None:
        name = AnyName()
    elif name_kind is not None:
        name = Placeholder(name_kind, 0)
        placeholders = 1
    else:
        name = Regex(name_regex)
    if brace is None or empty is not None:
        return make_query(name, (), placeholders) if head.end() == len(text) else None
    constraints: list[Constraint] = []
    end = head.start(5)
    # Each match starts where the previous one ended (a scanner anchors them), so the
    # items cover the body with nothing skipped.
    next_item: Callable[[], re.Match[str] | None] = \
        _ITEM.scanner(text, end).match  # type: ignore[attr-defined]  # not in typeshed
    while (m := next_item()) is not None:
        kind: int = m.lastindex  # type: ignore[assignment]  # a value group always matches
        separator, key, op, token = m.group(1, 2, 3, kind)
        if key in _KEYWORDS or (separator == "{" and constraints):
            return None
        op = _OPS[op]
        value: object
        if kind == _INT:
            if len(token) > _MAX_NUMBER_TEXT:
                return None
            value = int(token)
        elif kind == _STRING:
            if "\\" in token:
                token = _unescape(token)
                if token is None:
                    return None
            value = token
        elif kind == _IDENT:
            value = True if token == "true" else False if token == "false" else Atom(token)
        elif kind == _HEX:
            if len(token) > _MAX_NUMBER_TEXT:
                return None
            value = int(token, 16)
        elif kind == _FLOAT:
            value = float(token)
            if not math.isfinite(value):
                return None
        elif kind == _PLACEHOLDER:
            if token in "rp":           # a pattern: only after ':' (PLY says why not)
                if op != "is":
                    return None
                op = "re"
            value = Placeholder(token, placeholders)
            placeholders += 1
        elif op != "is":  # "_" and regexes only follow ':'
            return None
        elif kind == _REGEX:
            op, value = "re", Regex(token)
        else:
            op, value = "any", None
        constraints.append(make_constraint(key, op, value, m.start(2)))
        end = m.end()
    if not constraints or _CLOSE.fullmatch(text, end) is None:
        return None
    return make_query(name, tuple(constraints), placeholders)


def _unescape(body: str) -> str | None:
    """The string's value, or None for an escape the language does not have."""
    for m in _ESCAPE.finditer(body):
        if m.group(1) not in _ESCAPES:
            return None
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group(1)], body)


# --- records to store, in bulk (octopus.bulk) -------------------------------------------
#
# A record whose every item is ``key: value`` with a literal value (no condition, regex,
# "_" or placeholder) is what a bulk load reads a million times: parse_record() checks
# the whole text with one anchored expression built from the token patterns above (so
# it accepts exactly the spellings parse_fast() accepts for these items), then lists
# the items with one findall, and converts each value by its first character. No AST
# is built. tests/query/test_fast.py checks it against PLY like parse_fast().
_NUMBER = (r"-?(?:" + _DIGITS + r"\.[0-9]++(?:" + _EXPONENT + r")?"
           r"|\.[0-9]++(?:" + _EXPONENT + r")?"
           r"|" + _DIGITS + _EXPONENT +
           r"|0[xX][0-9a-fA-F]++"
           r"|" + _DIGITS + r")")
_LITERAL = r"(?:'" + _QUOTED + r"'|" + _NUMBER + r"|" + _NAME + r")"
_PAIR = _NAME + _WS + ":" + _WS + _LITERAL + _WS
_RECORD = re.compile(
    _WS + "(" + _NAME + ")" + _WS + r"\{" + _WS +
    r"(?:" + _PAIR + r"(?:," + _WS + _PAIR + r")*+)?\}" + _WS, re.S)
# Run over a text _RECORD matched, from the end of its name: every match starts at an
# item's key (whitespace, "{", "," and "}" never start one, and a quoted value is
# consumed whole), and a value that is not quoted ends where whitespace, "," or "}"
# begins, as _RECORD's literal did. Simpler than _LITERAL, hence faster.
_PAIRS = re.compile(r"([a-z][A-Za-z0-9._\-]*+)" + _WS + ":" + _WS +
                    r"('" + _QUOTED + r"'|[^ \t\r\n,}]++)", re.S)
_NUMBER_START = frozenset("-0123456789.")


def _value(token: str) -> Value | None:
    """The value of a literal token that _RECORD matched, or None to decline (an
    escape the language does not have, a long or non-finite number)."""
    first = token[0]
    if first == "'":
        body = token[1:-1]
        if "\\" in body:
            return _unescape(body)
        return body
    if first in _NUMBER_START:
        if len(token) > _MAX_NUMBER_TEXT:
            return None
        if "x" in token or "X" in token:
            return int(token, 16)
        if "." in token or "e" in token or "E" in token:
            value = float(token)
            return value if math.isfinite(value) else None
        return int(token)
    if token == "true":
        return True
    if token == "false":
        return False
    return Atom(token)


def _items(text: str, max_length: int) -> tuple[str, list[tuple[str, str]]] | None:
    """The name and the (key, literal token) items, in text order, of a record text
    whose every item is ``key: literal``; None to decline."""
    if len(text) > max_length:
        return None
    if not text.isascii():
        try:
            if len(text.encode("utf-8")) > max_length:
                return None
        except UnicodeEncodeError:
            return None
    m = _RECORD.fullmatch(text)
    if m is None:
        return None
    name = m.group(1)
    if name in _KEYWORDS:
        return None
    return name, _PAIRS.findall(text, m.end(1))


def parse_record(text: str, max_length: int) -> tuple[str, dict[str, Value]] | None:
    """The name and attributes (sorted by key) of a record to store, as
    :func:`octopus.query.compile.compile_record` gives them for ``text``, when every
    item is ``key: literal``; None to say "compile it the usual way" (conditions,
    placeholders, errors, a text over ``max_length`` UTF-8 bytes, or anything unsure)."""
    read = _literals(text, max_length)
    if read is None:
        return None
    name, _, attrs, ordered = read
    return name, (attrs if ordered else dict(sorted(attrs.items())))


def _literals(text: str, max_length: int) -> tuple[
        str, list[tuple[str, str]], dict[str, Value], bool] | None:
    """The name, the (key, token) items and the attributes (in the order written) of a
    record text whose every item is ``key: literal``, and whether its keys were in
    order; None when PLY or the compiler must decide (a token that is not a plain
    literal, a key twice, a keyword as a key: their errors carry the message)."""
    items = _items(text, max_length)
    if items is None:
        return None
    name, pairs = items
    attrs: dict[str, Value] = {}
    last = ""
    ordered = True
    for key, token in pairs:
        value = _value(token)
        if value is None or key in attrs or key in _KEYWORDS:
            return None
        if key < last:
            ordered = False
        last = key
        attrs[key] = value
    return name, pairs, attrs, ordered


# --- records shape by shape (octopus.bulk, and a set's new text) -------------------------
#
# A bulk load reads a million records of a few shapes (the same keys, each with values of
# the same kind: `hw.pci.device.N { bus: N, class: 'C', ... }`), and so does a program
# that sets records it writes as text (each text new: its values differ). A shape is the
# keys as written, in the order written, and each value's kind. The first record of a
# shape is read with parse_record's expressions; then one expression is compiled for the
# shape: the record pattern above with the keys written out, in the text's order, and
# each value's token narrowed to the kind it had (a decimal integer of at most 18 digits,
# a hexadecimal one of at most 16, a string without escapes, an identifier, true/false,
# or any literal). One match then checks a whole record and captures its name and
# values; integers need a conversion, and a shape whose keys are not written in order
# puts its values in key order with one permutation. Every text such an expression
# matches, _RECORD matches with the same tokens (each narrowed token is one of
# _LITERAL's spellings, followed by what _RECORD allows after it), so the values are
# parse_record's; tests/query/test_fast.py checks the readers against PLY as well.
#
# Which shape to try: the last one matched, then (when it fails) the few most recent
# shapes whose first key is the text's; a text no kept shape matches is read item by
# item, as parse_record reads it, and teaches its shape.
_INT_TOKEN = r"(-?(?:0|[1-9][0-9]{0,17}+))"                 # fits 64 bits: no range check
_HEX_TOKEN = r"(-?0[xX][0-9a-fA-F]{1,16}+)"                 # 64 bits too
_STRING_TOKEN = r"'([^'\\\n]*+)'"                           # no escape, no line break
_BOOL_TOKEN = r"(true|false)(?![A-Za-z0-9._\-])"
_IDENT_TOKEN = r"(?!(?:true|false)(?![A-Za-z0-9._\-]))(" + _NAME + ")"
_ANY_TOKEN = "(" + _LITERAL + ")"
_KINDS = {"int": _INT_TOKEN, "hex": _HEX_TOKEN, "str": _STRING_TOKEN, "bool": _BOOL_TOKEN,
          "ident": _IDENT_TOKEN, "any": _ANY_TOKEN}
_MAX_SHAPE_KEYS = 64        # a record with more keys is read item by item
_MAX_SHAPES = 64            # compiled shapes a reader keeps (least recently learned go)
_FREE_COMPILES = 64         # compiles a reader may make at once; then one per 1,000 texts
_SAME_FIRST_KEY = 4         # shapes tried after the last one, among those of its first key

#: A record read for the bulk path: its keys (sorted) and its name followed by its
#: values in key order, in stored form (an identifier as ``[text]``).
Row = tuple[tuple[str, ...], list[Any]]
#: A record to store: its name, its attributes (sorted by key) and the same attributes
#: as (key, value) pairs in stored form.
ReadRecord = tuple[str, dict[str, Value], list[tuple[str, Any]]]


def _kind(token: str) -> str:
    """The narrowest kind whose token pattern matches ``token``, a literal that _RECORD
    matched (so a number is one of _NUMBER's spellings, a name one of _NAME's)."""
    first = token[0]
    if first == "'":
        return "any" if "\\" in token or "\n" in token else "str"
    if first.isalpha():
        return "bool" if token in _KEYWORDS else "ident"
    digits = token[1:] if first == "-" else token
    if digits.isdigit():
        return "int" if len(digits) <= 18 else "any"
    if digits[1:2] in ("x", "X"):
        return "hex" if len(digits) <= 18 else "any"
    return "any"


def _first_key(text: str) -> str:
    """The first key of a record text, for choosing shapes to try (for a text of no
    shape it may be anything: a shape's expression decides)."""
    start = text.find("{") + 1
    return text[start:text.find(":", start)].strip()


# Whitespace inside one line: the shape's expression for a block of lines (each record
# on a line of its own, see RecordReader.read_lines).
_LINE_WS = r"[ \t\r]*+"


def _shape_pattern(written: tuple[str, ...], kinds: tuple[str, ...], ws: str) -> str:
    items = ("," + ws).join(re.escape(k) + ws + ":" + ws + _KINDS[kind] + ws
                            for k, kind in zip(written, kinds, strict=True))
    return (ws + r"(?!(?:true|false)[ \t\r\n{])(" + _NAME + ")" + ws + r"\{" +
            ws + items + r"\}" + ws)


class _Shape:
    """One compiled record shape: its keys (sorted), its expression, where its values
    need converting (positions in the match's groups; group 0 is the name), and the
    permutation to key order (None when written in order); the expression for a block
    of lines is compiled when first asked for."""

    __slots__ = ("_lines", "anys", "atoms", "bools", "first", "hexes", "idents", "ints",
                 "keys", "kinds", "match", "order", "written")

    def __init__(self, written: tuple[str, ...], kinds: tuple[str, ...]) -> None:
        self.written = written
        self.kinds = kinds
        self.keys = tuple(sorted(written))
        self.first = written[0] if written else ""
        self.match = re.compile(_shape_pattern(written, kinds, _WS)).fullmatch
        self._lines: Callable[[str], list[Any]] | None = None
        at = {kind: tuple(i for i, k in enumerate(kinds, 1) if k == kind) for kind in _KINDS}
        self.ints, self.hexes, self.bools, self.idents, self.anys = \
            at["int"], at["hex"], at["bool"], at["ident"], at["any"]
        self.atoms = bool(self.idents or self.anys)     # values that may be identifiers
        order = sorted(range(1, len(written) + 1), key=lambda i: written[i - 1])
        self.order: Callable[[list[Any]], tuple[Any, ...]] | None = \
            None if order == sorted(order) else operator.itemgetter(0, *order)

    def lines(self, block: str) -> list[Any]:
        """Every match of the shape that is a whole line of ``block``, in order (the
        groups of each, or the name alone for a shape without keys)."""
        if self._lines is None:
            self._lines = re.compile(
                "^" + _shape_pattern(self.written, self.kinds, _LINE_WS) + "$",
                re.M).findall
        return self._lines(block)

    def row(self, m: re.Match[str]) -> list[Any] | None:
        """The name and values (in key order, stored form) of a text this shape
        matched; None to decline (a value parse_record declines)."""
        row: list[Any] = list(m.groups())
        for i in self.ints:
            row[i] = int(row[i])
        if self.hexes:
            for i in self.hexes:
                row[i] = int(row[i], 16)
        if self.bools:
            for i in self.bools:
                row[i] = row[i] == "true"
        if self.idents:
            for i in self.idents:
                row[i] = [row[i]]
        if self.anys:
            for i in self.anys:
                value = _value(row[i])
                if value is None:
                    return None
                row[i] = [str.__str__(value)] if type(value) is Atom else value
        if self.order is not None:
            return list(self.order(row))
        return row


class _Shapes:
    """The compiled shapes a reader keeps, bounded: at most 64 (the least recently
    learned go), and at most 64 compiles plus one per 1,000 texts read item by item.
    Safe to share between threads: lookups read immutable values (a shape, a tuple of
    shapes) and set which shape is tried first (one assignment); every change to the
    kept shapes holds the lock. The count of texts read item by item is kept without
    it: an increment lost to a race only delays a compile."""

    __slots__ = ("by_first", "compiles", "last", "lock", "shapes", "texts")

    def __init__(self) -> None:
        self.shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], _Shape] = {}
        self.by_first: dict[str, tuple[_Shape, ...]] = {}   # most recent first
        self.last: _Shape | None = None
        self.lock = threading.Lock()
        self.compiles = 0
        self.texts = 0

    def find(self, text: str) -> tuple[_Shape, re.Match[str]] | None:
        """A kept shape that matches ``text`` (now the one tried first), and its match."""
        for shape in self.by_first.get(_first_key(text), ()):
            m = shape.match(text)
            if m is not None:
                self.last = shape
                return shape, m
        return None

    def may_learn(self) -> bool:
        """Whether a shape not kept may be compiled now (checked before working out a
        text's kinds, which only learning needs)."""
        return self.compiles < _FREE_COMPILES + self.texts // 1000

    def learn(self, written: tuple[str, ...], kinds: tuple[str, ...]) -> None:
        """Make the shape of a record just read item by item the one tried first."""
        signature = (written, kinds)
        shape = self.shapes.get(signature)
        if shape is None:
            if not self.may_learn():
                return
            shape = _Shape(written, kinds)     # outside the lock: compiling takes a while
        with self.lock:
            kept = self.shapes.pop(signature, None)
            if kept is not None:
                shape = kept
            else:
                if not self.may_learn():
                    return
                self.compiles += 1
                if len(self.shapes) >= _MAX_SHAPES:
                    self._drop(self.shapes.pop(next(iter(self.shapes))))
            self.shapes[signature] = shape
            same = self.by_first.get(shape.first, ())
            self.by_first[shape.first] = \
                (shape, *[s for s in same if s is not shape])[:_SAME_FIRST_KEY]
            self.last = shape

    def _drop(self, shape: _Shape) -> None:
        same = tuple(s for s in self.by_first.get(shape.first, ()) if s is not shape)
        if same:
            self.by_first[shape.first] = same
        else:
            self.by_first.pop(shape.first, None)
        if self.last is shape:
            self.last = None


class RecordReader:
    """Reads record texts for the bulk path: :meth:`read` gives what
    :func:`parse_record` gives, encoded as a :data:`Row`, or None to decline (then
    the caller compiles the text the usual way). One per load (its shapes are the
    load's).

    Bounded: it keeps at most 64 compiled shapes, and compiles at most 64 plus one
    per 1,000 texts read (a text of a shape it does not keep is read item by item)."""

    __slots__ = ("_book", "_max_length")

    def __init__(self, max_length: int) -> None:
        self._max_length = max_length
        self._book = _Shapes()

    def read(self, text: str) -> Row | None:
        """``(keys, [name, values...])`` of a record text of ``key: literal`` items."""
        book = self._book
        shape = book.last
        if shape is not None and len(text) <= self._max_length and text.isascii():
            m = shape.match(text)
            if m is None:
                found = book.find(text)
                if found is not None:
                    shape, m = found
            if m is not None:
                row = shape.row(m)
                return None if row is None else (shape.keys, row)
        return self._read_items(text)

    def read_lines(self, lines: list[str]) -> tuple[tuple[str, ...], list[list[Any]]] | None:
        """What :meth:`read` gives for each of ``lines`` (texts without line breaks), as
        columns, when every one is a record of the shape read last: ``(keys, columns)``,
        ``columns[0]`` the names and then the values of each key (in key order), in
        stored form. None to decline (then read them one by one: some of them are not
        of that shape, or have a line break).

        One expression finds the records of all the lines: anchored at line starts
        and ends (``re.M``) and with whitespace that does not cross a line break, each
        of its matches is one whole line, so as many matches as lines means every line
        is a record of the shape, matched as :meth:`read` matches it."""
        shape = self._book.last
        if shape is None or not lines:
            return None
        block = "\n".join(lines)
        if not block.isascii() or block.count("\n") != len(lines) - 1:
            return None
        if len(block) > self._max_length and max(map(len, lines)) > self._max_length:
            return None
        rows = shape.lines(block)
        if len(rows) != len(lines):
            return None
        if not shape.keys:
            return shape.keys, [rows]
        columns = [list(column) for column in zip(*rows, strict=True)]
        for i in shape.ints:
            columns[i] = list(map(int, columns[i]))
        for i in shape.hexes:
            columns[i] = [int(token, 16) for token in columns[i]]
        for i in shape.bools:
            columns[i] = [token == "true" for token in columns[i]]
        for i in shape.idents:
            columns[i] = [[token] for token in columns[i]]
        for i in shape.anys:
            values = list(map(_value, columns[i]))
            if None in values:
                return None
            columns[i] = [[str.__str__(v)] if type(v) is Atom else v for v in values]
        if shape.order is not None:
            columns = list(shape.order(columns))
        return shape.keys, columns

    def _read_items(self, text: str) -> Row | None:
        book = self._book
        book.texts += 1
        items = _items(text, self._max_length)
        if items is None:
            return None
        name, pairs = items
        keys = tuple(k for k, _ in pairs)
        if len(set(keys)) != len(keys) or not _KEYWORDS.isdisjoint(keys):
            return None        # PLY's error or the compiler's, with its message
        row: list[Any] = [name]
        for _, token in pairs:
            value = _value(token)
            if value is None:
                return None
            row.append([str.__str__(value)] if type(value) is Atom else value)
        if len(keys) <= _MAX_SHAPE_KEYS and book.may_learn():
            book.learn(keys, tuple(_kind(token) for _, token in pairs))
        if list(keys) != sorted(keys):
            order = sorted(range(len(keys)), key=keys.__getitem__)
            return tuple(keys[i] for i in order), [name] + [row[i + 1] for i in order]
        return keys, row


# --- one record to store, from a text not seen before (Engine.set) ----------------------

_SHARED = _Shapes()     # the shapes of the texts sets have read, shared by every thread


def read_record(text: str, max_length: int) -> ReadRecord | None:
    """What :func:`parse_record` gives for ``text``, with the attributes also as pairs in
    stored form (an identifier as ``[text]``); None to say "compile it the usual way".
    Reads with the shapes of the texts read before (module docstring's guarantee 3
    holds: the shapes are shared by all threads, safely)."""
    book = _SHARED
    if len(text) <= max_length and text.isascii():
        shape = book.last
        m = None if shape is None else shape.match(text)
        if m is None:
            found = book.find(text)
            if found is not None:
                shape, m = found
        if m is not None:
            assert shape is not None
            row = shape.row(m)
            if row is None:
                return None
            # Equal lengths by construction; zip(strict=True) costs a third more here.
            pairs = list(zip(shape.keys, row[1:]))  # noqa: B905
            if shape.atoms:
                return row[0], {k: Atom(v[0]) if type(v) is list else v
                                for k, v in pairs}, pairs
            return row[0], dict(pairs), pairs
    book.texts += 1
    read = _literals(text, max_length)
    if read is None:
        return None
    name, tokens, attrs, ordered = read
    if len(tokens) <= _MAX_SHAPE_KEYS and book.may_learn():
        book.learn(tuple(attrs), tuple(_kind(token) for _, token in tokens))
    if not ordered:
        attrs = dict(sorted(attrs.items()))
    return name, attrs, [(k, [str.__str__(v)] if type(v) is Atom else v)
                         for k, v in attrs.items()]

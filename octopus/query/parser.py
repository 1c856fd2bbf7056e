"""The PLY parser of the record and query language (grammar/octopus.ebnf).

Each ``p_`` rule's docstring is its production, as in the EBNF. The grammar tables are
built once per process, in memory (``write_tables=False``). PLY is the grammar's
authority; :func:`parse` first tries :func:`octopus.query.fast.parse_fast`, which reads
the dominant forms (bare names, canonical records, simple queries) at a fraction of the
cost and returns exactly what PLY would, or declines. Errors always come from PLY.

:func:`parse` memoises results in an LRU bounded in entries and in bytes
(:mod:`octopus.query.cache`), which is safe because ASTs are immutable. Bare names are
not memoised: reading one costs less than a memo lookup, and keys drawn at random from
millions of names would only push the useful entries out. PLY parser
objects are not re-entrant, so a PLY parse holds a lock; cached and fast parses do not.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import Any, NoReturn, cast

import ply.yacc as yacc
from ply.lex import LexToken
from ply.yacc import YaccProduction

from octopus.errors import ParseError, QueryError
from octopus.query.ast import AnyName, Constraint, Name, Placeholder, Query, Regex
from octopus.query.cache import LRUCache
from octopus.query.fast import parse_fast, parse_name
from octopus.query.lexer import Lexer, position
from octopus.record import Atom

__all__ = ["DEFAULT_MAX_LENGTH", "Parser", "parse", "parse_ply", "query_size"]

DEFAULT_MAX_LENGTH = 64 * 1024


class Parser:
    """Builds the grammar; ``parse(text)`` returns a :class:`Query` or raises ParseError."""

    tokens = Lexer.tokens

    def __init__(self, *, debug: bool = False, **yacc_args: Any) -> None:
        self.lexer = Lexer().build(reflags=int(re.VERBOSE | re.DOTALL), debug=debug)
        self.text = ""
        self.placeholders = 0
        self.value_pos = 0
        self.parser = yacc.yacc(module=self, start="query", debug=debug,
                                write_tables=False, **yacc_args)

    def parse(self, text: str) -> Query:
        self.text = text
        self.placeholders = 0
        # The start rule (p_query) puts a Query in p[0]; PLY hands it back untyped.
        return cast(Query, self.parser.parse(text, lexer=self.lexer))

    def fail(self, message: str, offset: int, snippet: str) -> NoReturn:
        line, column = position(self.text, offset)
        raise ParseError(message, line=line, column=column, text=snippet)

    def placeholder(self, kind: str) -> Placeholder:
        p = Placeholder(kind, self.placeholders)
        self.placeholders += 1
        return p

    # --- grammar -------------------------------------------------------------------

    def p_query(self, p: YaccProduction) -> None:
        """query : name_pattern
                 | name_pattern LBRACE RBRACE
                 | name_pattern LBRACE constraints RBRACE
        """
        constraints = tuple(p[3]) if len(p) == 5 else ()
        p[0] = Query(p[1], constraints, self.placeholders)

    def p_name_pattern_name(self, p: YaccProduction) -> None:
        """name_pattern : NAME"""
        p[0] = Name(p[1])

    def p_name_pattern_any(self, p: YaccProduction) -> None:
        """name_pattern : UNDERSCORE"""
        p[0] = AnyName()

    def p_name_pattern_regex(self, p: YaccProduction) -> None:
        """name_pattern : REGEX"""
        p[0] = Regex(p[1])

    def p_name_pattern_placeholder(self, p: YaccProduction) -> None:
        """name_pattern : PLACEHOLDER"""
        if p[1] not in ("s", "n", "r", "p"):
            self.fail(f"placeholder %{p[1]} cannot stand for a name (use %s, %n, %r or %p)",
                      p.lexpos(1), "%" + p[1])
        p[0] = self.placeholder(p[1])

    def p_constraints_one(self, p: YaccProduction) -> None:
        """constraints : constraint"""
        p[0] = [p[1]]

    def p_constraints_more(self, p: YaccProduction) -> None:
        """constraints : constraints COMMA constraint"""
        p[1].append(p[3])
        p[0] = p[1]

    def p_constraint_value(self, p: YaccProduction) -> None:
        """constraint : NAME COLON value"""
        value = p[3]
        if isinstance(value, Placeholder) and value.kind in _PATTERN_KINDS:
            p[0] = Constraint(p[1], "re", value, p.lexpos(1))   # key: %r, key: %p
        else:
            p[0] = Constraint(p[1], "is", value, p.lexpos(1))

    def p_constraint_any(self, p: YaccProduction) -> None:
        """constraint : NAME COLON UNDERSCORE"""
        p[0] = Constraint(p[1], "any", None, p.lexpos(1))

    def p_constraint_regex(self, p: YaccProduction) -> None:
        """constraint : NAME COLON REGEX"""
        p[0] = Constraint(p[1], "re", Regex(p[3]), p.lexpos(1))

    def p_constraint_comparison(self, p: YaccProduction) -> None:
        """constraint : NAME comparison value"""
        value = p[3]
        if isinstance(value, Placeholder) and value.kind in _PATTERN_KINDS:
            self.fail(f"placeholder %{value.kind} stands for a pattern: write "
                      f"'{p[1]}: %{value.kind}'", self.value_pos, "%" + value.kind)
        p[0] = Constraint(p[1], p[2], value, p.lexpos(1))

    def p_comparison(self, p: YaccProduction) -> None:
        """comparison : EQ
                      | NE
                      | LT
                      | LE
                      | GT
                      | GE
        """
        p[0] = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}[p[1]]

    def p_value_literal(self, p: YaccProduction) -> None:
        """value : INT
                 | FLOAT
                 | STRING
        """
        p[0] = p[1]

    def p_value_true(self, p: YaccProduction) -> None:
        """value : TRUE"""
        p[0] = True

    def p_value_false(self, p: YaccProduction) -> None:
        """value : FALSE"""
        p[0] = False

    def p_value_atom(self, p: YaccProduction) -> None:
        """value : NAME"""
        p[0] = Atom(p[1])

    def p_value_placeholder(self, p: YaccProduction) -> None:
        """value : PLACEHOLDER"""
        self.value_pos = p.lexpos(1)        # for an error about this value
        p[0] = self.placeholder(p[1])

    def p_error(self, t: LexToken | None) -> None:
        if t is None:
            self.fail("unexpected end of input", len(self.text), "")
        self.fail(f"unexpected {_describe(t)}", t.lexpos, _source_text(self.text, t))


# Placeholders for a pattern (a regular expression %r, a prefix %p): only as a name or
# after "key:", where a regex literal may stand.
_PATTERN_KINDS = frozenset({"r", "p"})


def _describe(t: LexToken) -> str:
    kinds = {
        "NAME": "name", "UNDERSCORE": "'_'", "INT": "integer", "FLOAT": "float",
        "STRING": "string", "REGEX": "regular expression", "PLACEHOLDER": "placeholder",
        "TRUE": "'true'", "FALSE": "'false'", "LBRACE": "'{'", "RBRACE": "'}'",
        "COLON": "':'", "COMMA": "','",
    }
    return kinds.get(t.type, "operator")


def _source_text(text: str, t: LexToken) -> str:
    """The token's text as written (tokens carry converted values)."""
    end = t.lexpos + 1
    while end < len(text) and not text[end].isspace() and text[end] not in "{},:":
        end += 1
    return text[t.lexpos:end] if t.type not in ("LBRACE", "RBRACE", "COLON", "COMMA") \
        else text[t.lexpos]


_lock = threading.Lock()
_parser: Parser | None = None


def _get_parser() -> Parser:
    global _parser
    if _parser is None:
        _parser = Parser()
    return _parser


def parse_ply(text: str) -> Query:
    """Parse with the PLY parser alone (no fast path, no memo): the reference."""
    with _lock:
        return _get_parser().parse(text)


def query_size(text: str, query: Query) -> int:
    """Estimated bytes of a memo entry: the text (held as the key), the strings the
    tree holds (at most as much again), and a node with its value per constraint."""
    return 2 * sys.getsizeof(text) + 200 + _BYTES_PER_CONSTRAINT * len(query.constraints)


# Measured with tracemalloc (tests/query/test_cache.py): a Constraint with its key and
# value costs 150-220 bytes beyond the text's own characters.
_BYTES_PER_CONSTRAINT = 220

_memo: LRUCache[str, Query] = LRUCache(maxsize=4096, maxbytes=32 << 20, weigh=query_size)


def parse(text: object, *, max_length: int = DEFAULT_MAX_LENGTH) -> Query:
    """Parse record or query text into a :class:`Query` (memoised).

    Raises :class:`ParseError` (with line, column and text) for text outside the
    grammar and :class:`QueryError` for input that is not text or is too long.
    """
    if not isinstance(text, str):
        raise QueryError(f"a query must be a str, got {type(text).__name__}")
    if len(text) > max_length:  # cheap bound before encoding a huge text
        raise QueryError(f"the query is longer than the limit of {max_length} bytes")
    query = parse_name(text)
    if query is not None:  # cheaper than the memo, and names would crowd it out
        return query
    query = _memo.get(text)
    if query is None:
        _check_encoding(text, max_length)
        query = parse_fast(text)
        if query is None:
            query = parse_ply(text)
        _memo.put(text, query)
    elif len(text) * 4 > max_length and not text.isascii():
        _check_encoding(text, max_length)  # it may have been parsed under a larger limit
    return query


def _check_encoding(text: str, max_length: int) -> None:
    """Lone surrogates are a ParseError; the limit counts UTF-8 bytes."""
    if text.isascii():
        return
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        line, column = position(text, e.start)
        raise ParseError("text is not valid Unicode (lone surrogate)", line=line,
                         column=column, text=text[e.start:e.end]) from None
    if size > max_length:
        raise QueryError(f"the query is {size} bytes long; the limit is {max_length}")

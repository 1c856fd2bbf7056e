"""The PLY lexer of the record and query language (grammar/octopus.ebnf).

:class:`Lexer` is a class that never imports the parser. Token rules that are
functions are tried in definition order (PLY's rule), which is why ``REGEX`` (``r'``)
comes before ``NAME`` and numbers come before the one-character tokens.
Every character that no rule accepts is a :class:`ParseError` with its line and
column; nothing is silently skipped except whitespace. Digits are ASCII only (``\\d``
would let ``int()`` read other scripts' digits), and an integer literal outside the
value range (:func:`octopus.record.int_in_range`) is a ParseError at the literal.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, NoReturn

import ply.lex as lex
from ply.lex import LexToken

from octopus.errors import ParseError
from octopus.record import MAX_INT_DIGITS, MAX_NAME_LENGTH, int_from_decimal, int_in_range

__all__ = ["Lexer", "position"]


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of the 0-based ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


_ESCAPES = {"'": "'", "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
# A token rule matches an unterminated string or regex too (to report it as such);
# these tell the two apart.
_STRING_TOKEN = re.compile(r"'(?:\\.|[^'\\])*'", re.S)
_REGEX_TOKEN = re.compile(r"r'(?:\\.|[^'\\])*'", re.S)


class Lexer:
    """Tokenizes one text at a time; build once with :meth:`build`, then ``clone``."""

    keywords: ClassVar[dict[str, str]] = {"true": "TRUE", "false": "FALSE"}

    tokens = (
        "NAME", "UNDERSCORE", "INT", "FLOAT", "STRING", "REGEX", "PLACEHOLDER",
        "TRUE", "FALSE",
        "LBRACE", "RBRACE", "COLON", "COMMA",
        "EQ", "NE", "LE", "GE", "LT", "GT",
    )

    t_ignore = " \t\r"

    t_LBRACE = r"\{"
    t_RBRACE = r"\}"
    t_COLON = r":"
    t_COMMA = r","
    t_EQ = r"=="
    t_NE = r"!="
    t_LE = r"<="
    t_GE = r">="
    t_LT = r"<"
    t_GT = r">"

    lexer: lex.Lexer        # PLY's, made by build()

    def __init__(self) -> None:
        self.text = ""

    def build(self, **kwargs: Any) -> Lexer:
        self.lexer = lex.lex(module=self, **kwargs)
        return self

    def input(self, text: str) -> None:
        self.text = text
        self.lexer.input(text)
        self.lexer.lineno = 1

    def token(self) -> LexToken | None:
        return self.lexer.token()

    def fail(self, message: str, offset: int, snippet: str) -> NoReturn:
        line, column = position(self.text, offset)
        raise ParseError(message, line=line, column=column, text=snippet)

    # --- tokens with actions, in priority order -------------------------------------

    def t_newline(self, t: LexToken) -> None:
        r"\n+"
        t.lexer.lineno += len(t.value)

    def t_REGEX(self, t: LexToken) -> LexToken:
        r"r'(?:\\.|[^'\\])*(?:'|\\?\Z)"
        if not _REGEX_TOKEN.fullmatch(t.value):
            self.fail("unterminated regular expression", t.lexpos, t.value)
        t.value = t.value[2:-1]
        return t

    def t_STRING(self, t: LexToken) -> LexToken:
        r"'(?:\\.|[^'\\])*(?:'|\\?\Z)"
        if not _STRING_TOKEN.fullmatch(t.value):
            self.fail("unterminated string", t.lexpos, t.value)
        body = t.value[1:-1]
        if "\\" not in body:
            t.value = body
            return t
        out: list[str] = []
        i = 0
        while i < len(body):
            ch = body[i]
            if ch == "\\":
                nxt = body[i + 1]
                if nxt not in _ESCAPES:
                    self.fail(f"unknown escape \\{nxt} in string", t.lexpos + 1 + i,
                              "\\" + nxt)
                out.append(_ESCAPES[nxt])
                i += 2
            else:
                out.append(ch)
                i += 1
        t.value = "".join(out)
        return t

    def t_FLOAT(self, t: LexToken) -> LexToken:
        r"""-?(?: [0-9]+\.[0-9]+ (?:[eE][+-]?[0-9]+)?
                | \.[0-9]+      (?:[eE][+-]?[0-9]+)?
                | [0-9]+         [eE][+-]?[0-9]+ )"""
        digits = t.value.lstrip("-")
        if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
            self.fail("leading zeros are not allowed", t.lexpos, t.value)
        value = float(t.value)
        if value in (float("inf"), float("-inf")):
            self.fail("float out of range", t.lexpos, t.value)
        t.value = value
        return t

    def t_HEX(self, t: LexToken) -> LexToken:
        r"-?0[xX][0-9a-fA-F]+"
        value = int(t.value, 16)  # power-of-two bases have no digit limit
        if not int_in_range(value):
            self.fail(f"integer out of range (more than {MAX_INT_DIGITS} decimal digits)",
                      t.lexpos, t.value[:20] + "...")
        t.type = "INT"
        t.value = value
        return t

    def t_INT(self, t: LexToken) -> LexToken:
        r"-?[0-9]+"
        digits = t.value.lstrip("-")
        if len(digits) > 1 and digits[0] == "0":
            self.fail("leading zeros are not allowed", t.lexpos, t.value)
        if len(digits) > MAX_INT_DIGITS:
            self.fail(f"integer literal too long (more than {MAX_INT_DIGITS} digits)",
                      t.lexpos, t.value[:20] + "...")
        t.value = int_from_decimal(t.value)
        return t

    def t_NAME(self, t: LexToken) -> LexToken:
        r"[a-z][A-Za-z0-9._\-]*"
        if len(t.value) > MAX_NAME_LENGTH:
            self.fail(f"a name, key or identifier may have at most {MAX_NAME_LENGTH} "
                      f"characters; this one has {len(t.value)}", t.lexpos,
                      t.value[:20] + "...")
        t.type = self.keywords.get(t.value, "NAME")
        return t

    def t_UNDERSCORE(self, t: LexToken) -> LexToken:
        r"_"
        return t

    def t_PLACEHOLDER(self, t: LexToken) -> LexToken:
        r"%[dfsbnrp]"
        t.value = t.value[1]
        return t

    def t_error(self, t: LexToken) -> None:
        ch = t.value[0]
        what = "unexpected character" if ch.isprintable() else "unexpected control character"
        self.fail(f"{what} {ch!r}", t.lexpos, ch)

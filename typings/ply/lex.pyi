# The part of PLY 3.11's lexer that octopus/query/lexer.py uses.
from typing import Any

class LexToken:
    type: str
    value: Any          # what the token rule put there: text, or a converted value
    lineno: int
    lexpos: int
    lexer: Lexer

class Lexer:
    lineno: int
    lexpos: int
    def input(self, s: str) -> None: ...
    def token(self) -> LexToken | None: ...

# Builds a lexer from the t_ rules of `module` (any object with them as attributes).
def lex(module: object = None, object: object = None, debug: bool = False,
        optimize: bool = False, lextab: str = "lextab", reflags: int = ...,
        nowarn: bool = False, outputdir: str | None = None, debuglog: Any = None,
        errorlog: Any = None) -> Lexer: ...

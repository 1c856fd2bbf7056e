# The part of PLY 3.11's parser generator that octopus/query/parser.py uses.
from typing import Any, Protocol

from ply.lex import LexToken

class _TokenSource(Protocol):
    # What LRParser.parse reads tokens from: a ply Lexer or any object like it.
    def input(self, s: str) -> None: ...
    def token(self) -> LexToken | None: ...

class YaccProduction:
    # p[0] is the rule's result, p[1:] the values of the production's symbols: whatever
    # the token and grammar rules made them.
    def __getitem__(self, n: int) -> Any: ...
    def __setitem__(self, n: int, v: Any) -> None: ...
    def __len__(self) -> int: ...
    def lineno(self, n: int) -> int: ...
    def lexpos(self, n: int) -> int: ...

class LRParser:
    # The result is whatever the start rule put in p[0].
    def parse(self, input: str | None = None, lexer: _TokenSource | None = None,
              debug: bool = False, tracking: bool = False,
              tokenfunc: Any = None) -> Any: ...

# Builds the LALR tables from the p_ rules of `module` (any object with them as attributes).
def yacc(method: str = "LALR", debug: bool = ..., module: object = None,
         tabmodule: str = ..., start: str | None = None, check_recursion: bool = True,
         optimize: bool = False, write_tables: bool = True, debugfile: str = ...,
         outputdir: str | None = None, debuglog: Any = None, errorlog: Any = None,
         picklefile: str | None = None) -> LRParser: ...

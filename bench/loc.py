"""Lines of code per recipe, beside Table 1 of the Octopus paper (APSys 2012).

The paper counts lines of C (the Barrelfish client code of each primitive). Here a line
of code is a line of a module that holds a Python token other than a comment or a
docstring; blank lines, comments and docstrings are not counted (they are shown apart).
``store.py`` is the protocol and the helpers every recipe shares.

    .venv/bin/python bench/loc.py            # print, and update bench/RESULTS.md
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

from common import record_results, table

RECIPES = Path(__file__).resolve().parent.parent / "octopus" / "recipes"
PAPER = {"barrier.py": ("Barriers", 102), "lock.py": ("Locks", 87),
         "semaphore.py": ("Semaphores", 106)}
LIMIT = 150  # per module, by the issue
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENCODING, tokenize.ENDMARKER}


def docstring_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    return lines


def count(path: Path) -> tuple[int, int, int]:
    """(code lines, docstring lines, all lines) of one module."""
    text = path.read_text()
    docs = docstring_lines(ast.parse(text))
    code: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in _SKIP:
            code.update(line for line in range(tok.start[0], tok.end[0] + 1)
                        if line not in docs)
    return len(code), len(docs), len(text.splitlines())


def main() -> int:
    rows, over = [], []
    for path in sorted(RECIPES.glob("*.py")):
        if path.name == "__init__.py":
            continue
        code, docs, total = count(path)
        paper_name, paper_loc = PAPER.get(path.name, ("", None))
        paper = f"{paper_name}: {paper_loc}" if paper_loc else "--"
        rows.append([path.name, paper, str(code), str(docs), str(total)])
        if code >= LIMIT:
            over.append(path.name)
    text = table("Lines per recipe module, beside Table 1 of the paper",
                 ["module", "paper (lines of C)", "ours: code lines", "docstring lines",
                  "all lines"], rows)
    if "--no-record" not in sys.argv:
        record_results("Recipe sizes (bench/loc.py)",
                       "Code lines: lines with a Python token other than a comment or a "
                       "docstring. `store.py` is the protocol and helpers all recipes share."
                       "\n\n" + text)
    if over:
        print(f"over the {LIMIT}-line limit: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Parsing texts not seen before: the PLY parser against the fast path, per form.

    .venv/bin/python bench/parse.py [--texts 2000] [--repeat 7] [--instructions 2000]
        [--no-record]

Prints the tables, writes bench/parse.png and (unless --no-record) the RESULTS.md
section.

For each form, ``--texts`` distinct texts (so no memo helps) are parsed by
``parse_ply`` (PLY alone), ``parse_fast`` (the fast path alone) and ``parse`` with an
empty memo (what a new text costs in practice: checks, fast path or PLY, memo put);
then ``parse`` again on the same texts (memo hits). Methods are interleaved in each of
``--repeat`` rounds and the best round is kept, so the ratios compare like with like on
a noisy machine; times are the thread's CPU time (``time.thread_time``), which other
processes on the shared cores do not inflate. A second table splits PLY's time into
lexing and parsing (the PLY lexer already runs one master regex; what costs is Python
per token). The third runs ``Engine.set`` on new texts of a canonical record (keys in
order) and of a hand-written one (keys out of order, a hex number) four ways: as it is
(``read_record``: one compiled expression per record shape), as it was before shapes
(``parse_record``, item by item, no tree), with only the tree fast path
(``parse_fast``, then the parse memo and the template cache), and with PLY alone (the
issue's "embedded set of a text not seen before"). The last counts the instructions
the calling thread executes for the first three ways (valgrind's callgrind; the
counts do not depend on the machine's load): ``compile_record`` alone and the whole
``Engine.set``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import HERE, callgrind_dumps, record_results, table

import octopus
from octopus.query import parser as parser_module
from octopus.query.fast import parse_fast, parse_record, read_record
from octopus.query.parser import _get_parser, parse, parse_ply
from octopus.record import Record

FORMS: list[tuple[str, Callable[[int], str]]] = [
    ("bare name", lambda i: f"hw.pci.device.{i}"),
    ("canonical record, 5 attributes (str(Record))", lambda i: str(Record(
        f"hw.pci.device.{i}", {"bus": i % 256, "class": "C", "device_id": i,
                               "label": f"dev {i}", "vendor": 0x8086}))),
    ("hand-written record, 5 attributes (hex, unsorted)",
     lambda i: f"hw.pci.device.{i} {{ vendor: 0x8086, device_id: {i}, class: 'C', "
               f"bus: {i % 256}, label: 'dev {i}' }}"),
    ("record, 20 attributes of every kind", lambda i: f"big.{i} {{ " + ", ".join(
        f"k{j}: " + [f"{i + j}", f"-2.5e{j}", f"'it\\'s {i}'", "eth0", "true"][j % 5]
        for j in range(20)) + " }"),
    ("query _ { key: value }", lambda i: f"_ {{ device_id: {i} }}"),
    ("query _ { k1: v1, k2: v2 }", lambda i: f"_ {{ vendor: 0x8086, device_id: {i} }}"),
    ("query _ { k > v }", lambda i: f"_ {{ device_id > {i} }}"),
    ("query with placeholders", lambda i: f"dev{i} {{ a: %d, b: %s, c >= %f }}"),
    ("query with regexes", lambda i: f"r'^hw\\.pci\\.{i}' {{ label: r'dev {i}$', bus: _ }}"),
]


def best_us(funcs: dict[str, Callable[[], Any]], n: int, repeat: int,
            before: dict[str, Callable[[], None]]) -> dict[str, float]:
    """Best-of-``repeat`` µs per text of each function, interleaved per round."""
    best = dict.fromkeys(funcs, float("inf"))
    for _ in range(repeat):
        for name, run in funcs.items():
            if name in before:
                before[name]()
            t0 = time.thread_time()
            run()
            best[name] = min(best[name], (time.thread_time() - t0) / n * 1e6)
    return best


def forms_table(n: int, repeat: int) -> tuple[str, list[tuple[str, float, float]]]:
    rows = []
    plotted = []
    for label, make in FORMS:
        texts = [make(i) for i in range(n)]
        for t in texts[:20]:  # the bench measures the same thing on both paths
            assert parse_fast(t) == parse_ply(t), t

        def ply(texts: list[str] = texts) -> None:
            for t in texts:
                parse_ply(t)

        def fast(texts: list[str] = texts) -> None:
            for t in texts:
                parse_fast(t)

        def parsed(texts: list[str] = texts) -> None:
            for t in texts:
                parse(t)

        us = best_us({"ply": ply, "fast": fast, "new": parsed, "cached": parsed}, n, repeat,
                     {"new": parser_module._memo.clear})
        declined = sum(parse_fast(t) is None for t in texts)
        rows.append([label, f"{us['ply']:.1f}", f"{us['fast']:.1f}", f"{us['new']:.1f}",
                     f"{us['cached']:.2f}", f"{us['ply'] / us['new']:.1f}×",
                     f"{declined / n:.0%}"])
        plotted.append((label, us["ply"], us["new"]))
        print(f"  {label}: PLY {us['ply']:.1f} µs, parse() {us['new']:.1f} µs", file=sys.stderr)
    return table(f"Parsing a text not seen before ({n:,} distinct texts per form; "
                 f"best of {repeat} interleaved rounds)",
                 ["form", "PLY µs", "fast path µs", "parse() new µs", "parse() cached µs",
                  "PLY / parse()", "declined"], rows), plotted


def lexer_table(n: int, repeat: int) -> str:
    lexer = _get_parser().lexer
    rows = []
    for label, make in FORMS[1:5]:
        texts = [make(i) for i in range(n)]

        def lex(texts: list[str] = texts) -> None:
            for t in texts:
                lexer.input(t)
                while lexer.token() is not None:
                    pass

        def ply(texts: list[str] = texts) -> None:
            for t in texts:
                parse_ply(t)

        us = best_us({"lex": lex, "ply": ply}, n, repeat, {})
        rows.append([label, f"{us['ply']:.1f}", f"{us['lex']:.1f}",
                     f"{us['lex'] / us['ply']:.0%}"])
    return table("Where PLY's time goes", ["form", "PLY parse µs", "of which lexing µs",
                                           "lexing share"], rows)


# The two record forms of FORMS a program sets, and the ways a set can read a new text:
# as it does (shapes), as it did before shapes (parse_record, item by item), with the
# tree fast path only, with PLY only.
SET_FORMS = [FORMS[1], FORMS[2]]
SET_MODES = ["shape reader (read_record)", "item by item (parse_record, as before)",
             "tree fast path (parse_fast, parse memo, template)", "PLY only"]


def _item_by_item(text: str, max_length: int) -> Any:
    from octopus.adapter import encode_attributes

    got = parse_record(text, max_length)
    if got is None:
        return None
    return got[0], got[1], encode_attributes(got[1])


def set_mode(mode: str | None) -> None:
    """Make compile_record read new texts the way ``mode`` says (None: as it does)."""
    from octopus.query import compile as compile_module

    i = SET_MODES.index(mode) if mode is not None else 0
    compile_module.read_record = [read_record, _item_by_item, _none, _none][i]
    parser_module.parse_fast = parse_fast if i < 3 else _none


def _none(*args: Any) -> None:
    return None


def set_table(n: int, repeat: int) -> str:
    engine = octopus.Engine()
    rows = []
    start = 0
    for label, form in SET_FORMS:
        rounds: dict[str, float] = dict.fromkeys(SET_MODES, float("inf"))
        for _ in range(repeat):
            for mode in SET_MODES:
                set_mode(mode)
                texts = [form(k) for k in range(start, start + n)]
                start += n
                t0 = time.thread_time()
                for t in texts:
                    engine.set(t)
                rounds[mode] = min(rounds[mode], (time.thread_time() - t0) / n * 1e6)
        set_mode(None)
        text = form(0)
        engine.set(text)
        t0 = time.thread_time()
        for _ in range(n):
            engine.set(text)
        cached = (time.thread_time() - t0) / n * 1e6
        for mode, us in rounds.items():
            rows.append([label, f"new texts, {mode}", f"{us:.1f}", f"{us / cached:.2f}"])
        rows.append([label, "the same text again (every cache hit)", f"{cached:.1f}", "1.00"])
    engine.close()
    return table(f"Embedded Engine.set of a 5-attribute record ({n:,} per round, best of "
                 f"{repeat} interleaved rounds, store growing)",
                 ["form", "case", "µs per set", "× same text"], rows)


# --- instructions (valgrind's callgrind), which the machine's load does not change -----

def count_child(n: int) -> None:
    """Run under callgrind: for each form and way of reading, count ``n`` sets of new
    texts (and, apart, ``n`` compile_record calls), each after 200 unmeasured."""
    import subprocess

    from octopus.query.compile import compile_record

    engine = octopus.Engine()
    pid = str(os.getpid())
    start = 0
    for f, (_, form) in enumerate(SET_FORMS):
        for m, mode in enumerate(SET_MODES[:3]):
            set_mode(mode)
            for what, run in (("set", engine.set), ("compile", compile_record)):
                texts = [form(k) for k in range(start, start + n + 200)]
                start += n + 200
                for t in texts[:200]:
                    run(t)
                subprocess.run(["callgrind_control", "-i", "on", pid], capture_output=True,
                               check=True)
                for t in texts[200:]:
                    run(t)
                subprocess.run(["callgrind_control", "-i", "off", pid], capture_output=True,
                               check=True)
                subprocess.run(["callgrind_control", "-d", f"{what}-{f}-{m}", pid],
                               capture_output=True, check=True)
    set_mode(None)
    engine.close()


def instructions_table(n: int) -> str:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        env = dict(os.environ, PYTHONHASHSEED="0")
        subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                        "--instr-atstart=no", f"--callgrind-out-file={out}",
                        sys.executable, __file__, "--count-child", str(n)],
                       env=env, cwd=HERE, capture_output=True, check=True, timeout=3600)
        counts = {what: total / n for what, total in callgrind_dumps(Path(tmp)).items()}
    rows = []
    for f, (label, _) in enumerate(SET_FORMS):
        before = counts[f"set-{f}-1"]
        for m, mode in enumerate(SET_MODES[:3]):
            rows.append([label, mode, f"{counts[f'compile-{f}-{m}']:,.0f}",
                         f"{counts[f'set-{f}-{m}']:,.0f}",
                         f"{counts[f'set-{f}-{m}'] / before:.2f}"])
    return table(f"Instructions per new text (callgrind, the calling thread, {n:,} texts per "
                 "case): compile_record alone, and Engine.set",
                 ["form", "way of reading", "compile_record", "Engine.set",
                  "set ÷ item by item"], rows)


def plot(plotted: list[tuple[str, float, float]]) -> Path:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8))
    labels = [label for label, _, _ in plotted][::-1]
    ys = range(len(labels))
    ax.barh([y + 0.2 for y in ys], [p for _, p, _ in plotted][::-1], height=0.4,
            label="PLY")
    ax.barh([y - 0.2 for y in ys], [f for _, _, f in plotted][::-1], height=0.4,
            label="parse() (fast path)")
    ax.axvline(20, color="grey", linestyle="--", linewidth=1)
    ax.text(20, len(labels) - 0.4, " 20 µs goal", color="grey", fontsize=8)
    ax.set_yticks(list(ys), labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("µs to parse a text not seen before (log scale)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    path = HERE / "parse.png"
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    ap.add_argument("--instructions", type=int, default=2000, metavar="N",
                    help="texts per case counted under callgrind (0: skip)")
    ap.add_argument("--count-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.count_child:
        count_child(args.count_child)
        return
    load0 = os.getloadavg()[0]
    forms, plotted = forms_table(args.texts, args.repeat)
    png = plot(plotted)
    out = [forms + f"\nPlot: `bench/{png.name}`.\n", lexer_table(args.texts, args.repeat),
           set_table(args.texts, 3)]
    if args.instructions:
        out.append(instructions_table(args.instructions))
    out.append(f"Load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
               "on 2 cores (other engineers' work): compare the interleaved rows' ratios "
               "and the instruction counts, which the load does not change.\n")
    print("\n".join(out))
    if not args.no_record:
        record_results("Parsing (bench/parse.py)", "\n".join(out))


if __name__ == "__main__":
    main()

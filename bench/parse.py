"""Parsing texts not seen before: the PLY parser against the fast path, per form.

    .venv/bin/python bench/parse.py [--texts 2000] [--repeat 7] [--no-record]

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
per token). The last table runs ``Engine.set`` on new texts three ways: as it is
(``parse_record`` reads a ``key: literal`` record without building a tree), with only
the tree fast path (``parse_fast``, then the parse memo and the template cache), and
with PLY alone (the issue's "embedded set of a text not seen before").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import HERE, record_results, table

import octopus
from octopus.query import parser as parser_module
from octopus.query.fast import parse_fast
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


def set_table(n: int, repeat: int) -> str:
    from octopus.query import compile as compile_module

    engine = octopus.Engine()
    form = FORMS[1][1]
    real_fast = parser_module.parse_fast
    real_record = compile_module.parse_record
    rows = []
    modes = ["record fast path (parse_record, no tree)",
             "tree fast path (parse_fast, parse memo, template)", "PLY only"]
    rounds: dict[str, float] = dict.fromkeys(modes, float("inf"))
    start = 0
    for _ in range(repeat):
        for i, mode in enumerate(modes):
            compile_module.parse_record = real_record if i == 0 else \
                (lambda text, max_length: None)
            parser_module.parse_fast = real_fast if i < 2 else (lambda text: None)
            texts = [form(k) for k in range(start, start + n)]
            start += n
            t0 = time.thread_time()
            for t in texts:
                engine.set(t)
            rounds[mode] = min(rounds[mode], (time.thread_time() - t0) / n * 1e6)
    parser_module.parse_fast = real_fast
    compile_module.parse_record = real_record
    text = form(0)
    engine.set(text)
    t0 = time.thread_time()
    for _ in range(n):
        engine.set(text)
    cached = (time.thread_time() - t0) / n * 1e6
    engine.close()
    for mode, us in rounds.items():
        rows.append([f"new texts, {mode}", f"{us:.1f}", f"{us / cached:.2f}"])
    rows.append(["the same text again (every cache hit)", f"{cached:.1f}", "1.00"])
    return table(f"Embedded Engine.set of a canonical 5-attribute record ({n:,} per round, "
                 f"store growing)", ["case", "µs per set", "× same text"], rows)


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
    args = ap.parse_args()
    forms, plotted = forms_table(args.texts, args.repeat)
    png = plot(plotted)
    out = [forms + f"\nPlot: `bench/{png.name}`.\n", lexer_table(args.texts, args.repeat),
           set_table(args.texts, 3)]
    if not args.no_record:
        record_results("Parsing (bench/parse.py)", "\n".join(out))


if __name__ == "__main__":
    main()

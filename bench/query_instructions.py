"""Instructions an attribute query costs, counted, beside SQLite's composite index.

    .venv/bin/python bench/query_instructions.py [--records N] [--calls N] [--baseline DIR]

bench/compare.py times ``get_names("_ { vendor: 0x8086, device_id: 4110 }")`` against
SQLite's ``SELECT name ... WHERE vendor = ? AND device_id = ?`` (an index on both
columns); on this shared 2-core machine those timings move by ±30% with the load. This
script counts instead: one child under valgrind's callgrind builds both stores with
``--records`` records of issue 13's shape and runs each query ``--calls`` times (after
200 unmeasured), counting the instructions of the calling thread, which the load does
not change. ``--baseline DIR`` counts octopus's query with the octopus of another
checkout (DIR holds its ``octopus/`` and ``prolog/``) in the same run, for a
before/after. The ratio to SQLite is of instructions, not of time: near it, not equal
(Python's instructions are not SQLite's), but a change of either shows.

Needs valgrind (callgrind_control on the PATH).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import callgrind_dumps, commit_of, record_results, table

HERE = Path(__file__).resolve().parent
SECTION = "Attribute query, instructions (bench/query_instructions.py)"
QUERY = "_ { vendor: 0x8086, device_id: 4110 }"


def child(records: int, calls: int) -> None:
    import octopus

    engine = octopus.Engine()
    engine.set_many((f"hw.pci.device.{i}", {"vendor": 0x8086, "device_id": i, "class": "C",
                                            "bus": i % 256, "label": f"dev {i}"})
                    for i in range(records))
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE r (name TEXT PRIMARY KEY, vendor INT, device_id INT, "
               "class TEXT, bus INT, label TEXT)")
    db.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?, ?)",
                   ((f"hw.pci.device.{i}", 0x8086, i, "C", i % 256, f"dev {i}")
                    for i in range(records)))
    db.execute("CREATE INDEX r_vd ON r (vendor, device_id)")
    cases: dict[str, Callable[[], Any]] = {
        "octopus": lambda: engine.get_names(QUERY),
        "sqlite": lambda: db.execute("SELECT name FROM r WHERE vendor = ? AND device_id = ?",
                                     (0x8086, 4110)).fetchall(),
    }
    assert cases["octopus"]() == ["hw.pci.device.4110"] == [n for n, in cases["sqlite"]()]
    pid = str(os.getpid())
    for what, run in cases.items():
        for _ in range(200):
            run()
        subprocess.run(["callgrind_control", "-i", "on", pid], capture_output=True, check=True)
        for _ in range(calls):
            run()
        subprocess.run(["callgrind_control", "-i", "off", pid], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-d", what, pid], capture_output=True, check=True)
    engine.close()


def count(tree: Path | None, records: int, calls: int) -> dict[str, float]:
    """Instructions per call of each case, with the octopus of ``tree`` (None: this one)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        env = dict(os.environ, PYTHONHASHSEED="0")
        if tree is not None:
            env["PYTHONPATH"] = str(tree)
        subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                        "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable,
                        __file__, "--child", str(records), str(calls)],
                       env=env, cwd=HERE, capture_output=True, check=True, timeout=3600)
        counts = {what: total / calls for what, total in callgrind_dumps(Path(tmp)).items()}
        return counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--calls", type=int, default=2_000)
    ap.add_argument("--baseline", type=Path, help="a checkout of older code to count too")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    now = count(None, args.records, args.calls)
    rows = [["octopus get_names", f"{now['octopus']:,.0f}",
             f"{now['octopus'] / now['sqlite']:.2f}×"]]
    if args.baseline:
        old = count(args.baseline.resolve(), args.records, args.calls)
        rev = commit_of(args.baseline) or args.baseline.name
        rows.append([f"before: octopus ({rev})", f"{old['octopus']:,.0f}",
                     f"{old['octopus'] / old['sqlite']:.2f}×"])
    rows.append(["sqlite3, composite index (vendor, device_id)", f"{now['sqlite']:,.0f}",
                 "1.00×"])
    text = table(f"`{QUERY}`, {args.records:,} records: instructions per call (callgrind, "
                 f"the calling thread, {args.calls:,} calls)",
                 ["query", "instructions", "× sqlite"], rows)
    if not args.no_record:
        record_results(SECTION, text)


if __name__ == "__main__":
    main()

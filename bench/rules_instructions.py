"""Instructions a set costs the writing thread with rules (docs/rules.md), counted.

    .venv/bin/python bench/rules_instructions.py [--sets N] [--baseline DIR]

bench/rules.py times the sets of its workload; on this shared 2-core machine the
timings of one run move by ±30% and more with the other engineers' load, which hides
changes of 10-20%. This script counts instead: each configuration of bench/rules.py
(no rules, its 10 derived watches, its 10 invariants; a device's temperature and a
driver's move) runs once under valgrind's callgrind, which counts the instructions
the writing thread executes for ``--sets`` sets (Python and Prolog, after 300 sets of
warm-up; the other threads, the dispatcher running the handlers and SWI-Prolog's
garbage collector, counted apart). The counts do not depend on the load; a window of
few sets may or may not catch a garbage collection of the store's clauses (millions of
instructions), hence the default of 2,000 sets. ``--baseline DIR`` counts the same
with the octopus of another checkout (DIR holds its ``octopus/`` and ``prolog/``, e.g.
``git worktree add`` of an older commit), in the same run, for a before/after.

Needs valgrind (callgrind_control on the PATH). Takes a few minutes: callgrind runs the
100,000-record build some 50 times slower.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import record_results, table

HERE = Path(__file__).resolve().parent
CONFIGS = [(which, kind) for kind in ("temperature", "move")
           for which in ("none", "watches", "invariants")]
KIND_NAMES = {"temperature": "a device's temperature", "move": "a driver moves"}


def child(which: str, kind: str, sets: int) -> None:
    """Run under callgrind: build, warm up, count ``sets`` sets."""
    import rules as bench

    with contextlib.redirect_stderr(io.StringIO()):
        engine = bench.build(which)
    if which == "watches":
        for goal in bench.WATCHED:
            engine.watch_rule(goal, lambda ev: None)
    elif which == "invariants":
        for name, text in bench.INVARIANTS.items():
            engine.invariant(name, text)
    workload = bench.Workload(engine)
    step = getattr(bench.Workload, kind)
    for _ in range(300):
        step(workload)
    engine.flush()
    pid = str(os.getpid())
    subprocess.run(["callgrind_control", "-i", "on", pid], capture_output=True, check=True)
    for _ in range(sets):
        step(workload)
    subprocess.run(["callgrind_control", "-i", "off", pid], capture_output=True, check=True)
    engine.flush()
    engine.close()


def count(tree: Path | None, which: str, kind: str, sets: int) -> tuple[float, float]:
    """(writer's instructions per set, the other threads' per set)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                        "--instr-atstart=no", f"--callgrind-out-file={out}",
                        sys.executable, __file__, "--child", which, kind, str(sets)],
                       env=env, cwd=HERE, capture_output=True, check=True, timeout=3600)
        totals = {}
        for path in sorted(Path(tmp).glob("cg.out-*")):
            for line in path.read_text().splitlines():
                if line.startswith("totals:"):
                    totals[path.name] = int(line.split()[1])
        writer = totals.pop("cg.out-01")
        return writer / sets, sum(totals.values()) / sets


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--child":
        child(args[1], args[2], int(args[3]))
        return
    sets = int(args[args.index("--sets") + 1]) if "--sets" in args else 2000
    baseline = Path(args[args.index("--baseline") + 1]) if "--baseline" in args else None
    trees: list[tuple[str, Path | None]] = [("this tree", None)]
    if baseline is not None:
        trees.insert(0, ("baseline", baseline))
    counts = {(label, which, kind): count(tree, which, kind, sets)
              for label, tree in trees for which, kind in CONFIGS}
    rows = []
    for kind in ("temperature", "move"):
        for label, _ in trees:
            none = counts[(label, "none", kind)][0]
            cells = [KIND_NAMES[kind], label, f"{none / 1e3:,.0f}k"]
            for which in ("watches", "invariants"):
                writer, others = counts[(label, which, kind)]
                cells += [f"{writer / 1e3:,.0f}k", f"{writer / none:.2f}×",
                          f"{others / 1e3:,.0f}k"]
            rows.append(cells)
    text = table(f"Instructions per set ({sets} sets counted): the writing thread, and "
                 "the other threads (the dispatcher, Prolog's garbage collector)",
                 ["set", "code", "no rules", "10 watches", "ratio", "other threads",
                  "10 invariants", "ratio", "other threads"], rows)
    record_results("Rules over live records, counted (bench/rules_instructions.py)", text)


if __name__ == "__main__":
    main()

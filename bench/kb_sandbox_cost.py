"""What does the knowledge-base sandbox cost per call? Before and after, interleaved.

Runs the same knowledge-base calls in fresh processes against two trees: this checkout
and the code before the sandbox (``--before``, a git revision, exported with ``git
archive`` into a temporary directory), alternating rounds so that both see the same
machine load. Each process consults Kaluga's files (prolog/device_db.pl,
prolog/kaluga.pl), warms up, then times every call with ``time.process_time`` — the CPU
of the whole process, so the sandbox's watchdog thread counts too — which another
process's load disturbs less than wall-clock time. Reported: the best round of each
(µs of CPU per call), the difference and the ratio.

    .venv/bin/python bench/kb_sandbox_cost.py [--rounds 5] [--calls 3000] [--before REV]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from common import table

ROOT = Path(__file__).resolve().parents[1]
#: the parent of the commit that put the knowledge base in a sandbox
BEFORE = "cea9dea0d875eb7d9357a02cb072ab9991186ab4^"

CHILD = textwrap.dedent("""
    import json, sys, time
    import octopus
    from octopus.kaluga.drivers import knowledge_base_files

    calls = int(sys.argv[1])
    DRIVER = ("find_pci_driver(linux, pci(V, D, 0, -1, -1, 2, 0, 0), "
              "driver(Bin, _, _, _, _, _, _))")
    goals = {
        "prolog_once: true": ("true", {}),
        "prolog_once: X = 1": ("X = 1", {}),
        "prolog_once: atom_length (1 binding)": ("atom_length(A, N)", {"A": "hello"}),
        "prolog_once: find_pci_driver (Kaluga)": (DRIVER, {"V": 0x8086, "D": 0x10FB}),
        "prolog_once: pci_label (Kaluga)": ("pci_label(V, D, C, S, L)",
                                            {"V": 0x8086, "D": 0x10FB, "C": 2, "S": 0}),
        "prolog: between(1, 1000, X) (1000 solutions)": ("between(1, 1000, X)", {}),
    }
    engine = octopus.Engine()
    for path in knowledge_base_files():
        engine.consult(path, progress=False)
    out = {}
    for name, (goal, bindings) in goals.items():
        n = calls // 100 if "1000 solutions" in name else calls
        call = engine.prolog if "1000 solutions" in name else engine.prolog_once
        for _ in range(n // 10):
            call(goal, **bindings)
        start = time.process_time()
        for _ in range(n):
            call(goal, **bindings)
        out[name] = (time.process_time() - start) / n * 1e6
    facts = "".join(f"fact({i}, 'name {i}', [a, b]).\\n" for i in range(2000))
    n = max(calls // 300, 3)
    start = time.process_time()
    for _ in range(n):
        engine.add_facts(facts)
    out["add_facts: 2,000 facts"] = (time.process_time() - start) / n * 1e6
    engine.close()
    print(json.dumps(out))
""")


def run(tree: Path, calls: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(calls)], cwd=tree,
                          capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {done.stderr.strip()}")
    return json.loads(done.stdout)   # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--before", default=BEFORE, help="git revision without the sandbox")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before_tree = Path(tmp)
        archive = subprocess.run(["git", "archive", args.before], cwd=ROOT,
                                 capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(before_tree)], input=archive.stdout,
                       check=True)
        best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
        for r in range(args.rounds):
            for label, tree in (("before", before_tree), ("after", ROOT)):
                for name, us in run(tree, args.calls).items():
                    best[label][name] = min(best[label].get(name, us), us)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    rows = []
    for name, after in best["after"].items():
        before = best["before"][name]
        rows.append([name, f"{before:,.1f}", f"{after:,.1f}", f"{after - before:+,.1f}",
                     f"{after / before:.2f}x"])
    table(f"Knowledge-base calls, µs of CPU per call, best of {args.rounds} interleaved "
          f"rounds (bench/kb_sandbox_cost.py)",
          ["call", "before" if args.before != BEFORE else "before the sandbox",
           "this checkout", "added", "ratio"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

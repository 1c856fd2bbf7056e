"""Run every benchmark in bench/ in turn (`make bench`); each updates its section of
bench/RESULTS.md. Takes about ten minutes on a 2-core machine (the 1.4-million-record
runs dominate), ten more with `compare` (octopus, SQLite and Redis at 10,000 to 1,000,000
records) and twenty more with `durable` (a million records loaded, restarted and loaded
into Redis). Pass script names to run only some: `bench/run_all.py store triggers`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["store", "unification_overhead", "parse", "compare", "load", "index_choice", "triggers",
           "regex_limits", "recipes", "kb_load", "server", "server_keys", "cluster", "durable",
           "loc"]


def main() -> int:
    chosen = sys.argv[1:] or SCRIPTS
    unknown = [s for s in chosen if s not in SCRIPTS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")
        return 2
    failed = []
    for name in chosen:
        print(f"\n=== bench/{name}.py ===", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(HERE / f"{name}.py")], cwd=HERE)
        print(f"=== {name}: exit {result.returncode}, {time.perf_counter() - start:.0f} s",
              flush=True)
        if result.returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

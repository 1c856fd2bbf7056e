"""What does a sandboxed, bounded knowledge-base goal cost? (calls/s)

Kaluga's questions (prolog/kaluga.pl over prolog/device_db.pl) and trivial goals,
through ``engine.prolog_once``: the goal is parsed, checked by the sandbox (or its
remembered verdict reused), run under a deadline and an inference limit in the calling
thread, and its solution exported. Also: the sandbox's check of a Kaluga goal when no
verdict is remembered, and an iterator's open, first step and close (a Prolog engine of
its own).

    .venv/bin/python bench/kb_query.py [--seconds S]
"""

from __future__ import annotations

import argparse

from common import per_second, table

import octopus
from octopus.kaluga.drivers import knowledge_base_files

DRIVER = "find_pci_driver(linux, pci(V, D, 0, -1, -1, 2, 0, 0), driver(Bin, _, _, _, _, _, _))"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    engine = octopus.Engine()
    for path in knowledge_base_files():
        engine.consult(path, progress=False)
    goals = {
        "true": ("true", {}),
        "X = 1": ("X = 1", {}),
        "find_pci_driver (Kaluga)": (DRIVER, {"V": 0x8086, "D": 0x10FB}),
        "pci_label (Kaluga)": ("pci_label(V, D, C, S, L)",
                               {"V": 0x8086, "D": 0x10FB, "C": 2, "S": 0}),
    }
    rows = []
    for name, (goal, bindings) in goals.items():
        rate = per_second(lambda g=goal, b=bindings: engine.prolog_once(g, **b),
                          seconds=args.seconds, batch=100)
        rows.append([f"prolog_once: {name}", f"{rate:,.0f}", f"{1e6 / rate:,.0f}"])

    def unremembered() -> None:      # a new text each time: the sandbox checks it
        unremembered.n += 1          # type: ignore[attr-defined]
        engine.prolog_once(f"{DRIVER}, _N = {unremembered.n}",  # type: ignore[attr-defined]
                           V=0x8086, D=0x10FB)
    unremembered.n = 0               # type: ignore[attr-defined]
    rate = per_second(unremembered, seconds=args.seconds, batch=20)
    rows.append(["prolog_once: find_pci_driver, checked each time", f"{rate:,.0f}",
                 f"{1e6 / rate:,.0f}"])

    def iterate() -> None:
        with engine.prolog_iter("between(1, inf, X)") as it:
            next(it)
    rate = per_second(iterate, seconds=args.seconds, batch=50)
    rows.append(["prolog_iter: open, first step, close", f"{rate:,.0f}", f"{1e6 / rate:,.0f}"])
    table("Knowledge-base goals (bench/kb_query.py)", ["call", "calls/s", "µs/call"],
          rows)
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What rules over live records cost a write (docs/rules.md).

    .venv/bin/python bench/rules.py [--quick] [--baseline CHECKOUT]

Side by side in one run, over 100,000 records (40,000 devices, 36,000 drivers, 20,000
services, 4,000 records no rule reads):

1. The latency of a set with 10 derived watches (10 relations: joins, negation,
   comparisons, rules calling rules) against the same set with none — goal: at most
   2x — and against recomputing the 10 relations from scratch after the set (what a
   watch would cost without incremental evaluation). Three kinds of set: a device's
   temperature, a driver moving to another device, and a record no rule reads.
2. The same sets with 10 invariants against none — goal: at most 1.5x.
3. The first delivery of a relation with 10,000 rows (``existing=True``): the call, and
   until the handler has had every row.
4. SWI-Prolog's own incremental and monotonic tabling of one of the relations over the
   same 100,000 records as plain facts: one change, then the table read again.

Engines are measured in interleaved rounds (best of each), so that the drift of this
shared machine does not masquerade as rule cost.

``--baseline CHECKOUT`` (another source checkout, e.g. ``git worktree add --detach
/tmp/base REV``) measures only the sets of 1. and 2., on that checkout's octopus and on
this one, in child processes taking turns (each builds its engines and runs the
rounds; best of each over the turns), and puts them side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import progress, record_results, table

import octopus
from octopus import Atom

CLASSES = ["storage", "net", "gpu", "usb"]
BINARIES = {"storage": "ahcid", "net": "e1000n", "gpu": "vgad", "usb": "xhcid"}
DEVICES, DRIVERS, SERVICES, OTHERS = 40_000, 36_000, 20_000, 4_000

FACTS = """
pci_class(storage). pci_class(net). pci_class(gpu). pci_class(usb).
driver_for(storage, ahcid). driver_for(net, e1000n). driver_for(gpu, vgad).
driver_for(usb, xhcid).
known_vendor(32902). known_vendor(4318). known_vendor(5555).
"""

RULES = """
driven(Dev) :- attr(Drv, device, Dev), record(Drv).
unbound(Dev) :- attr(Dev, class, C), pci_class(C), \\+ driven(Dev).
orphan(Drv) :- attr(Drv, device, Dev), \\+ record(Dev).
shared(Dev) :- attr(A, device, Dev), attr(B, device, Dev), A @< B.
hot(Dev, T) :- attr(Dev, temp, T), T > 90.
mismatched(Drv) :- attr(Drv, device, Dev), attr(Drv, binary, B), attr(Dev, class, C),
    \\+ driver_for(C, B).
irq_clash(A, B) :- attr(A, irq, I), attr(B, irq, I), A @< B.
dup_service(S) :- attr(X, service, S), attr(Y, service, S), X @< Y.
no_provider(Svc) :- attr(Svc, provider, P), \\+ record(P).
degraded(Svc) :- attr(Svc, provider, P), attr(P, device, Dev), hot(Dev, _).
idle_driver(Drv) :- attr(Drv, binary, _), \\+ attr(_, provider, Drv).
storage(Dev) :- attr(Dev, class, storage).
"""

WATCHED = ["unbound(D)", "orphan(D)", "shared(D)", "hot(D, T)", "mismatched(D)",
           "irq_clash(A, B)", "dup_service(S)", "no_provider(S)", "degraded(S)",
           "idle_driver(D)"]

INVARIANTS = {
    "one_driver": "v(Dev) :- shared(Dev).",
    "no_dangling": "v(Drv) :- orphan(Drv).",
    "temperature": "v(Dev, T) :- attr(Dev, temp, T), T > 120.",
    "irq_unique": "v(A, B) :- irq_clash(A, B).",
    "service_unique": "v(S) :- dup_service(S).",
    "provider_exists": "v(S) :- no_provider(S).",
    "right_binary": "v(D) :- mismatched(D).",
    "vendor_known": "v(Dev) :- attr(Dev, vendor, V), \\+ known_vendor(V).",
    "class_known": "v(Dev) :- attr(Dev, class, C), \\+ pci_class(C).",
    "service_has_provider": "v(S) :- attr(S, service, _), \\+ attr(S, provider, _).",
}


def dev(i: int) -> str:
    return f"hw.pci.device.{i}"


def drv(i: int) -> str:
    return f"driver.{i}"


def records() -> list[tuple[str, dict[str, Any]]]:
    """The 100,000 records: device i has class CLASSES[i % 4] (so every tenth device
    of a class, i % 40 < 4, has no driver), driver i serves device i."""
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(DEVICES):
        out.append((dev(i), {"class": Atom(CLASSES[i % 4]), "vendor": [32902, 4318, 5555][i % 3],
                             "irq": 1000 + i, "temp": 30 + i % 60}))
    bound = [i for i in range(DEVICES) if i % 40 >= 4][:DRIVERS]
    for i in bound:
        out.append((drv(i), {"device": Atom(dev(i)), "binary": Atom(BINARIES[CLASSES[i % 4]])}))
    for k in range(SERVICES):
        out.append((f"svc.{k}", {"service": Atom(f"name{k}"), "provider": Atom(drv(bound[k]))}))
    for k in range(OTHERS):
        out.append((f"stats.{k}", {"hits": k}))
    assert len(out) == DEVICES + DRIVERS + SERVICES + OTHERS == 100_000
    return out


class Workload:
    """The three kinds of set, valid under every invariant: a device's temperature (up
    to 99), a driver moving to a device of its class that has none, a record no rule
    reads. Each engine gets its own, with the same seed."""

    def __init__(self, engine: octopus.Engine, seed: int = 7) -> None:
        self.engine = engine
        self.rng = random.Random(seed)
        self.device_of = {i: i for i in range(DEVICES) if i % 40 >= 4}
        self.free: dict[int, list[int]] = {c: [] for c in range(4)}
        for i in range(DEVICES):
            if i % 40 < 4:
                self.free[i % 4].append(i)
        self.drivers = sorted(self.device_of)

    def temperature(self) -> None:
        i = self.rng.randrange(DEVICES)
        self.engine.set("%n { class: %n, vendor: %d, irq: %d, temp: %d }", dev(i),
                        CLASSES[i % 4], [32902, 4318, 5555][i % 3], 1000 + i,
                        self.rng.randrange(30, 100))

    def move(self) -> None:
        d = self.rng.choice(self.drivers)
        old = self.device_of[d]
        pool = self.free[old % 4]
        new = pool.pop(self.rng.randrange(len(pool)))
        self.engine.set("%n { device: %n, binary: %n }", drv(d), dev(new),
                        BINARIES[CLASSES[old % 4]])
        pool.append(old)
        self.device_of[d] = new

    def unrelated(self) -> None:
        self.engine.set("%n { hits: %d }", f"stats.{self.rng.randrange(OTHERS)}",
                        self.rng.randrange(1_000_000))


KINDS: dict[str, Callable[[Workload], None]] = {
    "a device's temperature": Workload.temperature,
    "a driver moves": Workload.move,
    "a record no rule reads": Workload.unrelated,
}


def build(label: str) -> octopus.Engine:
    engine = octopus.Engine()
    engine.add_facts(FACTS)
    engine.rules(RULES)
    rows = records()
    engine.set_many(rows, progress=progress(len(rows), f"{label:>13}"))
    engine.warm()
    return engine


def seconds_per_set(workload: Workload, kind: Callable[[Workload], None],
                    n: int) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of the writing thread) per set. The writer's
    CPU leaves out the dispatcher thread that runs the handlers (and the GIL hand-off
    to it): it is what evaluating the rules adds to the write itself."""
    start, cpu = time.perf_counter(), time.thread_time()
    for _ in range(n):
        kind(workload)
    elapsed, used = time.perf_counter() - start, time.thread_time() - cpu
    workload.engine.flush()
    return elapsed / n, used / n


def from_scratch(engine: octopus.Engine) -> float:
    """Seconds to compute the 10 watched relations once, from scratch, through the
    knowledge base. ``engine`` must have the watches installed: the rules' index of the
    keys they read exists only then (docs/rules.md), and without it a join on a key
    (``shared/1``) visits every record per row and runs into the query's time limit."""
    start = time.perf_counter()
    for goal in WATCHED:
        engine.prolog(goal)
    return time.perf_counter() - start


def swi_tabling(quick: bool) -> list[list[str]]:
    """SWI-Prolog's incremental and monotonic tabling over the same records as facts."""
    from octopus._prolog import find_swipl_home

    home = Path(find_swipl_home())
    swipl = str(sorted(home.glob("bin/*/swipl"))[0])
    n_dev = DEVICES // (10 if quick else 1)
    program = f"""
:- dynamic([attr/3, rec/1], [incremental(true)]).
:- dynamic([mattr/3], [monotonic]).
:- table unbound/1 as incremental.
:- table hot/2 as monotonic.
pci_class(storage). pci_class(net). pci_class(gpu). pci_class(usb).
cls(0, storage). cls(1, net). cls(2, gpu). cls(3, usb).
driven(D) :- attr(Drv, device, D), rec(Drv).
unbound(D) :- attr(D, class, C), pci_class(C), \\+ driven(D).
hot(D, T) :- mattr(D, temp, T), T > 90.
load :- forall(between(0, {n_dev - 1}, I),
           ( atom_concat(d, I, D), C0 is I mod 4, cls(C0, C),
             assertz(attr(D, class, C)), assertz(rec(D)),
             T is 30 + I mod 60, assertz(mattr(D, temp, T)),
             (   I mod 40 >= 4
             ->  atom_concat(drv, I, R), assertz(attr(R, device, D)), assertz(rec(R))
             ;   true ) )).
time(G, N, T) :- statistics(cputime, T0), forall(between(1, N, _), G),
    statistics(cputime, T1), T is (T1 - T0) / N.
move(I) :- atom_concat(drv, I, R), atom_concat(d, I, D), retract(attr(R, device, D)),
    aggregate_all(count, unbound(_), _), assertz(attr(R, device, D)),
    aggregate_all(count, unbound(_), _).
heat(K) :- atom_concat(d, K, D), assertz(mattr(D, temp, 95)),
    aggregate_all(count, hot(_, _), _).
cool(K) :- atom_concat(d, K, D), retract(mattr(D, temp, 95)),
    aggregate_all(count, hot(_, _), _).
main :- load,
    time(aggregate_all(count, unbound(_), _), 1, First),
    time(move(5), 5, Move),
    time(aggregate_all(count, hot(_, _), _), 1, HFirst),
    numlist(1, 20, Ks),
    statistics(cputime, A0), forall(member(K, Ks), heat(K)), statistics(cputime, A1),
    forall(member(K, Ks), cool(K)), statistics(cputime, A2),
    Heat is (A1 - A0) / 20, Cool is (A2 - A1) / 20,
    format("~w ~w ~w ~w ~w~n", [First, Move, HFirst, Heat, Cool]).
"""
    with tempfile.NamedTemporaryFile("w", suffix=".pl", delete=False) as f:
        f.write(program)
        path = f.name
    try:
        out = subprocess.run([swipl, "-q", "--no-packs", "-g", "main", "-t", "halt", path],
                             capture_output=True, text=True, timeout=1200, check=True).stdout
    finally:
        Path(path).unlink()
    first, move, hfirst, heat, cool = (float(x) for x in out.split())
    facts = f"{n_dev * 5 - n_dev // 10 * 2:,}"
    return [
        [f"incremental tabling, unbound/1 ({facts} facts)", "first evaluation",
         f"{first * 1e3:.1f} ms"],
        ["", "a driver's fact retracted, table read; asserted back, read (per change)",
         f"{move / 2 * 1e3:.1f} ms"],
        ["monotonic tabling, hot/2", "first evaluation", f"{hfirst * 1e3:.1f} ms"],
        ["", "a fact asserted, table read", f"{heat * 1e3:.2f} ms"],
        ["", "that fact retracted, table read (monotonic tables re-evaluate)",
         f"{cool * 1e3:.1f} ms"],
    ]


def build_engines() -> dict[str, octopus.Engine]:
    """The four engines of the set measurements: no rules, a firing record trigger, the
    10 watches, the 10 invariants."""
    engines = {"none": build("no rules"), "trigger": build("1 trigger"),
               "watches": build("10 watches"), "invariants": build("10 invariants")}
    # The cost of delivering events at all, for comparison: one record trigger that
    # fires on every set of the first two kinds.
    engines["trigger"].watch("_ { temp: _ }", lambda ev: None)
    engines["trigger"].watch("_ { device: _ }", lambda ev: None)
    for goal in WATCHED:
        engines["watches"].watch_rule(goal, lambda ev: None)
    for name, text in INVARIANTS.items():
        engines["invariants"].invariant(name, text)
    return engines


def measure_sets(engines: dict[str, octopus.Engine], sets: int, rounds: int
                 ) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
    """(best wall seconds, best writer CPU seconds) per set, by (engine, kind)."""
    workloads = {k: Workload(e) for k, e in engines.items()}
    best: dict[tuple[str, str], float] = {}
    cpu: dict[tuple[str, str], float] = {}
    for r in range(rounds):
        for kind_name, kind in KINDS.items():
            for label, workload in workloads.items():
                t, c = seconds_per_set(workload, kind, sets)
                key = (label, kind_name)
                best[key] = min(best.get(key, t), t)
                cpu[key] = min(cpu.get(key, c), c)
        print(f"round {r + 1}/{rounds}", file=sys.stderr)
    return best, cpu


def sets_child(sets: int, rounds: int) -> None:
    """--sets-child: measure_sets() of the octopus on PYTHONPATH, as JSON."""
    engines = build_engines()
    best, cpu = measure_sets(engines, sets, rounds)
    for e in engines.values():
        e.close()
    print(json.dumps({"best": {"|".join(k): v for k, v in best.items()},
                      "cpu": {"|".join(k): v for k, v in cpu.items()},
                      "load": os.getloadavg()[0]}))


def compare(baseline: Path, sets: int, rounds: int, turns: int) -> str:
    """The sets of 1. and 2. on ``baseline``'s octopus and this one, in child processes
    taking turns."""
    here = Path(__file__).resolve().parent.parent
    checkouts = {"before": baseline.resolve(), "after": here}
    got: dict[str, dict[str, dict[str, float]]] = {n: {"best": {}, "cpu": {}}
                                                   for n in checkouts}
    loads: list[float] = []
    for turn in range(turns):
        for name, root in checkouts.items():
            print(f"turn {turn + 1}/{turns}: {name} ({root})", file=sys.stderr)
            env = dict(os.environ, PYTHONPATH=str(root))
            reply = subprocess.run([sys.executable, __file__, "--sets-child", str(sets),
                                    str(rounds)], env=env, capture_output=True, text=True,
                                   check=True)
            data = json.loads(reply.stdout.splitlines()[-1])
            loads.append(data["load"])
            for what in ("best", "cpu"):
                for key, value in data[what].items():
                    old = got[name][what].get(key, value)
                    got[name][what][key] = min(old, value)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=baseline,
                            capture_output=True, text=True).stdout.strip() or baseline.name
    out = []
    for what, title in (("cpu", "CPU of the writing thread"), ("best", "wall-clock")):
        rows = []
        for kind_name in KINDS:
            for rules in ("watches", "invariants"):
                cells = [kind_name, f"10 {rules}"]
                for name in checkouts:
                    none = got[name][what][f"none|{kind_name}"]
                    with_rules = got[name][what][f"{rules}|{kind_name}"]
                    cells += [f"{none * 1e6:.1f}", f"{with_rules * 1e6:.1f}",
                              f"{with_rules / none:.2f}×"]
                cells.append("≤ 2×" if rules == "watches" else "≤ 1.5×")
                rows.append(cells)
        out.append(table(
            f"{title}, µs per set: before (commit {commit}) and after, in child processes "
            f"taking turns ({turns} each, {rounds} rounds of {sets} sets, best of each; "
            f"load average {min(loads):.1f}-{max(loads):.1f})",
            ["set", "rules", "before: no rules", "before: with rules", "ratio",
             "after: no rules", "after: with rules", "ratio", "goal"], rows))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--baseline", type=Path,
                        help="a source checkout to measure the sets against")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--sets-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sets_child:
        sets_child(*args.sets_child)
        return
    quick = args.quick
    sets = 300 if quick else 1500
    rounds = 3 if quick else 5
    if args.baseline is not None:
        text = compare(args.baseline, sets, rounds, args.turns)
        print(text)
        if not quick:
            record_results("Rules over live records, before and after (bench/rules.py "
                           "--baseline)", text)
        return
    out: list[str] = []

    engines = build_engines()
    best, cpu = measure_sets(engines, sets, rounds)
    scratch = min(from_scratch(engines["watches"]) for _ in range(2 if quick else 3))

    rows = []
    for kind_name in KINDS:
        none = best[("none", kind_name)]
        watches = best[("watches", kind_name)]
        trig = best[("trigger", kind_name)]
        rows.append([kind_name, f"{none * 1e6:.0f}", f"{trig * 1e6:.0f}",
                     f"{watches * 1e6:.0f}", f"{watches / none:.2f}×",
                     f"{(none + scratch) * 1e3:,.0f} ms",
                     f"{(none + scratch) / watches:,.0f}×"])
    out.append(table(
        "A set with 10 derived watches over 100,000 records (wall µs per set; goal ≤ 2×)",
        ["set", "no watches", "1 firing trigger", "10 watches", "ratio",
         "set + recompute the 10 relations", "watches faster by"], rows))
    rows = []
    for kind_name in KINDS:
        none, trig = cpu[("none", kind_name)], cpu[("trigger", kind_name)]
        watches, inv = cpu[("watches", kind_name)], cpu[("invariants", kind_name)]
        rows.append([kind_name, f"{none * 1e6:.0f}", f"{trig * 1e6:.0f}",
                     f"{watches * 1e6:.0f}", f"{watches / none:.2f}×",
                     f"{inv * 1e6:.0f}", f"{inv / none:.2f}×"])
    out.append(table(
        "The same sets: CPU of the writing thread (µs per set; handlers run elsewhere)",
        ["set", "no rules", "1 firing trigger", "10 watches", "ratio", "10 invariants",
         "ratio"], rows))

    rows = []
    for kind_name in KINDS:
        none = best[("none", kind_name)]
        inv = best[("invariants", kind_name)]
        rows.append([kind_name, f"{none * 1e6:.0f}", f"{inv * 1e6:.0f}", f"{inv / none:.2f}×"])
    out.append(table(
        "A set with 10 invariants over 100,000 records (wall µs per set; goal ≤ 1.5×)",
        ["set", "no invariants", "10 invariants", "ratio"], rows))

    engine = engines["none"]
    got = []
    rows = []
    for _ in range(3):
        got.clear()
        t0 = time.perf_counter()
        watch = engine.watch_rule("storage(Dev)", got.append, existing=True)
        t1 = time.perf_counter()
        engine.flush()
        t2 = time.perf_counter()
        assert len(got) == 10_000, len(got)
        watch.remove()
        engine.flush()
        rows.append((t1 - t0, t2 - t0))
    call, handled = min(rows)
    out.append(table("First delivery of a relation with 10,000 rows (existing=True)",
                     ["measure", "time"],
                     [["watch_rule returns (rows computed, events queued)",
                       f"{call * 1e3:.0f} ms"],
                      ["the handler has had all 10,000 rows", f"{handled * 1e3:.0f} ms"]]))
    for e in engines.values():
        e.close()

    out.append(table("SWI-Prolog tabling of the same relations, over plain facts",
                     ["tabling", "what", "time"], swi_tabling(quick)))
    if not quick:
        record_results("Rules over live records (bench/rules.py)", "\n".join(out))


if __name__ == "__main__":
    main()

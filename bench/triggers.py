"""What installed triggers cost a change, and publish throughput.

    .venv/bin/python bench/triggers.py [--baseline CHECKOUT]

1. Latency of a `set` with 0, 1,000, 10,000 and 100,000 installed non-matching triggers
   (exact names of other records, `key: value` on values the record does not have, keys it
   does not have) — target: 10,000 cost at most 2x the latency with none. Beside it, the
   same set when every trigger must be tested (what matching without the bitmap index
   costs), and triggers on a name regex only, which the index cannot narrow.
2. Publish throughput to 1, 10 and 100 matching subscribers, beside a plain Python loop
   calling the same number of handlers.
3. CPU of the writing thread per set (``time.thread_time``: the dispatcher thread that
   runs the handlers is left out) with no trigger, 1 firing trigger (decided in Python,
   or by the full match in Prolog: docs/events.md, "The writer's share"), 10 firing and
   10,000 non-matching. With
   ``--baseline CHECKOUT`` (another source checkout, e.g. ``git worktree add --detach
   /tmp/base main``) the same measurement runs on that checkout's octopus too, the two
   in alternating child processes, and the table puts them side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import per_second, record_results, table

import octopus


def install_non_matching(engine: octopus.Engine, n: int) -> None:
    def nothing(event: octopus.Event) -> None:
        pass

    for i in range(n):
        kind = i % 3
        if kind == 0:
            engine.watch(f"other.{i}", nothing)
        elif kind == 1:
            engine.watch("_ { vendor: %d }", nothing, 100_000 + i)
        else:
            engine.watch(f"_ {{ key{i}: _ }}", nothing)


REC = "hw.pci.device.7 { vendor: 0x8086, device_id: 4110 }"

#: Writer-CPU scenarios: label and the watches installed (query, parameters).
SCENARIOS: list[tuple[str, list[tuple[str, tuple[object, ...]]]]] = [
    ("no trigger", []),
    ("1 firing: hw.pci.device.7 (exact name)", [("hw.pci.device.7", ())]),
    ("1 firing: _ { vendor: _ } (key present)", [("_ { vendor: _ }", ())]),
    ("1 firing: _ { vendor: %d } (key: value)", [("_ { vendor: %d }", (0x8086,))]),
    ("1 firing: _ { vendor > %d } (full match in Prolog)", [("_ { vendor > %d }", (1,))]),
    ("10 firing (4 exact name, 3 key: value, 3 in Prolog)",
     [("hw.pci.device.7", ())] * 4 + [("_ { device_id: %d }", (4110,))] * 3
     + [("_ { device_id >= %d }", (4110,))] * 3),
    ("10,000 non-matching", []),
]


def writer_cpu(rounds: int = 5, sets: int = 2000) -> dict[str, float]:
    """Microseconds of the writing thread's CPU per set, best of ``rounds``, per scenario
    (engines side by side, measured in turns)."""
    engines = {}
    for label, watches in SCENARIOS:
        engine = octopus.Engine()
        for q, params in watches:
            engine.watch(q, lambda event: None, *params)
        if label.startswith("10,000"):
            install_non_matching(engine, 10_000)
        engine.set(REC)
        engine.flush()
        engines[label] = engine
    best: dict[str, float] = {}
    for _ in range(rounds):
        for label, engine in engines.items():
            cpu = time.thread_time()
            for _ in range(sets):
                engine.set(REC)
            used = (time.thread_time() - cpu) / sets * 1e6
            engine.flush()
            best[label] = min(best.get(label, used), used)
    for engine in engines.values():
        engine.close()
    return best


def writer_cpu_children(checkouts: dict[str, Path], turns: int = 3) -> dict[str, dict[str, float]]:
    """writer_cpu() of each checkout's octopus, in child processes taking turns."""
    best: dict[str, dict[str, float]] = {name: {} for name in checkouts}
    for _ in range(turns):
        for name, root in checkouts.items():
            env = dict(os.environ, PYTHONPATH=str(root))
            reply = subprocess.run([sys.executable, __file__, "--writer-cpu-child"], env=env,
                                   capture_output=True, text=True, check=True)
            for label, us in json.loads(reply.stdout.splitlines()[-1]).items():
                best[name][label] = min(best[name].get(label, us), us)
    return best


def writer_cpu_table(baseline: Path | None) -> str:
    title = "CPU of the writing thread per set (µs; handlers run on the dispatcher thread)"
    if baseline is None:
        got = writer_cpu()
        none = got["no trigger"]
        rows = [[label, f"{us:.1f}", f"{us - none:.1f}"] for label, us in got.items()]
        return table(title, ["set", "µs", "µs more than no trigger"], rows)
    here = Path(__file__).resolve().parent.parent
    got = writer_cpu_children({"before": baseline.resolve(), "after": here})
    before, after = got["before"], got["after"]
    rows = []
    for label, _ in SCENARIOS:
        b, a = before[label], after[label]
        rows.append([label, f"{b:.1f}", f"{a:.1f}", f"{a / b:.2f}×",
                     f"{b - before['no trigger']:.1f}", f"{a - after['no trigger']:.1f}"])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=baseline,
                            capture_output=True, text=True).stdout.strip() or baseline.name
    return table(f"{title}: before (commit {commit}) and after",
                 ["set", "before", "after", "after/before", "before: more than no trigger",
                  "after: more than no trigger"], rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path,
                        help="a source checkout to measure the writer's CPU against")
    parser.add_argument("--writer-cpu-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer_cpu_child:
        print(json.dumps(writer_cpu()))
        return
    out = []
    rows = []
    # Engines with 0 ... 100,000 triggers side by side, measured in turns (best of 5
    # rounds each), so that the machine's drift does not masquerade as trigger cost.
    sizes = (0, 1_000, 10_000, 100_000)
    engines = {n: octopus.Engine() for n in sizes}
    for n, engine in engines.items():
        install_non_matching(engine, n)
    best = dict.fromkeys(sizes, 0.0)
    for _ in range(5):
        for n, engine in engines.items():
            best[n] = max(best[n], per_second(
                lambda engine=engine: engine.set(
                    "hw.pci.device.7 { vendor: 0x8086, device_id: 4110 }"),
                seconds=0.3, batch=200, repeat=1))
    for engine in engines.values():
        engine.close()
    base = best[0]
    for n in sizes:
        rows.append([f"{n:,}", "non-matching (exact name / key: value / key)",
                     f"{1e6 / best[n]:.1f}", f"{base / best[n]:.2f}"])
    for n in (1_000, 10_000):
        with octopus.Engine() as engine:
            install_non_matching(engine, n)
            core = engine._core
            everything = sorted(inst.id for inst in core.registry)
            pairs = [("vendor", 0x8086), ("device_id", 4110)]

            def set_and_test_all(core: object = core, everything: list[int] = everything,
                                 pairs: list[tuple[str, int]] = pairs) -> None:
                engine.set("hw.pci.device.7 { vendor: 0x8086, device_id: 4110 }")
                engine._core.store.trigger_match(everything, "hw.pci.device.7", pairs)

            rate = per_second(set_and_test_all, seconds=0.7, batch=5)
            rows.append([f"{n:,}", "same, every trigger tested in Prolog (no index)",
                         f"{1e6 / rate:.1f}", f"{base / rate:.2f}"])
    for n in (1_000, 10_000):
        with octopus.Engine() as engine:
            for i in range(n):
                engine.watch(f"r'^other\\.{i}$'", lambda e: None)
            rate = per_second(
                lambda engine=engine: engine.set("hw.pci.device.7 { vendor: 0x8086 }"),
                seconds=0.7, batch=5)
            rows.append([f"{n:,}", "name-regex-only (always candidates)", f"{1e6 / rate:.1f}",
                         f"{base / rate:.2f}"])
    out.append(table("Latency of one set with installed triggers (target: 10,000 ≤ 2× none)",
                     ["triggers", "kind", "µs per set", "× no triggers"], rows))

    rows = []
    for subs in (1, 10, 100):
        with octopus.Engine() as engine:
            count = [0]

            def handler(event: octopus.Event, count: list[int] = count) -> None:
                count[0] += 1

            for i in range(subs):
                engine.subscribe("_ { topic: 'sensors', seq: _ }" if i % 2 else "reading", handler)
            n = 20_000 // subs + 200
            t0 = time.perf_counter()
            for i in range(n):
                engine.publish("reading { topic: 'sensors', seq: %d }", i)
            engine.flush()
            elapsed = time.perf_counter() - t0
            assert count[0] == n * subs
            handlers = [handler] * subs
            msg = octopus.Record("reading", {"topic": "sensors", "seq": 1})
            t0 = time.perf_counter()
            for _ in range(n):
                for h in handlers:
                    h(octopus.Event(octopus.Mode.ON_PUBLISH, msg, 1, 0))
            plain = time.perf_counter() - t0
            rows.append([f"{subs}", f"{n / elapsed:,.0f}", f"{n * subs / elapsed:,.0f}",
                         f"{n * subs / plain:,.0f}", f"{plain / elapsed:.3f}"])
    out.append(table("Publish throughput (publish + delivery on the dispatcher thread)",
                     ["subscribers", "messages/s", "deliveries/s",
                      "plain Python loop deliveries/s", "× plain"], rows))
    out.append(writer_cpu_table(args.baseline))
    record_results("Triggers and publish (bench/triggers.py)", "\n".join(out))


if __name__ == "__main__":
    main()

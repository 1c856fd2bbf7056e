"""How fast and how fair are the recipes, beside Python's own threading primitives?

Questions (issue 4, section 4), each answered in the same run for octopus and for the
in-process alternative, reported as ratios:

1. uncontended lock acquire+release latency (octopus Lock vs threading.Lock);
2. contended lock throughput and fairness (max wait / mean wait) with 2, 4, 8, 16 threads;
3. double-barrier round time (enter + leave) for n = 2..16 (vs threading.Barrier, two
   waits per round);
4. semaphore throughput under 8 threads (vs threading.BoundedSemaphore).

    .venv/bin/python bench/recipes.py             # print the tables, update RESULTS.md

The octopus numbers include everything a caller pays: query parsing (cached), the
Prolog store, trigger matching and the dispatcher thread's wake-up.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from common import record_results, table

import octopus


def uncontended(engine: octopus.Engine, ops: int) -> list[list[str]]:
    def per_op(acquire: Callable[[], object], release: Callable[[], object]) -> float:
        start = time.perf_counter()
        for _ in range(ops):
            acquire()
            release()
        return (time.perf_counter() - start) / ops * 1e6

    lock, plain = engine.lock("bench.uncontended"), threading.Lock()
    sem, plain_sem = engine.semaphore("bench.sem1", 4), threading.BoundedSemaphore(4)
    per_op(lock.acquire, lock.release)  # warm the query cache and the dispatcher
    rows = []
    for what, ours, theirs in (
            ("Lock", per_op(lock.acquire, lock.release), per_op(plain.acquire, plain.release)),
            ("Semaphore", per_op(sem.acquire, sem.release),
             per_op(plain_sem.acquire, plain_sem.release))):
        rows.append([what, f"{ours:.1f}", f"{theirs:.3f}", f"{ours / theirs:,.0f}"])
    return rows


def contended(make: Callable[[int], AbstractContextManager[Any]], threads: int,
              seconds: float) -> tuple[float, float, float]:
    """Grants per second, mean wait (ms) and max/mean wait with ``threads`` contenders."""
    waits: list[float] = []
    stop = threading.Event()
    guard = threading.Lock()
    ready = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        lock = make(i)
        mine: list[float] = []
        ready.wait()
        while not stop.is_set():
            t0 = time.perf_counter()
            with lock:
                mine.append(time.perf_counter() - t0)
        with guard:
            waits.extend(mine)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    ready.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    mean = statistics.fmean(waits)
    return len(waits) / elapsed, mean * 1e3, max(waits) / mean


def barrier_rounds(engine: octopus.Engine, n: int, rounds: int) -> tuple[float, float]:
    """Milliseconds per round (enter + leave) for octopus and for threading.Barrier."""

    def run(party: Callable[[int], None]) -> float:
        pool = [threading.Thread(target=party, args=(i,)) for i in range(n)]
        start = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return (time.perf_counter() - start) / rounds * 1e3

    def ours(i: int) -> None:
        b = engine.barrier(f"bench.b{n}", n)
        for _ in range(rounds):
            b.enter()
            b.leave()

    plain = threading.Barrier(n)

    def theirs(i: int) -> None:
        for _ in range(rounds):
            plain.wait()
            plain.wait()

    return run(ours), run(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per contended run")
    parser.add_argument("--ops", type=int, default=3000, help="uncontended iterations")
    parser.add_argument("--rounds", type=int, default=30, help="barrier rounds per n")
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    out = [f"Settings: {args.seconds} s per contended run, {args.ops} uncontended pairs, "
           f"{args.rounds} barrier rounds per n.\n"]

    with octopus.Engine() as engine:
        out.append(table("Uncontended acquire + release (µs per pair)",
                         ["primitive", "octopus", "threading", "× threading"],
                         uncontended(engine, args.ops)))

        rows = []
        for threads in (2, 4, 8, 16):
            o_tput, o_mean, o_fair = contended(
                lambda i, t=threads: engine.lock(f"bench.c{t}"), threads, args.seconds)
            plain = threading.Lock()
            p_tput, p_mean, p_fair = contended(lambda i, p=plain: p, threads, args.seconds)
            rows.append([str(threads), f"{o_tput:,.0f}", f"{o_mean:.2f}", f"{o_fair:.1f}",
                         f"{p_tput:,.0f}", f"{p_mean:.4f}", f"{p_fair:,.0f}",
                         f"{p_tput / o_tput:,.0f}"])
        out.append(table(
            "Contended lock: grants/s, mean wait (ms), fairness = max wait / mean wait",
            ["threads", "octopus grants/s", "mean wait", "max/mean", "threading grants/s",
             "mean wait", "max/mean", "threading ×"], rows))

        rows = []
        for n in (2, 4, 8, 12, 16):
            ours, theirs = barrier_rounds(engine, n, args.rounds)
            rows.append([str(n), f"{ours:.2f}", f"{theirs:.3f}", f"{ours / theirs:,.0f}"])
        out.append(table("Double barrier: ms per round (enter + leave)",
                         ["n", "octopus", "threading.Barrier, 2 waits", "× threading"], rows))

        rows = []
        for value in (1, 2, 4):
            o_tput, o_mean, o_fair = contended(
                lambda i, v=value: engine.semaphore(f"bench.s{v}", v), 8, args.seconds)
            plain_sem = threading.BoundedSemaphore(value)
            p_tput, _, p_fair = contended(lambda i, p=plain_sem: p, 8, args.seconds)
            rows.append([str(value), f"{o_tput:,.0f}", f"{o_fair:.1f}", f"{p_tput:,.0f}",
                         f"{p_fair:,.0f}", f"{p_tput / o_tput:,.0f}"])
        out.append(table(
            "Semaphore under 8 threads: acquisitions/s, fairness = max wait / mean wait",
            ["value", "octopus acq/s", "max/mean", "threading acq/s", "max/mean",
             "threading ×"], rows))

    if not args.no_record:
        record_results("Recipes (bench/recipes.py)", "\n".join(out))


if __name__ == "__main__":
    main()

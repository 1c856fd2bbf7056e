"""Octopus beside SQLite and Redis on the same records (issue 13's embedded rows).

    .venv/bin/python bench/compare.py [--sizes 10000,100000,1000000] [--repeat 3]
        [--baseline FILE.json] [--save FILE.json] [--no-record] [--no-redis]

Each store size gets a fresh worker process that builds the same records

    hw.pci.device.N { vendor: 0x8086, device_id: N, class: 'C', bus: N mod 256,
                      label: 'dev N' }

in an embedded octopus Engine and in an in-memory SQLite table (primary key on the
name, an index on device_id and a composite index on (vendor, device_id)), and loads
them into a redis-server this script starts (one hash per record, redis-py pipelines).
Then every operation runs on octopus and on SQLite in turn, ``--repeat`` rounds
interleaved; each figure is the median round, and each ratio the median of the rounds'
ratios. Times are the calling thread's CPU time
(``time.thread_time``: Prolog and SQLite both run on the calling thread), which other
processes on the shared cores do not inflate. Each operation runs once unmeasured
first: for octopus that first query on a key builds the key's ordered index, which
is reported on its own, beside SQLite's CREATE INDEX.

Memory is the growth of the worker's resident set while loading (octopus, then SQLite)
and Redis' ``used_memory``; octopus is measured again after the queries, with the
indexes they built.

``--baseline`` adds the numbers of an earlier run (``--save`` writes them) as a
"before" column: run this script from a checkout of the older commit with
``--save``, then here with ``--baseline``. Writes bench/compare.png (latency against
store size per operation) and, unless --no-record, the RESULTS.md section.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import HERE, record_results, rss_bytes, table

SECTION = "Octopus beside SQLite and Redis (bench/compare.py)"
SET_TEXT = "%n { vendor: %d, device_id: %d, class: %s, bus: %d, label: %s }"


def records(n: int) -> Any:
    for i in range(n):
        yield (f"hw.pci.device.{i}",
               {"vendor": 0x8086, "device_id": i, "class": "C", "bus": i % 256,
                "label": f"dev {i}"})


def cpu_us(func: Callable[[], Any], ops: int) -> float:
    """CPU µs per call of ``func`` over ``ops`` calls (the calling thread's time)."""
    gc.collect()
    t0 = time.thread_time()
    for _ in range(ops):
        func()
    return (time.thread_time() - t0) / ops * 1e6


# --- the stores ---------------------------------------------------------------------------

def build_octopus(n: int) -> tuple[Any, dict[str, float]]:
    import octopus

    engine = octopus.Engine()
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    engine.set_many(records(n), batch=10_000)
    load = time.perf_counter() - t0
    engine.warm()
    gc.collect()
    return engine, {"load_s": load, "bytes": (rss_bytes() - rss0) / n}


def build_sqlite(n: int) -> tuple[sqlite3.Connection, dict[str, float]]:
    gc.collect()
    rss0 = rss_bytes()
    db = sqlite3.connect(":memory:", isolation_level=None)   # autocommit
    db.execute("CREATE TABLE devices (name TEXT PRIMARY KEY, vendor INTEGER, "
               "device_id INTEGER, class TEXT, bus INTEGER, label TEXT)")
    t0 = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?)",
                   ((name, a["vendor"], a["device_id"], a["class"], a["bus"], a["label"])
                    for name, a in records(n)))
    db.execute("COMMIT")
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    db.execute("CREATE INDEX by_device_id ON devices (device_id)")
    db.execute("CREATE INDEX by_vendor_device ON devices (vendor, device_id)")
    index = time.perf_counter() - t0
    gc.collect()
    return db, {"load_s": load, "index_s": index, "bytes": (rss_bytes() - rss0) / n}


def load_redis(port: int, n: int) -> dict[str, float]:
    import redis

    r = redis.Redis(port=port)
    r.flushall()
    info = r.info("memory")
    used0, rss0 = info["used_memory"], info["used_memory_rss"]
    t0 = time.perf_counter()
    pipe = r.pipeline(transaction=False)
    for i, (name, attrs) in enumerate(records(n), start=1):
        pipe.hset(name, mapping=attrs)
        if i % 10_000 == 0:
            pipe.execute()
    pipe.execute()
    load = time.perf_counter() - t0
    info = r.info("memory")
    r.flushall()
    return {"load_s": load, "bytes": (info["used_memory"] - used0) / n,
            "rss_bytes": (info["used_memory_rss"] - rss0) / n}


# --- the operations ---------------------------------------------------------------------

def operations(engine: Any, db: sqlite3.Connection, n: int
               ) -> dict[str, tuple[Callable[[], Any], Callable[[], Any], int]]:
    """name -> (octopus call, SQLite call, calls per round)."""
    rng = random.Random(13)
    targets = [rng.randrange(n) for _ in range(1 << 16)]
    it = iter(range(10**12))
    fresh = iter(range(10**12))
    low = n - 1000
    range_q = f"_ {{ device_id > {low} }}"

    def target() -> int:
        return targets[next(it) & 0xFFFF]

    def octo_set() -> None:
        i = target()
        engine.set(SET_TEXT, f"hw.pci.device.{i}", 0x8086, i, "C", i % 256, f"dev {i}")

    def sql_set() -> None:
        i = target()
        db.execute("INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, ?)",
                   (f"hw.pci.device.{i}", 0x8086, i, "C", i % 256, f"dev {i}"))

    def octo_new_text() -> None:
        i, k = target(), next(fresh)
        engine.set(f"hw.pci.device.{i} {{ vendor: 0x8086, device_id: {i}, class: 'C', "
                   f"bus: {i % 256}, label: 'dev {i} v{k}' }}")

    def sql_new_text() -> None:
        i, k = target(), next(fresh)
        db.execute(f"INSERT OR REPLACE INTO devices VALUES ('hw.pci.device.{i}', 32902, "
                   f"{i}, 'C', {i % 256}, 'dev {i} v{k}')")

    return {
        "range": (lambda: engine.get_names(range_q),
                  lambda: db.execute("SELECT name FROM devices WHERE device_id > ?",
                                     (low,)).fetchall(), 40),
        "attribute": (lambda: engine.get_names("_ { vendor: 0x8086, device_id: 4110 }"),
                      lambda: db.execute("SELECT name FROM devices WHERE vendor = ? AND "
                                         "device_id = ?", (0x8086, 4110)).fetchall(), 2000),
        "get": (lambda: engine.get("%n", f"hw.pci.device.{target()}"),
                lambda: db.execute("SELECT * FROM devices WHERE name = ?",
                                   (f"hw.pci.device.{target()}",)).fetchone(), 5000),
        "set": (octo_set, sql_set, 5000),
        "set_new_text": (octo_new_text, sql_new_text, 2000),
    }


OPS = {
    "range": "range query `_ { device_id > N-1000 }` (999 matches), get_names vs "
             "SELECT name ... WHERE device_id > ?",
    "attribute": "attribute query `_ { vendor: 0x8086, device_id: 4110 }`, get_names vs "
                 "the composite index",
    "get": "get by name (`%n`) vs SELECT * ... WHERE name = ? (primary key)",
    "set": "set with parameters vs INSERT OR REPLACE (autocommit), replacing a record",
    "set_new_text": "set of a text not seen before vs INSERT OR REPLACE of new SQL text",
}


def worker(n: int, repeat: int, redis_port: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n, "load": [os.getloadavg()[0]]}
    engine, out["octopus"] = build_octopus(n)
    db, out["sqlite"] = build_sqlite(n)
    if redis_port:
        out["redis"] = load_redis(redis_port, n)
    ops = operations(engine, db, n)
    # First calls, unmeasured in the rounds: octopus builds the ordered index of each
    # key a query uses (its memory is the growth here), SQLite warms its caches.
    first: dict[str, float] = {}
    gc.collect()
    rss0 = rss_bytes()
    for name, (octo, _, _) in ops.items():
        t0 = time.thread_time()
        octo()
        first[name] = (time.thread_time() - t0) * 1e6
    gc.collect()
    out["octopus"]["index_bytes"] = (rss_bytes() - rss0) / n
    out["octopus"]["first_us"] = first
    for _, sql, _ in ops.values():
        sql()
    rounds: dict[str, dict[str, list[float]]] = {k: {"octopus": [], "sqlite": []} for k in ops}
    for _ in range(repeat):
        for name, (octo, sql, calls) in ops.items():
            rounds[name]["octopus"].append(cpu_us(octo, calls))
            rounds[name]["sqlite"].append(cpu_us(sql, calls))
    out["us"] = {k: {s: statistics.median(v) for s, v in r.items()} for k, r in rounds.items()}
    # Each round measures octopus and SQLite one after the other: the median of the
    # rounds' ratios is steadier than the ratio of the medians on a loaded machine.
    out["ratio"] = {k: statistics.median(o / q for o, q in zip(r["octopus"], r["sqlite"],
                                                               strict=True))
                    for k, r in rounds.items()}
    out["matches"] = {"range": len(engine.get_names(f"_ {{ device_id > {n - 1000} }}")),
                      "attribute": len(engine.get_names(
                          "_ { vendor: 0x8086, device_id: 4110 }"))}
    out["stages"] = set_stages(engine, n, repeat)
    out["load"].append(os.getloadavg()[0])
    engine.close()
    return out


def set_stages(engine: Any, n: int, repeat: int) -> dict[str, float]:
    """Where the time of a set goes: each stage timed on its own (CPU µs per call,
    median of ``repeat`` (at least 5) interleaved rounds), on records that exist, with the values
    they have (as the "set" operation writes them). Runs last: it writes through the
    store directly, past the engine."""
    from octopus.query.compile import compile_record

    core = engine._core
    store = core.store
    rt = store.rt
    rt.consult(HERE / "bench.pl")
    apply_once = rt.janus.apply_once
    module = store.module
    rng = random.Random(7)
    params = [(f"hw.pci.device.{i}", 0x8086, i, "C", i % 256, f"dev {i}")
              for i in (rng.randrange(n) for _ in range(4096))]
    compiled = [compile_record(SET_TEXT, p, max_length=core.max_query_length) for p in params]
    items = [[cr.name, cr.pairs] for cr in compiled]
    it = iter(range(10**12))
    fresh = iter(range(10**12))

    def nxt() -> int:
        return next(it) & 4095

    def revision() -> int:
        core.revision += 1
        return int(core.revision)

    def total() -> None:
        engine.set(SET_TEXT, *params[nxt()])

    def bind() -> None:
        compile_record(SET_TEXT, params[nxt()], max_length=core.max_query_length)

    def adapter() -> None:
        cr = compiled[nxt()]
        store.set(cr.name, cr.pairs, cr.conditions, False, revision(), cr.attributes)

    def call() -> None:
        cr = compiled[nxt()]
        apply_once("octopus_store", "store_set", module, cr.name, cr.pairs, cr.conditions,
                   False, revision(), store.indexed_keys())

    def noop() -> None:
        cr = compiled[nxt()]
        apply_once("octopus_bench", "noop", module, cr.name, cr.pairs, cr.conditions,
                   False, revision(), store.indexed_keys())

    def new_text() -> str:
        i = params[nxt()][2]
        return (f"hw.pci.device.{i} {{ vendor: 0x8086, device_id: {i}, class: 'C', "
                f"bus: {i % 256}, label: 'dev {i} w{next(fresh)}' }}")

    def new_total() -> None:
        engine.set(new_text())

    def parse() -> None:
        compile_record(new_text(), max_length=core.max_query_length)

    def text_only() -> None:
        new_text()

    timed: dict[str, Callable[[], None]] = {
        "total": total, "bind": bind, "adapter": adapter, "call": call, "noop": noop,
        "new_total": new_total, "parse": parse, "text": text_only}
    rounds: dict[str, list[float]] = {k: [] for k in [*timed, "prolog"]}
    for _ in range(max(repeat, 5)):
        for key, func in timed.items():
            rounds[key].append(cpu_us(func, 1000))
        rev0 = core.revision
        core.revision += len(items)
        rounds["prolog"].append(1e6 * rt.call("octopus_bench", "time_set", module, items,
                                              store.indexed_keys(), rev0))
    return {k: statistics.median(v) for k, v in rounds.items()}


# --- Redis --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], int] | None:
    exe = shutil.which("redis-server")
    if exe is None:
        print("no redis-server on PATH: Redis columns left out", file=sys.stderr)
        return None
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return proc, port
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)


# --- reporting ----------------------------------------------------------------------------

def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "-"


def round_ratio(result: dict[str, Any], key: str) -> str:
    """Octopus / SQLite for operation ``key``: the median of the rounds' ratios (older
    runs saved only the medians: their ratio)."""
    if "ratio" in result:
        return f"{result['ratio'][key]:.2f}×"
    return ratio(result["us"][key]["octopus"], result["us"][key]["sqlite"])


def report(results: list[dict[str, Any]], baseline: dict[int, dict[str, Any]],
           repeat: int) -> str:
    out = []
    biggest = results[-1]
    n = biggest["n"]
    before = baseline.get(n)
    header = ["operation", "octopus µs", "sqlite µs", "octopus / sqlite"]
    if before:
        header += ["before: octopus µs", "before / sqlite"]
    rows = []
    for key, what in OPS.items():
        o, q = biggest["us"][key]["octopus"], biggest["us"][key]["sqlite"]
        row = [what, f"{o:,.1f}", f"{q:,.1f}", round_ratio(biggest, key)]
        if before:
            b = before["us"][key]["octopus"]
            row += [f"{b:,.1f}", round_ratio(before, key)]
        rows.append(row)
    out.append(table(f"Embedded operations, {n:,} records (CPU µs per call, median of "
                     f"{repeat} interleaved rounds)", header, rows))

    mem_header = ["store", "bytes/record", "× Redis"]
    redis_b = biggest.get("redis", {}).get("bytes")
    o = biggest["octopus"]
    mem_rows = [
        ["octopus (embedded), after loading", f"{o['bytes']:,.0f}",
         ratio(o["bytes"], redis_b) if redis_b else "-"],
        ["octopus, + the indexes the queries built (device_id, vendor)",
         f"{o['bytes'] + o['index_bytes']:,.0f}",
         ratio(o["bytes"] + o["index_bytes"], redis_b) if redis_b else "-"],
        ["sqlite in-memory, 3 indexes", f"{biggest['sqlite']['bytes']:,.0f}",
         ratio(biggest["sqlite"]["bytes"], redis_b) if redis_b else "-"],
    ]
    if redis_b:
        mem_rows.append(["redis-server hashes (used_memory)", f"{redis_b:,.0f}", "1.00×"])
        rss_b = biggest["redis"].get("rss_bytes")
        if rss_b:
            mem_rows.append(["redis-server hashes (growth of its resident set)",
                             f"{rss_b:,.0f}", ratio(rss_b, redis_b)])
    if before:
        mem_rows.append(["before: octopus, after loading", f"{before['octopus']['bytes']:,.0f}",
                         ratio(before["octopus"]["bytes"], redis_b) if redis_b else "-"])
    out.append(table(f"Memory per record, {n:,} records", mem_header, mem_rows))

    load_rows = [["octopus set_many (batches of 10,000)", f"{o['load_s']:.1f}",
                  f"{n / o['load_s']:,.0f}"],
                 ["sqlite executemany, one transaction (+ CREATE INDEX after)",
                  f"{biggest['sqlite']['load_s']:.1f} (+{biggest['sqlite']['index_s']:.1f})",
                  f"{n / biggest['sqlite']['load_s']:,.0f}"]]
    if redis_b:
        load_rows.append(["redis-py pipelines of 10,000 HSET",
                          f"{biggest['redis']['load_s']:.1f}",
                          f"{n / biggest['redis']['load_s']:,.0f}"])
    if before:
        load_rows.append(["before: octopus set_many", f"{before['octopus']['load_s']:.1f}",
                          f"{n / before['octopus']['load_s']:,.0f}"])
    out.append(table(f"Loading {n:,} records", ["store", "seconds", "records/s"], load_rows))

    if "stages" in biggest:
        out.append(stages_report(biggest, before))

    first = biggest["octopus"]["first_us"]
    out.append(table(
        "The first query on a key builds its ordered index (octopus) — SQLite's indexes "
        "were built by CREATE INDEX",
        ["operation", "first call µs", "then µs"],
        [[k, f"{first[k]:,.0f}", f"{biggest['us'][k]['octopus']:,.1f}"] for k in OPS]))

    size_rows = []
    for r in results:
        for key in OPS:
            o, q = r["us"][key]["octopus"], r["us"][key]["sqlite"]
            row = [f"{r['n']:,}", key, f"{o:,.1f}", f"{q:,.1f}", round_ratio(r, key)]
            b = baseline.get(r["n"])
            row.append(f"{b['us'][key]['octopus']:,.1f}" if b else "-")
            size_rows.append(row)
    out.append(table("By store size (CPU µs per call; bench/compare.png)",
                     ["records", "operation", "octopus", "sqlite", "ratio", "before: octopus"],
                     size_rows))
    loads = [f"{r['n']:,} records {r['load'][0]:.1f} → {r['load'][1]:.1f}"
             for r in results if "load" in r]
    if loads:
        out.append("Load average (1 minute) on the 2 cores, at the start and the end of each "
                   "store size: " + "; ".join(loads) + ". Other work on the machine slows "
                   "both sides of a round; CPU time leaves most of it out, not all.\n")
    matches = biggest["matches"]
    out.append(f"The range query finds {matches['range']} records at every size; the "
               f"attribute query {matches['attribute']} (in this data set device_id is "
               "unique). SQLite returns the range in index order, octopus in natural name "
               "order.\n")
    return "\n".join(out)


def stages_report(result: dict[str, Any], before: dict[str, Any] | None) -> str:
    """The stage breakdown of a set (set_stages), beside the earlier run's if it has one."""
    def rows(st: dict[str, float]) -> list[tuple[str, float]]:
        prolog, noop, call = st["prolog"], st["noop"], st["call"]
        return [
            ("binding the parameters (compile_record, template cached)", st["bind"]),
            ("core: lock, session check, revision, Record, change stream (the rest)",
             max(st["total"] - st["bind"] - st["adapter"], 0.0)),
            ("adapter: PrologStore.set around the call (index upkeep, reply)",
             max(st["adapter"] - call, 0.0)),
            ("janus: the call and converting its arguments (a no-op predicate)", noop),
            ("Prolog: store_set/8, timed inside Prolog", prolog),
            ("janus: converting the reply (the call, less the two above)",
             max(call - noop - prolog, 0.0)),
            ("= set with parameters (Engine.set, measured)", st["total"]),
            ("reading a text never seen before (compile_record: read_record, cache)",
             max(st["parse"] - st["text"], 0.0)),
            ("the write of that text (as above, the binding aside)",
             max(st["new_total"] - st["parse"], 0.0)),
            ("= set of a text never seen before (Engine.set, measured)",
             max(st["new_total"] - st["text"], 0.0)),
        ]

    now = rows(result["stages"])
    old = rows(before["stages"]) if before and "stages" in before else None
    header = ["stage", "µs", "share of its set"]
    if old:
        header.append("before: µs")
    out = []
    for i, (label, us) in enumerate(now):
        whole = now[6][1] if i <= 6 else now[9][1]
        row = [label, f"{us:.1f}", f"{100 * us / whole:.0f}%" if whole else "-"]
        if old:
            row.append(f"{old[i][1]:.1f}")
        out.append(row)
    return table(f"Where a set's time goes, {result['n']:,} records (CPU µs per call, each "
                 "stage timed on its own: the parts need not add up exactly)", header, out)


def plot(results: list[dict[str, Any]], baseline: dict[int, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(OPS), figsize=(4 * len(OPS), 3.8))
    sizes = [r["n"] for r in results]
    for ax, key in zip(axes, OPS, strict=True):
        ax.plot(sizes, [r["us"][key]["octopus"] for r in results], "o-", label="octopus")
        ax.plot(sizes, [r["us"][key]["sqlite"] for r in results], "s-", label="sqlite")
        old = [(n, baseline[n]["us"][key]["octopus"]) for n in sizes if n in baseline]
        if old:
            ax.plot([n for n, _ in old], [u for _, u in old], "x--", color="grey",
                    label="octopus before")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(key)
        ax.set_xlabel("records")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("CPU µs per call")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="numbers of an earlier run (--save)")
    ap.add_argument("--save", type=Path, help="write the numbers as JSON")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--redis-port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.repeat, args.redis_port or None)))
        return 0

    redis = None if args.no_redis else start_redis()
    results = []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            print(f"--- {n:,} records", file=sys.stderr, flush=True)
            cmd = [sys.executable, __file__, "--worker", str(n), "--repeat", str(args.repeat),
                   "--redis-port", str(redis[1] if redis else 0)]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE,
                                  env={**os.environ, "PYTHONHASHSEED": "0"}, check=False)
            if done.returncode:
                print(done.stdout, done.stderr, file=sys.stderr)
                return 1
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        if redis:
            redis[0].terminate()
            redis[0].wait(10)
    if args.save:
        args.save.write_text(json.dumps(results, indent=1))
    baseline: dict[int, dict[str, Any]] = {}
    if args.baseline:
        baseline = {r["n"]: r for r in json.loads(args.baseline.read_text())}
    text = report(results, baseline, args.repeat)
    plot(results, baseline, HERE / "compare.png")
    if not args.no_record:
        record_results(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

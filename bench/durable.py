"""The durable engine against redis-server with its AOF, side by side in one run.

1. The write path of the candidate formats (why octopus journals to a file of its own).
2. Set throughput, 1 and 50 concurrent writers: in-memory, fsync=everysec, fsync=always
   (group commit) against ``redis-server --appendonly yes --appendfsync everysec|always``,
   both driven from Python threads (octopus: Engine.set; redis: redis-py, one connection
   per thread); also ``octopus serve --data`` driven by the same redis-py clients.
3. Restart time with 1,000,000 records of 5 attributes: from a snapshot, from the journal
   alone, against Redis from its AOF and from its RDB; disk bytes per record.
4. The pause writers see while a snapshot is written.

Usage: bench/durable.py [--records N] [--seconds S] [--throughput-only [--baseline DIR]]
[--restart-only [--rounds R]]
(writes bench/RESULTS.md)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

import octopus
from octopus.durable.format import encode_attrs, entry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import pci_records, record_results, table

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("OCTOPUS_BENCH_DIR", ROOT / "bench" / "out" / "durable"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- 1. the write path of the candidates ------------------------------------------------------


def candidates(n: int, rounds: int = 5) -> list[list[str]]:
    """µs per appended change, one thread, as each format would journal a set: the
    best of ``rounds`` interleaved rounds of ``n`` changes (a shared machine only ever
    slows a round down), then 200 changes with an fsync each."""
    attrs = {"bus": 3, "device": 7, "vendor": 32902, "device_id": 4110, "class": "C"}
    pairs = list(attrs.items())
    d = Path(tempfile.mkdtemp(dir=WORK))
    try:
        fd = os.open(d / "own.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        dbs = {}
        for sync in ("NORMAL", "FULL"):
            db = sqlite3.connect(d / f"wal-{sync}.db", isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={sync}")
            db.execute("CREATE TABLE rec (name TEXT PRIMARY KEY, rev INTEGER, attrs TEXT)")
            dbs[sync] = db
        from octopus._prolog import runtime

        rt = runtime()
        rt.janus.consult("bench_persistency", data="""
:- use_module(library(persistency)).
:- persistent rec(name:atom, rev:integer, attrs:any).
bp_attach(File, true) :- db_attach(File, []).
bp_set(Name, Rev, Attrs, true) :- assert_rec(Name, Rev, Attrs).
bp_detach(true) :- db_detach.
""")
        rt.janus.apply_once("user", "bp_attach", str(d / "persistency.db"))

        def own(i: int) -> None:
            os.write(fd, entry(["s", i, f"hw.pci.device.{i}", encode_attrs(attrs), 0, None]))

        def sqlite_normal(i: int) -> None:
            dbs["NORMAL"].execute("INSERT OR REPLACE INTO rec VALUES (?, ?, ?)",
                                  (f"hw.pci.device.{i}", i, json.dumps(attrs)))

        def persistency(i: int) -> None:
            rt.janus.apply_once("user", "bp_set", f"hw.pci.device.{i}", i, pairs)

        ways: dict[str, Callable[[int], None]] = {
            "own": own, "sqlite": sqlite_normal, "persistency": persistency}
        best: dict[str, float] = {}
        for r in range(rounds):
            for name, write in ways.items():
                t = time.perf_counter()
                for i in range(r * n, (r + 1) * n):
                    write(i)
                per = (time.perf_counter() - t) / n * 1e6
                best[name] = min(best.get(name, per), per)
        total = rounds * n
        t = time.perf_counter()
        for i in range(200):
            own(i)
            os.fdatasync(fd)
        own_sync = (time.perf_counter() - t) / 200 * 1e6
        t = time.perf_counter()
        for i in range(200):
            dbs["FULL"].execute("INSERT OR REPLACE INTO rec VALUES (?, ?, ?)",
                                (f"hw.pci.device.{i}", i, json.dumps(attrs)))
        sqlite_sync = (time.perf_counter() - t) / 200 * 1e6
        os.close(fd)
        for db in dbs.values():
            db.close()
        rt.janus.apply_once("user", "bp_detach")
        own_bytes = (d / "own.log").stat().st_size / (total + 200)
        sqlite_bytes = sum(p.stat().st_size for p in d.glob("wal-NORMAL.db*")) / total
        persistency_bytes = (d / "persistency.db").stat().st_size / total
        data = entry(["s", 1, "hw.pci.device.1", encode_attrs(attrs), 0, None])
        t = time.perf_counter()
        for _ in range(n):
            zlib.crc32(data)
        crc = (time.perf_counter() - t) / n * 1e6
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return [
        ["own append-only file (JSON, crc32, one write(2))", f"{best['own']:.1f}",
         f"{own_sync:.0f}", f"{own_bytes:.0f}"],
        ["SQLite WAL (INSERT OR REPLACE, a transaction each)", f"{best['sqlite']:.1f}",
         f"{sqlite_sync:.0f}", f"{sqlite_bytes:.0f}"],
        ["SWI-Prolog library(persistency) (via janus)", f"{best['persistency']:.1f}",
         "no fsync", f"{persistency_bytes:.0f}"],
        ["(crc32 of one entry alone)", f"{crc:.2f}", "", ""],
    ]


# --- 2. throughput ---------------------------------------------------------------------------


def run_threads(writers: int, seconds: float, make: Callable[[int], Callable[[int], None]]
                ) -> float:
    """Sets per second of ``writers`` threads, each calling its ``make(n)`` function."""
    counts = [0] * writers
    stop = threading.Event()
    start = threading.Barrier(writers + 1)

    def work(n: int) -> None:
        write = make(n)
        start.wait()
        i = 0
        while not stop.is_set():
            write(i)
            i += 1
        counts[n] = i

    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def octopus_sets(engine: octopus.Engine) -> Callable[[int], Callable[[int], None]]:
    def make(n: int) -> Callable[[int], None]:
        names = [f"w{n}.k{i}" for i in range(1000)]

        def write(i: int) -> None:
            engine.set("%s { v: %d, s: 'payload' }", names[i % 1000], i)

        return write
    return make


def redis_sets(port: int) -> Callable[[int], Callable[[int], None]]:
    def make(n: int) -> Callable[[int], None]:
        r = redis.Redis(port=port)
        names = [f"w{n}.k{i}" for i in range(1000)]

        def write(i: int) -> None:
            r.hset(names[i % 1000], mapping={"v": i, "s": "payload"})

        return write
    return make


def octopus_server_sets(port: int) -> Callable[[int], Callable[[int], None]]:
    def make(n: int) -> Callable[[int], None]:
        r = redis.Redis(port=port)
        names = [f"w{n}.k{i}" for i in range(1000)]

        def write(i: int) -> None:
            r.execute_command("SET", "%s { v: %d, s: 'payload' }", names[i % 1000], str(i))

        return write
    return make


@contextlib.contextmanager
def redis_server(directory: Path, *args: str) -> Iterator[int]:
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--dir", str(directory),
                             "--save", "", *args], stdout=subprocess.DEVNULL)
    try:
        wait_redis(port)
        yield port
    finally:
        proc.terminate()
        proc.wait()


def wait_redis(port: int, timeout: float = 600) -> float:
    """Seconds until the server on ``port`` answers PING (not LOADING)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            if redis.Redis(port=port).ping():
                return time.perf_counter() - t0
        except (redis.ConnectionError, redis.BusyLoadingError):
            pass
        time.sleep(0.005)
    raise RuntimeError("redis never answered")


@contextlib.contextmanager
def octopus_server(directory: Path, fsync: str, root: Path = ROOT) -> Iterator[int]:
    """``octopus serve --data`` of the checkout ``root`` (this one by default)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "octopus", "serve", "--port", str(port),
                             "--data", str(directory), "--fsync", fsync, "--log-level",
                             "warning"], cwd=root, env=env)
    try:
        wait_redis(port, 60)
        yield port
    finally:
        proc.terminate()
        proc.wait()


def throughput(seconds: float, rounds: int = 3, baseline: Path | None = None
               ) -> tuple[str, dict[str, float]]:
    """Every configuration up at once, measured in turn, ``rounds`` times; the best
    round of each counts (neighbours on a shared machine only ever slow a run down).
    ``baseline``: another checkout whose ``serve --fsync always`` joins the rounds."""
    results: dict[tuple[str, int], float] = {}
    with contextlib.ExitStack() as stack:
        d = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=WORK)))
        makers: dict[str, Callable[[int], Callable[[int], None]]] = {}
        engines: dict[str, octopus.Engine] = {}
        ports: dict[str, int] = {}
        engines["memory"] = stack.enter_context(octopus.Engine())
        for fsync in ("everysec", "always"):
            engines[fsync] = stack.enter_context(octopus.Engine(path=d / fsync, fsync=fsync))
            port = stack.enter_context(redis_server(d / f"redis-{fsync}", "--appendonly",
                                                    "yes", "--appendfsync", fsync))
            makers[f"redis-{fsync}"] = redis_sets(port)
            port = stack.enter_context(octopus_server(d / f"serve-{fsync}", fsync))
            makers[f"serve-{fsync}"] = octopus_server_sets(port)
            ports[f"serve-{fsync}"] = port
        if baseline is not None:
            port = stack.enter_context(octopus_server(d / "base-always", "always", baseline))
            makers["base-always"] = octopus_server_sets(port)
            ports["base-always"] = port
        for name, engine in engines.items():
            makers[name] = octopus_sets(engine)

        def fsync_count(name: str) -> float:
            if name == "always":
                return float(engines["always"].stats()["fsyncs"])
            if name in ("serve-always", "base-always"):
                return float(redis.Redis(port=ports[name]).info("persistence")["fsyncs"])
            return 0.0
        for writers in (1, 50):
            for _ in range(rounds):
                for name, make in makers.items():
                    before = fsync_count(name)
                    rate = run_threads(writers, seconds, make)
                    if rate > results.get((name, writers), 0.0):
                        results[(name, writers)] = rate
                        if name in ("always", "serve-always", "base-always"):
                            results[(f"{name}-fsyncs", writers)] = fsync_count(name) - before
    base = ""
    if baseline is not None:
        base = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=baseline).stdout.strip() or str(baseline)
    rows = []
    for writers in (1, 50):
        mem = results[("memory", writers)]
        for name, label in [("memory", "octopus Engine, in memory"),
                            ("everysec", "octopus Engine, fsync=everysec"),
                            ("redis-everysec", "redis-server, appendfsync everysec"),
                            ("serve-everysec", "octopus serve --data, fsync everysec"),
                            ("always", "octopus Engine, fsync=always (group commit)"),
                            ("redis-always", "redis-server, appendfsync always"),
                            ("serve-always", "octopus serve --data, fsync always"),
                            ("base-always", f"  the same, baseline {base}")]:
            if (name, writers) not in results:
                continue
            v = results[(name, writers)]
            redis_same = results.get((f"redis-{name.split('-')[-1]}", writers))
            if name == "base-always":
                label += f" (this checkout / it: {results[('serve-always', writers)] / v:.2f})"
            vs_redis = f"{v / redis_same:.2f}" if redis_same and name != "memory" else ""
            rows.append([str(writers), label, f"{v:,.0f}", f"{v / mem:.2f}", vs_redis])
        for name, what in [("always", "Engine"), ("serve-always", "serve"),
                           ("base-always", "baseline serve")]:
            if (name, writers) not in results:
                continue
            sets = results[(name, writers)] * seconds
            rows.append([str(writers), f"  ({what} fsync=always: "
                         f"{results[(f'{name}-fsyncs', writers)]:,.0f} fsyncs for about "
                         f"{sets:,.0f} sets)", "", "", ""])
    text = table("Set throughput (sets/s), 1 and 50 concurrent writers",
                 ["writers", "store", "sets/s", "× in-memory", "× redis same fsync"], rows)
    summary = {
        "everysec_vs_memory_1": results[("everysec", 1)] / results[("memory", 1)],
        "everysec_vs_memory_50": results[("everysec", 50)] / results[("memory", 50)],
        "always_vs_redis_50": results[("always", 50)] / results[("redis-always", 50)],
        "always_vs_redis_1": results[("always", 1)] / results[("redis-always", 1)],
    }
    return text, summary


# --- 3. restart ------------------------------------------------------------------------------


_OPEN = """
import json, sys, time
t0 = time.perf_counter()
import octopus
from octopus._prolog import runtime
from octopus.adapter import PrologStore
runtime()
t1 = time.perf_counter()
path, what = sys.argv[1], sys.argv[2]
out = {"import": t1 - t0}
QUERIES = [("get", "hw.pci.device.777"), ("attribute", "_ { vendor: 32902, device_id: 4110 }"),
           ("range", "_ { device_id > 65000 }")]


def first_queries(e):
    for label, q in QUERIES:
        t = time.perf_counter()
        e.get(q) if label == "get" else e.get_names(q)
        out["first_" + label] = time.perf_counter() - t


if what == "load":
    sys.path.insert(0, sys.argv[4])
    from common import pci_records
    with octopus.Engine(path=path, fsync="no", compact_min_bytes=1 << 40) as e:
        e.set_many(pci_records(int(sys.argv[3])), batch=10000)
    out["load"] = time.perf_counter() - t1
elif what == "parts":
    import glob
    from octopus.durable.format import read_footer
    from pathlib import Path
    snap = glob.glob(path + "/snapshot-*.snap")[0]
    store = PrologStore()
    for label, call in [
            ("restore", lambda: store.restore(snap)),
            ("columns", lambda: store.read_indexes(snap, read_footer(Path(snap)).index_at)),
            ("warm", store.warm),
            ("build_vendor", lambda: store._index("vendor")),
            ("build_device_id", lambda: store._index("device_id"))]:
        t, c = time.perf_counter(), time.process_time()
        call()
        out[label] = time.perf_counter() - t
        out[label + "_cpu"] = time.process_time() - c
else:
    with octopus.Engine(path=path, compact_min_bytes=1 << 40) as e:
        out["open"] = time.perf_counter() - t1
        out["count"] = e.count()
        first_queries(e)
        out["answers"] = time.perf_counter() - t1
        if what == "compact":
            t = time.perf_counter()
            e.compact()
            out["compact"] = time.perf_counter() - t
            out["snapshot_bytes"] = e.stats()["snapshot_bytes"]
print(json.dumps(out))
"""


def octopus_process(path: Path, what: str, *args: str) -> dict[str, float]:
    """Run one step in a fresh process (as a restarted server would start); its times
    (``import``: Python importing octopus and starting SWI-Prolog; ``open``: the engine
    opening its directory; ``answers``: the first get, attribute and range query
    answered), and ``process`` the whole run."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _OPEN, str(path), what, *args],
                       capture_output=True, text=True, cwd=ROOT, check=True)
    out: dict[str, float] = json.loads(r.stdout.strip().splitlines()[-1])
    out["process"] = time.perf_counter() - t0
    return out


def redis_load(port: int, records: int, work: Path) -> None:
    """The same records as hashes of 5 fields, through ``redis-cli --pipe`` (the fastest
    way to load Redis; redis-py pipelines took minutes)."""
    def bulk(*parts: object) -> bytes:
        items = [str(p).encode() for p in parts]
        return b"*%d\r\n" % len(items) + b"".join(b"$%d\r\n%s\r\n" % (len(i), i) for i in items)

    commands = work / "hset.resp"
    with commands.open("wb") as f:
        for name, attrs in pci_records(records):
            f.write(bulk("HSET", name, *[x for kv in attrs.items() for x in kv]))
    with commands.open("rb") as f:
        subprocess.run(["redis-cli", "-p", str(port), "--pipe"], stdin=f, check=True,
                       stdout=subprocess.DEVNULL)
    commands.unlink()


def redis_restart(rd: Path, source: str, records: int) -> float:
    port = free_port()
    args = (["--appendonly", "yes", "--aof-use-rdb-preamble", "no"] if source == "aof"
            else ["--appendonly", "no", "--dbfilename", "dump.rdb"])
    t0 = time.perf_counter()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--dir", str(rd),
                             "--save", "", *args], stdout=subprocess.DEVNULL)
    try:
        wait_redis(port)
        took = time.perf_counter() - t0
        assert redis.Redis(port=port).dbsize() == records
        return took
    finally:
        proc.terminate()
        proc.wait()


def restart(records: int, rounds: int = 2) -> tuple[str, dict[str, float]]:
    d = Path(tempfile.mkdtemp(dir=WORK))
    out: dict[str, float] = {}
    try:
        data = d / "octopus"
        step = octopus_process(data, "load", str(records), str(Path(__file__).parent))
        out["load"] = step["load"]
        out["journal_bytes"] = sum(p.stat().st_size for p in data.glob("journal-*"))
        print(f"loaded {records:,} records in {out['load']:.1f} s", flush=True)
        # From the journal alone; the first queries build the indexes of vendor and
        # device_id (as on any engine), then the snapshot keeps them.
        step = octopus_process(data, "compact")
        assert step["count"] == records
        out["from_journal"] = step["import"] + step["open"]
        out["journal_answers"] = step["import"] + step["answers"]
        out["cold_attribute"] = step["first_attribute"]
        out["cold_range"] = step["first_range"]
        out["compact"] = step["compact"]
        out["snapshot_bytes"] = step["snapshot_bytes"]
        print(f"restart from the journal: {out['from_journal']:.1f} s", flush=True)

        rd = d / "redis"
        with redis_server(rd, "--appendonly", "yes", "--appendfsync", "no",
                          "--aof-use-rdb-preamble", "no",
                          "--auto-aof-rewrite-percentage", "0") as port:
            redis_load(port, records, d)
            r = redis.Redis(port=port, socket_timeout=3600)
            assert r.dbsize() == records
            r.save()                            # an RDB of the same data too
        out["redis_aof_bytes"] = sum(p.stat().st_size for p in (rd / "appendonlydir").iterdir())
        out["redis_rdb_bytes"] = (rd / "dump.rdb").stat().st_size

        # Interleaved rounds: octopus from its snapshot, Redis from its RDB and its AOF.
        samples: dict[str, list[float]] = {k: [] for k in ("from_snapshot", "answers",
                                                           "redis_rdb", "redis_aof")}
        for i in range(rounds):
            step = octopus_process(data, "open")
            assert step["count"] == records
            samples["from_snapshot"].append(step["import"] + step["open"])
            samples["answers"].append(step["import"] + step["answers"])
            out["import"] = min(out.get("import", 1e9), step["import"])
            for source in ("rdb", "aof"):
                samples[f"redis_{source}"].append(redis_restart(rd, source, records))
            print(f"round {i + 1}: octopus {samples['from_snapshot'][-1]:.1f} s to open, "
                  f"{samples['answers'][-1]:.1f} s to its first answers; redis RDB "
                  f"{samples['redis_rdb'][-1]:.1f} s, AOF {samples['redis_aof'][-1]:.1f} s",
                  flush=True)
        for k, v in samples.items():
            out[k] = min(v)
            out[k + "_all"] = v                 # type: ignore[assignment]
        step = octopus_process(data, "parts")
        out.update({f"part_{k}": v for k, v in step.items()})
        out["load_average"] = os.getloadavg()[0]
    finally:
        shutil.rmtree(d, ignore_errors=True)
    n = records

    def all_of(k: str) -> str:
        return ", ".join(f"{v:.2f}" for v in out[k + "_all"])  # type: ignore[attr-defined]

    rows = [
        ["octopus, from its snapshot: process start to open", f"{out['from_snapshot']:.2f}",
         f"{out['from_snapshot'] / out['redis_rdb']:.2f}", f"{out['snapshot_bytes'] / n:.0f}",
         all_of("from_snapshot")],
        ["octopus, from its snapshot: process start to the first get, attribute and "
         "range answers", f"{out['answers']:.2f}", f"{out['answers'] / out['redis_rdb']:.2f}",
         "", all_of("answers")],
        ["  of which: starting Python, importing octopus and SWI-Prolog",
         f"{out['import']:.2f}", "", "", ""],
        ["  of which: the records into Prolog (restore alone, measured apart)",
         f"{out['part_restore']:.2f}", "", "", f"CPU {out['part_restore_cpu']:.2f}"],
        ["  beside it, in a thread: the indexes of vendor and device_id from the "
         "snapshot's columns (measured apart)", f"{out['part_columns']:.2f}", "", "",
         f"CPU {out['part_columns_cpu']:.2f}"],
        ["  of which: warming the clause index of rec/3 (measured apart)",
         f"{out['part_warm']:.2f}", "", "", f"CPU {out['part_warm_cpu']:.2f}"],
        ["octopus, from its journal alone (no snapshot yet): process start to open",
         f"{out['from_journal']:.2f}", f"{out['from_journal'] / out['redis_aof']:.2f}",
         f"{out['journal_bytes'] / n:.0f}", ""],
        ["redis-server from its RDB (process start to PING)", f"{out['redis_rdb']:.2f}", "1.00",
         f"{out['redis_rdb_bytes'] / n:.0f}", all_of("redis_rdb")],
        ["redis-server from its AOF (no RDB preamble)", f"{out['redis_aof']:.2f}", "1.00",
         f"{out['redis_aof_bytes'] / n:.0f}", all_of("redis_aof")],
    ]
    text = table(f"Restart with {n:,} records of 5 attributes (goal ≤ 10 s)",
                 ["start from", "seconds (best)", "× redis (RDB / AOF)", "disk bytes/record",
                  "every round"], rows)
    text += (
        f"\nThe first queries on keys without an index (after a restart from the journal, "
        f"or from a snapshot written before any query used them) build it: at "
        f"{n:,} records the first attribute query (vendor and device_id) took "
        f"{out['cold_attribute']:.2f} s and the first range query after it "
        f"{out['cold_range'] * 1e3:.0f} ms; measured apart, building the index of vendor "
        f"took {out['part_build_vendor']:.2f} s (CPU {out['part_build_vendor_cpu']:.2f} s) "
        f"and then device_id {out['part_build_device_id']:.2f} s (CPU "
        f"{out['part_build_device_id_cpu']:.2f} s).\n"
        f"Loading them: octopus set_many {out['load']:.1f} s; writing the snapshot (with the "
        f"columns of vendor and device_id) {out['compact']:.1f} s. Load average at the end: "
        f"{out['load_average']:.1f} on 2 cores.\n")
    return text, out


# --- 4. the snapshot pause ---------------------------------------------------------------------


def snapshot_pause(records: int) -> str:
    d = Path(tempfile.mkdtemp(dir=WORK))
    rows = []
    try:
        with octopus.Engine(path=d / "data", fsync="everysec",
                            compact_min_bytes=1 << 40) as e:
            e.set_many(pci_records(records), batch=10000)
            stop = threading.Event()
            worst = [0.0]
            done = [0]

            def write() -> None:
                i = 0
                while not stop.is_set():
                    t = time.perf_counter()
                    e.set("%s { v: %d }", f"live.{i % 1000}", i)
                    worst[0] = max(worst[0], time.perf_counter() - t)
                    i += 1
                done[0] = i

            t = threading.Thread(target=write)
            t.start()
            time.sleep(0.5)
            worst[0] = 0.0
            t0 = time.perf_counter()
            e.compact()
            took = time.perf_counter() - t0
            stop.set()
            t.join()
            stats = e.stats()
            rows.append([f"{records:,}", f"{took:.2f}", f"{stats['last_snapshot_pause_ms']}",
                         f"{worst[0] * 1e3:.1f}", f"{done[0]:,}"])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return table("Snapshot while a writer goes on",
                 ["records", "snapshot s", "writers paused (lock held) ms",
                  "slowest set during it ms", "sets by the writer"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--throughput-only", action="store_true",
                        help="only the set throughput (part 2), recorded in its own section")
    parser.add_argument("--restart-only", action="store_true",
                        help="only the restart (part 3), recorded in its own section")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved restart rounds (octopus, redis RDB, redis AOF)")
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                        help="with --throughput-only: another checkout's serve --fsync always "
                             "in the same rounds")
    args = parser.parse_args()
    for tool in ("redis-server",):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (apt-get install redis-server)")
            return 2
    WORK.mkdir(parents=True, exist_ok=True)
    if args.throughput_only:
        text, summary = throughput(args.seconds, baseline=args.baseline)
        print(text)
        record_results("Durability, set throughput (bench/durable.py --throughput-only)", text)
        return 0
    if args.restart_only:
        text, out = restart(args.records, args.rounds)
        goal = (f"Goal: restart of {args.records:,} records ≤ 10 s: "
                f"{out['from_snapshot']:.1f} s to open from a snapshot, "
                f"{out['answers']:.1f} s to the first answers "
                f"({out['answers'] / out['redis_rdb']:.1f}× redis from its RDB in the same "
                f"run).\n")
        print(goal)
        record_results("Durability, restart (bench/durable.py --restart-only)", text + goal)
        return 0
    parts = []
    parts.append(table("The write path of the candidate formats (one thread)",
                       ["format", "µs/change (no fsync)", "µs/change (fsync each)",
                        "bytes/change"], candidates(4000)))
    text, summary = throughput(args.seconds)
    parts.append(text)
    text, out = restart(args.records, args.rounds)
    parts.append(text)
    parts.append(snapshot_pause(min(args.records, 200_000)))
    goals = (f"Goals: fsync=everysec ≥ 0.8× in memory: {summary['everysec_vs_memory_1']:.2f} "
             f"(1 writer), {summary['everysec_vs_memory_50']:.2f} (50); fsync=always at 50 "
             f"writers ≥ 1.0× redis always: {summary['always_vs_redis_50']:.2f}; restart of "
             f"{args.records:,} records ≤ 10 s: {out['from_snapshot']:.1f} s from a snapshot "
             f"({out['from_snapshot'] / out['redis_rdb']:.1f}× redis from RDB).\n")
    print(goals)
    parts.append(goals)
    record_results("Durability (bench/durable.py)", "\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

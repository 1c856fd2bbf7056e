"""Bulk loading: N records of issue 13's shape (``hw.pci.device.N { vendor: 0x8086,
device_id: N, class: 'C', bus: N mod 256, label: 'dev N' }``), in one run:

- octopus embedded, ``Engine.load(FILE)`` (the bulk path: canonical text, one record a
  line, batches of 10,000 in one Prolog call each), and ``set_many`` of (name, dict)
  tuples (the same path without the text);
- octopus through a server: ``octopus load FILE`` to ``octopus serve`` (``LOAD``
  requests of 10,000 records);
- redis-server: ``redis-cli --pipe`` of ``HSET name vendor 32902 device_id N ...``;
- SQLite in memory: ``executemany`` of tuples in one transaction (no index).

Each store loads into a fresh process (the embedded ones in a child of this script,
timed from after the engine's start, which is reported beside); seconds are wall
clock, records/s = N / seconds; CPU seconds are those of the processes doing the work
(the embedded child; the server and the ``octopus load`` client; the redis-server and
redis-cli). On a shared machine the wall clock depends on what else
runs, the CPU seconds much less: compare ratios and CPU per record. ``--baseline REV``
runs the embedded and server loads of the code at git revision REV as well, in the
same rounds (its octopus/ and prolog/ extracted to a temporary directory).

Then where the embedded bulk path's time goes, stage by stage over the first 200,000
records (CPU of one thread, µs per record; Engine.load's own total counts every thread
of the process): reading the file, reading the records (RecordReader: the flat form
the store takes), the Prolog call (janus's conversion, the dicts, the lookups, the
asserts), the upkeep of two ordered indexes, and the change stream (a Record and a
Change per record, when something observes it). And the floor: the same asserts of
the stored form, ``rec(Name, Rev, Dict)``, in pure Prolog from terms already built.

Usage: ``python bench/load.py [--records 1000000] [--baseline REV] [--no-record]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import record_results, table
from server import free_port, wait_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTION = "Bulk loading (bench/load.py)"
STAGE_RECORDS = 200_000


def attrs_of(i: int) -> dict[str, Any]:
    return {"bus": i % 256, "class": "C", "device_id": i, "label": f"dev {i}",
            "vendor": 0x8086}


def write_file(path: Path, n: int) -> None:
    from octopus.record import Record

    with path.open("w", encoding="utf-8") as f:
        for start in range(0, n, 100_000):
            f.write("".join(f"{Record(f'hw.pci.device.{i}', attrs_of(i))}\n"
                            for i in range(start, min(n, start + 100_000))))


def redis_pipe(n: int) -> bytes:
    out = []
    for i in range(n):
        args = [b"HSET", f"hw.pci.device.{i}".encode(), b"vendor", b"32902", b"device_id",
                str(i).encode(), b"class", b"C", b"bus", str(i % 256).encode(), b"label",
                f"dev {i}".encode()]
        out.append(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a)
                                                      for a in args))
    return b"".join(out)


# --- the stores, each in its own process ------------------------------------------------

def worker(kind: str, path: str, n: int) -> dict[str, float]:
    """Run in a child process: load N records one way; seconds (wall) and CPU seconds."""
    import octopus

    w, c = time.perf_counter(), time.process_time()
    if kind == "embedded":
        with octopus.Engine() as e:
            # The engine's start (SWI-Prolog and the store's code, ~0.2-0.5 s) is not
            # part of the load, as the servers' starts are not: reported beside it.
            start = time.perf_counter() - w
            w, c = time.perf_counter(), time.process_time()
            count = e.load(path)
            w, c = time.perf_counter() - w, time.process_time() - c
        assert count == n, (kind, count)
        return {"s": w, "cpu": c, "start": start}
    elif kind == "set_many":
        with octopus.Engine() as e:
            start = time.perf_counter() - w
            w, c = time.perf_counter(), time.process_time()
            count = e.set_many(((f"hw.pci.device.{i}", attrs_of(i)) for i in range(n)),
                               batch=10_000)
            w, c = time.perf_counter() - w, time.process_time() - c
        assert count == n, (kind, count)
        return {"s": w, "cpu": c, "start": start}
    else:
        db = sqlite3.connect(":memory:", isolation_level=None)
        db.execute("CREATE TABLE devices (name TEXT PRIMARY KEY, vendor INTEGER, "
                   "device_id INTEGER, class TEXT, bus INTEGER, label TEXT)")
        db.execute("BEGIN")
        db.executemany("INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?)",
                       ((f"hw.pci.device.{i}", 0x8086, i, "C", i % 256, f"dev {i}")
                        for i in range(n)))
        db.execute("COMMIT")
        w, c = time.perf_counter() - w, time.process_time() - c
        count = db.execute("SELECT count(*) FROM devices").fetchone()[0]
    assert count == n, (kind, count)
    return {"s": w, "cpu": c}


def child(kind: str, path: Path, n: int, tree: str | None = None) -> dict[str, float]:
    command = [sys.executable, str(HERE / "load.py"), "--worker", kind, str(path), str(n)]
    if tree is not None:
        command += ["--tree", tree]
    out = subprocess.run(command, capture_output=True, text=True, cwd=HERE, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


#: Runs the ``octopus`` command line of the source tree given as its first argument
#: (a baseline), not the installed one (an editable install's finder would take
#: precedence over sys.path, so it is dropped).
TREE_BOOT = ("import sys; tree = sys.argv.pop(1); "
             "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
             "sys.path.insert(0, tree); from octopus.cli import main; "
             "sys.exit(main(sys.argv[1:]))")


def use_tree(tree: str) -> None:
    """Import octopus from ``tree`` from now on (the worker of a baseline)."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
    sys.path.insert(0, tree)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@contextlib.contextmanager
def serving(command: list[str]) -> Iterator[tuple[int, int]]:
    """A server started with ``command`` plus ``--port``: (port, pid)."""
    port = free_port()
    proc = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_port(port, proc)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def through_server(path: Path, n: int, tree: str | None = None) -> dict[str, float]:
    serve = [sys.executable, "-m", "octopus", "serve"] if tree is None else \
        [sys.executable, "-c", TREE_BOOT, tree, "serve"]
    with serving(serve) as (port, pid):
        server0, client0 = process_cpu(pid), children_cpu()
        start = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "octopus", "load", str(path), "--url",
                            f"tcp://127.0.0.1:{port}"], capture_output=True, text=True,
                           cwd=ROOT, timeout=7200)
        took = time.perf_counter() - start
        server, client = process_cpu(pid) - server0, children_cpu() - client0
        if r.returncode or f"loaded {n} records" not in r.stdout:
            raise RuntimeError(f"octopus load: {r.stdout} {r.stderr}")
    return {"s": took, "cpu": server, "client_cpu": client}


def through_redis(data: bytes) -> dict[str, float]:
    with serving(["redis-server", "--save", "", "--appendonly", "no", "--bind",
                  "127.0.0.1"]) as (port, pid):
        server0, client0 = process_cpu(pid), children_cpu()
        start = time.perf_counter()
        r = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=data,
                           capture_output=True, timeout=3600)
        took = time.perf_counter() - start
        server, client = process_cpu(pid) - server0, children_cpu() - client0
        if b"errors: 0" not in r.stdout:
            raise RuntimeError(f"redis-cli --pipe: {r.stdout[-300:]!r}")
    return {"s": took, "cpu": server, "client_cpu": client}


@contextlib.contextmanager
def baseline_tree(revision: str | None) -> Iterator[tuple[str, str] | None]:
    """octopus/ and prolog/ as of git ``revision`` in a temporary directory, and the
    revision's short name; None without a revision."""
    if revision is None:
        yield None
        return
    short = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", revision],
                           capture_output=True, text=True, check=True).stdout.strip()
    directory = Path(tempfile.mkdtemp(prefix="octopus-baseline-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "octopus",
                                  "prolog"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
        yield str(directory), short
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- where the time goes ----------------------------------------------------------------

# The floor: what storing records in the form the store keeps costs in SWI-Prolog
# alone, from terms already built (a fresh module, the index on the name made first as
# in a store): the asserts in one transaction, and the lookup of a name not stored.
FLOOR_PL = """
:- module(octopus_load_floor, []).
:- dynamic rec/3.
record(I, rec(S, I, _{bus: B, class: "C", device_id: I, label: L, vendor: 32902})) :-
    format(string(S), "hw.pci.device.~d", [I]),
    format(string(L), "dev ~d", [I]),
    B is I mod 256.
floor(N, [Assert, Lookup]) :-
    numlist(1, N, Is),
    maplist(record, Is, Terms),
    ( rec("", _, _) -> true ; true ),
    statistics(cputime, T0),
    transaction(forall(member(T, Terms), assertz(T))),
    statistics(cputime, T1),
    forall(member(I, Is), ( format(string(S), "absent.~d", [I]), \\+ rec(S, _, _) )),
    statistics(cputime, T2),
    forall(member(I, Is), format(string(_), "absent.~d", [I])),
    statistics(cputime, T3),
    Assert is (T1 - T0) / N * 1.0e6,
    Lookup is ((T2 - T1) - (T3 - T2)) / N * 1.0e6.
"""


def stages(path: Path, n: int) -> dict[str, float]:
    """CPU µs per record of each stage of Engine.load over the first ``n`` records."""
    import octopus
    from octopus._prolog import runtime
    from octopus.bulk import Batch, batches, read_file
    from octopus.core import Change, ChangeOp
    from octopus.record import Record

    batch = 10_000

    def cpu(func: Any, clock: Any = time.thread_time) -> tuple[float, Any]:
        t = clock()
        value = func()
        return (clock() - t) / n * 1e6, value

    def first_lines() -> list[str]:
        with path.open("rb") as f:
            out = []
            for line in read_file(f, 65536):
                out.append(line)
                if len(out) == n:
                    return out
        return out

    def read(lines: list[str]) -> list[Batch]:
        return list(batches(lines, batch, 65536))

    out: dict[str, float] = {}
    out["read the file (UTF-8, lines)"], lines = cpu(first_lines)
    out["read the records (RecordReader, blocks of lines, flat form)"], read_batches = \
        cpu(lambda: read(lines))
    with octopus.Engine() as e:
        store = e._core.store

        def prolog() -> None:
            for i, b in enumerate(read_batches):
                store.bulk(b.shapes, b.flat, b.distinct, i * batch)

        out["Prolog: janus conversion, dicts, lookups, asserts"], _ = cpu(prolog)
    with octopus.Engine() as plain, octopus.Engine() as indexed:
        indexed.get_names("_ { device_id > 5, vendor: 1 }")     # two ordered indexes
        # Engine.load parses on a helper thread: count the CPU of the whole process.
        a, _ = cpu(lambda: plain.load(lines), time.process_time)
        b, _ = cpu(lambda: indexed.load(lines), time.process_time)
        out["ordered indexes of device_id and vendor (upkeep)"] = b - a
        out["Engine.load in all, no index"] = a
    parsed = [r for b in read_batches for r in b.records()]
    out["change stream: a Record and a Change per record"], _ = cpu(
        lambda: [Change(i, ChangeOp.SET, name, Record._trusted(name, attrs, i), None)
                 for i, (name, attrs) in enumerate(parsed)])
    with tempfile.NamedTemporaryFile("w", suffix=".pl", prefix="octopus_floor_") as f:
        f.write(FLOOR_PL)
        f.flush()
        janus = runtime().janus
        janus.consult(f.name)
    assert_us, lookup_us = janus.apply_once("octopus_load_floor", "floor", n)
    out["floor: assertz of rec(Name, Rev, Dict), one transaction, pure Prolog"] = assert_us
    out["floor: looking up a name not stored, pure Prolog"] = lookup_us
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--baseline", metavar="REV", help="also load with the code of git REV")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--worker", nargs=3, metavar=("KIND", "PATH", "N"), help=argparse.SUPPRESS)
    p.add_argument("--tree", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        if args.tree:
            use_tree(args.tree)
        kind, path, n = args.worker
        print(json.dumps(worker(kind, path, int(n))))
        return
    n = args.records
    with tempfile.TemporaryDirectory(prefix="octopus-load-") as tmp, \
            baseline_tree(args.baseline) as before:
        path = Path(tmp) / "records.txt"
        write_file(path, n)
        size = path.stat().st_size
        data = redis_pipe(n)
        got: dict[str, dict[str, float]] = {}
        loads = [os.getloadavg()[0]]
        got["redis"] = through_redis(data)
        got["sqlite"] = child("sqlite", path, n)
        got["embedded"] = child("embedded", path, n)
        if before is not None:
            got["embedded_before"] = child("embedded", path, n, before[0])
        got["server"] = through_server(path, n)
        if before is not None:
            got["server_before"] = through_server(path, n, before[0])
        got["set_many"] = child("set_many", path, n)
        if before is not None:
            got["set_many_before"] = child("set_many", path, n, before[0])
        loads.append(os.getloadavg()[0])
        print(got, file=sys.stderr, flush=True)
        stage = stages(path, min(n, STAGE_RECORDS))
        loads.append(os.getloadavg()[0])
    redis_s = got["redis"]["s"]
    redis_cpu = got["redis"]["cpu"] + got["redis"]["client_cpu"]
    sqlite_s = got["sqlite"]["s"]

    def row(label: str, key: str) -> list[str]:
        s = got[key]["s"]
        cpu = got[key]["cpu"]
        client = got[key].get("client_cpu")
        both = cpu + (client or 0.0)
        return [label, f"{s:,.1f}", f"{n / s:,.0f}", f"{s / redis_s:.1f}×",
                f"{s / sqlite_s:.2f}×", f"{cpu:,.1f}" + ("" if client is None else
                                                         f" + {client:,.1f}"),
                f"{both / n * 1e6:.1f}", f"{both / redis_cpu:.1f}×"]

    short = "" if before is None else f" (at {before[1]})"
    rows = [row("octopus embedded: Engine.load(FILE), the bulk path", "embedded")]
    if before is not None:
        rows.append(row(f"… the same, before{short}", "embedded_before"))
    rows.append(row("octopus embedded: set_many of (name, dict), batches of 10,000",
                    "set_many"))
    if before is not None:
        rows.append(row(f"… the same, before{short}", "set_many_before"))
    rows.append(row("octopus server: `octopus load FILE` (LOAD of 10,000 records)",
                    "server"))
    if before is not None:
        rows.append(row(f"… the same, before{short}", "server_before"))
    rows += [row("redis-server: `redis-cli --pipe` of HSETs", "redis"),
             row("sqlite in memory: executemany, one transaction, no index", "sqlite")]
    text = table(f"Loading {n:,} records ({size / n:.0f} bytes of text each)",
                 ["store", "seconds", "records/s", "× Redis", "× SQLite",
                  "CPU s (server + client)", "CPU µs/record", "CPU × Redis"], rows)
    total = stage["Engine.load in all, no index"]
    stage_rows = [[k, f"{v:.2f}", "" if "floor" in k else
                   "100%" if "in all" in k else f"{v / total:.0%}"]
                  for k, v in stage.items()]
    text += "\n" + table(f"Where Engine.load's time goes ({min(n, STAGE_RECORDS):,} records, "
                         "CPU µs per record)",
                         ["stage", "µs/record", "share of Engine.load"], stage_rows)
    start = got["embedded"]["start"]
    text += (f"\nThe embedded rows time the load alone: the engine's start before it (SWI-Prolog "
             f"and the store's code; {start:.2f} s in this run) is left out, as the servers' "
             "starts are. "
             f"With it, Engine.load's {n:,} records take "
             f"{got['embedded']['s'] + start:.1f} s ({n / (got['embedded']['s'] + start):,.0f} "
             "records/s).\n")
    text += (f"\nLoad average {min(loads):.1f}-{max(loads):.1f} on 2 cores during the run "
             "(other engineers' test suites): wall-clock seconds of octopus and its anchors "
             "were measured back to back in the same run, so compare ratios, and CPU "
             "seconds, which depend much less on the load. CPU counts the processes doing "
             "the work: the embedded child; the server and the `octopus load` client; "
             "redis-server and redis-cli. The embedded load reads and parses on a helper "
             "thread while Prolog stores the batch before (Prolog runs without the GIL), so "
             "on an idle machine its wall clock is below its CPU time; a server's LOAD is "
             "one batch, read then stored. The change stream's Records and Changes are "
             "built only when something observes them (a trigger, an observer, rules, a "
             "journal), so the plain load does not pay that stage.\n")
    print(text)
    if not args.no_record:
        record_results(SECTION, text)


if __name__ == "__main__":
    main()

"""The server rows of the performance issue, side by side with redis-server in one run:
random keys rather than one hot record, so the reply cache and the parse caches do not
hide the engine.

- SET of random keys (``-r 100000``), 50 clients, without and with ``-P 16``;
- GET of random keys among 100,000 stored records, 50 clients, ``-P 1`` and ``-P 16``
  (octopus's reply cache starts empty: each key's first GET misses), then ``-P 1``
  again once most keys were asked for (``GET -P 1 warm``);
- loading N records through ``redis-cli --pipe`` (octopus: ``SET "kN { ... }"``, Redis:
  ``HSET kN ...`` with the same five fields), and the server's resident set per record
  after the load.

- GET under three key distributions over the stored records — ``uniform``, ``zipf``
  (exponent 0.99, as YCSB's; the ranks shuffled over the names) and ``single`` (one
  key) — from one Python client (``key_load``: 50 connections, ``-P 16``, the requests
  encoded beforehand, replies counted with hiredis), the same client for both servers;
  with octopus's reply-cache hit rate over that run. redis-benchmark draws keys only
  uniformly, hence the client of our own; it is slower than redis-benchmark, so the
  ratios of these rows are bounded by it (Redis waits for the client more than octopus).

Each round starts a fresh redis-server and a fresh ``octopus serve`` and measures them
back to back; ratios are octopus / Redis of the same round, the median of the rounds is
reported. With ``--baseline DIR`` each round also measures the octopus checkout in DIR
(e.g. ``git worktree add /tmp/base <commit>``) right after, so that before and after
share the run's conditions. Usage: ``python bench/server_keys.py [--rounds 3]
[--records 100000] [--requests 100000] [--baseline DIR]``.

``--memory`` measures only the load and the resident set per record after it (issue
13's row "memory per record (server RSS) vs Redis hashes"), at ``--records`` (the issue
states it at 1,000,000), with the octopus server's C heap broken down from inside it
(``INFO``'s used_memory is Redis's; octopus reports none, so the growth of the resident
set is compared for both, and Redis's used_memory beside it).
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import selectors
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import hiredis
import numpy as np
from common import commit_of, record_results, table
from server import ROOT, benchmark, octopus_server, redis_server

KEYS = 100_000
CLIENTS = 50
PIPELINE = 16
ZIPF_S = 0.99
DISTRIBUTIONS = ("uniform", "zipf", "single")


def _pid(port: int) -> int:
    """The process listening on ``port`` (via ss)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                         text=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(port: int) -> int:
    """Resident set of the process listening on ``port`` (from /proc, via ss)."""
    pid = _pid(port)
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _resp(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def _load(port: int, records: int, octopus: bool) -> float:
    """Seconds to load ``records`` records through redis-cli --pipe."""
    chunks = []
    for n in range(records):
        key = f"k{n:012d}"           # redis-benchmark's __rand_int__ form
        if octopus:
            chunks.append(_resp("SET", f"{key} {{ vendor: 0x8086, device_id: {n}, "
                                       f"class: 'C', bus: {n % 256}, label: 'dev {n}' }}"))
        else:
            chunks.append(_resp("HSET", key, "vendor", "32902", "device_id", str(n),
                                "class", "C", "bus", str(n % 256), "label", f"dev {n}"))
    data = b"".join(chunks)
    start = time.perf_counter()
    r = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=data,
                       capture_output=True, timeout=3600)
    took = time.perf_counter() - start
    if b"errors: 0" not in r.stdout:
        raise RuntimeError(f"redis-cli --pipe: {r.stdout[-300:]!r}")
    return took


def key_ids(distribution: str, records: int, n: int, seed: int = 13) -> list[int]:
    """``n`` record numbers drawn from ``distribution`` (the same for every server)."""
    rng = np.random.default_rng(seed)
    if distribution == "uniform":
        return [int(x) for x in rng.integers(0, records, n)]
    if distribution == "single":
        return [records // 2] * n
    weights = 1.0 / np.arange(1, records + 1) ** ZIPF_S
    ranks = rng.choice(records, size=n, p=weights / weights.sum())
    order = list(range(records))
    random.Random(seed).shuffle(order)           # the hot records are anywhere
    return [order[int(r)] for r in ranks]


def key_load(port: int, commands: list[bytes], clients: int = CLIENTS,
             pipeline: int = PIPELINE) -> float:
    """Requests per second for ``commands`` (each one encoded command) spread over
    ``clients`` connections that each keep ``pipeline`` requests in flight."""
    socks = []
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    share = [commands[i::clients] for i in range(clients)]
    sel = selectors.DefaultSelector()
    state = {}
    start = time.perf_counter()
    for s, mine in zip(socks, share, strict=True):
        s.setblocking(False)
        state[s] = [hiredis.Reader(), mine, 0, 0]    # reader, commands, sent, answered
        sel.register(s, selectors.EVENT_READ)
    left = clients

    def send(s: socket.socket) -> None:
        st = state[s]
        chunk = b"".join(st[1][st[2]:st[2] + pipeline])
        st[2] += pipeline
        s.setblocking(True)
        s.sendall(chunk)
        s.setblocking(False)

    for s in socks:
        if state[s][1]:
            send(s)
        else:
            left -= 1
    while left:
        for key, _ in sel.select():
            s = key.fileobj
            st = state[s]
            data = s.recv(1 << 16)
            if not data:
                raise RuntimeError("the server closed a connection")
            reader = st[0]
            reader.feed(data)
            while reader.gets() is not False:
                st[3] += 1
            if st[3] == min(st[2], len(st[1])):
                if st[2] < len(st[1]):
                    send(s)
                else:
                    left -= 1
    took = time.perf_counter() - start
    for s in socks:
        s.close()
    return len(commands) / took


def _info(port: int) -> dict[str, str]:
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO"], capture_output=True,
                         text=True).stdout
    return dict(line.split(":", 1) for line in out.split() if ":" in line)


@functools.cache
def _requests(distribution: str, records: int, n: int, octopus: bool) -> list[bytes]:
    verb = "GET" if octopus else "HGETALL"
    return [_resp(verb, f"k{i:012d}") for i in key_ids(distribution, records, n)]


def _round(server: Callable[[], AbstractContextManager[int]], octopus: bool,
           records: int, requests: int) -> dict[str, float]:
    got: dict[str, float] = {}
    # Beside each rate, the server's CPU time per request: on a shared machine the rates
    # follow the other processes' load, the CPU a request costs much less so.
    cpu: dict[str, float] = {}
    with server() as port:
        pid = _pid(port)
        before = _rss_kib(port)
        start = _cpu_s(pid)
        got["load s"] = _load(port, records, octopus)
        cpu["load"] = (_cpu_s(pid) - start) / records
        got["B/record"] = (_rss_kib(port) - before) * 1024 / records
        get = ("GET", "k__rand_int__") if octopus else ("HGETALL", "k__rand_int__")
        put = (("SET", "k__rand_int__ { v: 1 }") if octopus
               else ("SET", "s__rand_int__", "1"))
        # "GET -P 1 warm": the same as the first, after the 4 requests a key of the two
        # before (octopus's reply cache then holds ~98 % of the keys).
        for name, pipeline, warm in (("GET", 1, ""), ("GET", 16, ""), ("GET", 1, " warm"),
                                     ("SET", 1, ""), ("SET", 16, "")):
            point = f"{name} -P {pipeline}{warm}"
            command = get if name == "GET" else put
            n = requests if pipeline == 1 else 3 * requests
            before_info = _info(port) if octopus and name == "GET" else {}
            start = _cpu_s(pid)
            got[point] = benchmark(port, CLIENTS, pipeline, n,
                                   ("-r", str(min(records, KEYS)), *command))
            cpu[point] = (_cpu_s(pid) - start) / n
            if before_info:
                _cache_stats(got, point, before_info, _info(port), n)
        # The SETs above stored other records under the same names: load them again so
        # that every GET below finds a five-attribute record, as in Redis.
        _load(port, records, octopus)
        for distribution in DISTRIBUTIONS:
            commands = _requests(distribution, records, 3 * requests, octopus)
            before_info = _info(port) if octopus else {}
            start = _cpu_s(pid)
            got[f"GET {distribution} -P {PIPELINE}"] = key_load(port, commands)
            cpu[f"GET {distribution} -P {PIPELINE}"] = (_cpu_s(pid) - start) / len(commands)
            if octopus:
                _cache_stats(got, distribution, before_info, _info(port), len(commands))
        # After every GET: octopus's reply cache holds replies by then (bounded, 64 MiB).
        got["B/record after GETs"] = (_rss_kib(port) - before) * 1024 / records
    got.update({f"{point} CPU µs/req": 1e6 * seconds for point, seconds in cpu.items()})
    return got


def _cache_stats(got: dict[str, float], point: str, before: dict[str, str],
                 after: dict[str, str], requests: int) -> None:
    """The reply cache's hit rate over ``point`` and its size after it (INFO)."""
    hits = int(after["reply_cache_hits"]) - int(before["reply_cache_hits"])
    got[f"cache hits {point} %"] = 100 * hits / requests
    got[f"cache entries {point}"] = int(after["reply_cache_entries"])
    got[f"cache MiB {point}"] = int(after["reply_cache_bytes"]) / (1 << 20)
    got[f"cache evictions {point}"] = (int(after["reply_cache_evictions"])
                                       - int(before["reply_cache_evictions"]))


def first_touch_bound(keys: int, before: int, requests: int) -> float:
    """The highest hit rate (%) a cache that starts empty can reach on ``requests``
    uniform random requests over ``keys`` keys, after ``before`` such requests: each
    key's first request is a miss, however large the cache."""
    def seen(n: int) -> float:
        return keys * (1 - (1 - 1 / keys) ** n)

    return 100 * (1 - (seen(before + requests) - seen(before)) / requests)


def _memory_round(server: Callable[[], AbstractContextManager[int]], octopus: bool,
                  records: int) -> dict[str, float]:
    """Load ``records`` records into a fresh server: its resident set per record after
    the load (and Redis's used_memory per record)."""
    with server() as port:
        before = _rss_kib(port)
        used0 = 0 if octopus else int(_info(port)["used_memory"])
        took = _load(port, records, octopus)
        time.sleep(1)       # let the last replies go and the server settle
        got = {"load s": took, "B/record": (_rss_kib(port) - before) * 1024 / records}
        if not octopus:
            got["used_memory B/record"] = (int(_info(port)["used_memory"]) - used0) / records
    return got


def memory_main(args: argparse.Namespace,
                servers: list[tuple[str, Callable[[], AbstractContextManager[int]], bool]]
                ) -> None:
    rounds: list[dict[str, dict[str, float]]] = []
    for i in range(args.rounds):
        got = {label: _memory_round(server, octopus, args.records)
               for label, server, octopus in servers}
        print(f"round {i + 1}: {got}", file=sys.stderr, flush=True)
        rounds.append(got)

    def med(label: str, key: str) -> float:
        return statistics.median(x[label][key] for x in rounds)

    redis_b = med("redis", "B/record")
    rows = [["redis-server hashes: growth of its resident set", f"{redis_b:,.1f}", "1.00×",
             ""],
            ["redis-server hashes: used_memory", f"{med('redis', 'used_memory B/record'):,.1f}",
             f"{med('redis', 'used_memory B/record') / redis_b:.2f}×", ""]]
    for label, _, octopus in servers:
        if not octopus:
            continue
        ratios = [x[label]["B/record"] / x["redis"]["B/record"] for x in rounds]
        name = "octopus serve" if label == "octopus" else f"octopus serve, {label}"
        rows.append([f"{name}: growth of its resident set", f"{med(label, 'B/record'):,.1f}",
                     f"{statistics.median(ratios):.2f}×",
                     ", ".join(f"{r:.2f}" for r in ratios)])
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    text = table(f"Resident set per record after loading {args.records:,} records "
                 f"(`SET` / `HSET` through redis-cli --pipe), median of {args.rounds} "
                 "interleaved rounds", ["server", "bytes/record", "× Redis (RSS)",
                                        "every round"], rows)
    text += (f"\n\nIssue 13's goal: ≤ 3× Redis. Load average at the end: {load} "
             "(2 cores, other engineers' runs beside; memory does not depend on it).")
    if args.baseline is not None:
        commit = commit_of(args.baseline)
        text += f" Baseline: the checkout at {commit}, in the same rounds."
    print(text)
    if not args.no_record:
        record_results(f"Server memory per record, {args.records:,} records "
                       "(bench/server_keys.py --memory)", text)


def _ratio(a: float, b: float) -> float:
    """a / b; infinite when b is 0 (a CPU time below the clock's tick, in a short run)."""
    return a / b if b else float("inf")


def _octopus_at(root: Path) -> Callable[[], AbstractContextManager[int]]:
    return functools.partial(octopus_server, root=root)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--records", type=int, default=KEYS)
    p.add_argument("--requests", type=int, default=100_000,
                   help="requests per -P 1 point (three times as many with -P 16)")
    p.add_argument("--baseline", type=Path, metavar="DIR",
                   help="also measure the octopus checkout in DIR in each round")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--memory", action="store_true",
                   help="only the resident set per record after the load")
    args = p.parse_args()
    servers: list[tuple[str, Callable[[], AbstractContextManager[int]], bool]] = [
        ("redis", redis_server, False), ("octopus", _octopus_at(ROOT), True)]
    if args.baseline is not None:
        servers.append(("baseline", _octopus_at(args.baseline.resolve()), True))
    if args.memory:
        memory_main(args, servers)
        return
    rounds: list[dict[str, dict[str, float]]] = []
    for i in range(args.rounds):
        got = {}
        for label, server, octopus in servers:
            got[label] = _round(server, octopus, args.records, args.requests)
            print(f"round {i + 1}: {label} {got[label]}", file=sys.stderr, flush=True)
        rounds.append(got)
    load = " ".join(f"{x:.1f}" for x in __import__("os").getloadavg())
    header = ["point", "octopus", "redis", "octopus / redis", "range"]
    if args.baseline is not None:
        header += ["baseline", "baseline / redis", "octopus / baseline"]
    rows = []
    for key in rounds[0]["octopus"]:
        if key.startswith("cache "):
            continue
        o = statistics.median(x["octopus"][key] for x in rounds)
        r = statistics.median(x["redis"][key] for x in rounds)
        ratios = [_ratio(x["octopus"][key], x["redis"][key]) for x in rounds]
        # For times and bytes a smaller number is better: report octopus/redis as is.
        row = [key, f"{o:,.1f}", f"{r:,.1f}", f"{statistics.median(ratios):.2f}",
               f"{min(ratios):.2f}–{max(ratios):.2f}"]
        if args.baseline is not None:
            b = statistics.median(x["baseline"][key] for x in rounds)
            br = statistics.median(_ratio(x["baseline"][key], x["redis"][key]) for x in rounds)
            ob = statistics.median(_ratio(x["octopus"][key], x["baseline"][key])
                                   for x in rounds)
            row += [f"{b:,.1f}", f"{br:.2f}", f"{ob:.2f}"]
        rows.append(row)
    text = table(f"octopus and redis-server, {args.records:,} records, {CLIENTS} clients, "
                 f"median of {args.rounds} interleaved rounds",
                 header, rows)
    def hit_rate(label: str, d: str) -> str:
        return f"{statistics.median(x[label][f'cache hits {d} %'] for x in rounds):.0f} %"

    hits = ", ".join(f"{d} {hit_rate('octopus', d)}" + (
        f" (baseline {hit_rate('baseline', d)})" if args.baseline is not None else "")
        for d in ("GET -P 1", "GET -P 16", "GET -P 1 warm", *DISTRIBUTIONS))

    def cache_at(point: str) -> str:
        med = {what: statistics.median(x["octopus"][f"cache {what} {point}"] for x in rounds)
               for what in ("entries", "MiB", "evictions")}
        return (f"{med['entries']:,.0f} entries, {med['MiB']:.1f} MiB, "
                f"{med['evictions']:,.0f} evictions")

    n1 = args.requests
    bound1 = first_touch_bound(min(args.records, KEYS), 0, n1)
    bound16 = first_touch_bound(min(args.records, KEYS), n1, 3 * n1)
    text += ("\n\nreq/s for GET/SET (higher is better); load seconds and bytes per record "
             "(lower is better; `B/record`: the server's resident set after the load, "
             "`after GETs`: at the end of the round, octopus's reply cache included); "
             "CPU µs/req: the server process's CPU time (user + system) per request, "
             "or per record for the load (lower is better; on a shared machine "
             "the steadiest figure). Redis GET is HGETALL of a 5-field "
             "hash, SET a string. "
             "GET/SET -P 1 and -P 16: redis-benchmark, uniform random keys (`-r`). "
             f"GET uniform/zipf/single: this script's client (`key_load`, {CLIENTS} "
             f"connections, -P {PIPELINE}; Zipf exponent {ZIPF_S}), which bounds both "
             f"servers' rates. Octopus's reply-cache hits: {hits}. The cache starts "
             "empty and a key's first GET is a miss, so on uniform keys the hit rate "
             f"can be at most {bound1:.1f} % at GET -P 1 and {bound16:.1f} % at GET -P 16 "
             f"(the {3 * n1:,} requests after the first {n1:,}), however large the "
             f"cache; its size after GET -P 1: {cache_at('GET -P 1')}; after GET -P 16: "
             f"{cache_at('GET -P 16')} (limits: 262,144 entries, 64 MiB). "
             f"Load average at the end: {load} (2 cores, other engineers' runs beside).")
    if args.baseline is not None:
        commit = commit_of(args.baseline)
        text += f" Baseline: the checkout at {commit}, interleaved in each round."
    print(text)
    if not args.no_record:
        record_results("Server with random keys vs Redis (bench/server_keys.py)", text)


if __name__ == "__main__":
    main()

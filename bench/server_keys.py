"""The server rows of the performance issue, side by side with redis-server in one run:
random keys rather than one hot record, so the reply cache and the parse caches do not
hide the engine.

- SET of random keys (``-r 100000``), 50 clients, without and with ``-P 16``;
- GET of random keys among 100,000 stored records, 50 clients, ``-P 1`` and ``-P 16``;
- loading N records through ``redis-cli --pipe`` (octopus: ``SET "kN { ... }"``, Redis:
  ``HSET kN ...`` with the same five fields), and the server's resident set per record
  after the load.

Each round starts a fresh redis-server and a fresh ``octopus serve`` and measures them
back to back; ratios are octopus / Redis of the same round, the median of the rounds is
reported. Usage: ``python bench/server_keys.py [--rounds 3] [--records 100000]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from common import record_results, table
from server import benchmark, octopus_server, redis_server

KEYS = 100_000


def _rss_kib(port: int) -> int:
    """Resident set of the process listening on ``port`` (from /proc, via ss)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                         text=True).stdout
    pid = int(out.split("pid=")[1].split(",")[0])
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


def _round(server: Callable[[], AbstractContextManager[int]], octopus: bool,
           records: int) -> dict[str, float]:
    got: dict[str, float] = {}
    with server() as port:
        before = _rss_kib(port)
        got["load s"] = _load(port, records, octopus)
        got["B/record"] = (_rss_kib(port) - before) * 1024 / records
        get = ("GET", "k__rand_int__") if octopus else ("HGETALL", "k__rand_int__")
        put = (("SET", "k__rand_int__ { v: 1 }") if octopus
               else ("SET", "s__rand_int__", "1"))
        for name, command in (("GET", get), ("SET", put)):
            for pipeline in (1, 16):
                n = 100_000 if pipeline == 1 else 300_000
                got[f"{name} -P {pipeline}"] = benchmark(
                    port, 50, pipeline, n, ("-r", str(min(records, KEYS)), *command))
    return got


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--records", type=int, default=KEYS)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    rounds: list[tuple[dict[str, float], dict[str, float]]] = []
    for i in range(args.rounds):
        r = _round(redis_server, False, args.records)
        o = _round(octopus_server, True, args.records)
        rounds.append((o, r))
        print(f"round {i + 1}: octopus {o}\n         redis {r}", file=sys.stderr, flush=True)
    rows = []
    for key in rounds[0][0]:
        o = statistics.median(x[0][key] for x in rounds)
        r = statistics.median(x[1][key] for x in rounds)
        ratios = [x[0][key] / x[1][key] for x in rounds]
        # For times and bytes a smaller number is better: report octopus/redis as is.
        rows.append([key, f"{o:,.1f}", f"{r:,.1f}", f"{statistics.median(ratios):.2f}",
                     f"{min(ratios):.2f}–{max(ratios):.2f}"])
    text = table(f"octopus and redis-server, {args.records:,} records, 50 clients, "
                 f"median of {args.rounds} interleaved rounds",
                 ["point", "octopus", "redis", "octopus / redis", "range"], rows)
    text += ("\n\nreq/s for GET/SET (higher is better); load seconds and bytes per record "
             "(lower is better). Redis GET is HGETALL of a 5-field hash, SET a string.")
    print(text)
    if not args.no_record:
        record_results("Server with random keys vs Redis (bench/server_keys.py)", text)


if __name__ == "__main__":
    main()

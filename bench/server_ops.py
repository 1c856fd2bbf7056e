"""What the operator features cost on the request path: TLS (``--tls-cert``) and the
Prometheus metrics (``--metrics-port``, which times every command), against the same
server without them.

redis-benchmark (``--tls`` for the TLS server) sends ``GET`` of one record (a reply
cache hit: the cheapest command, so the largest relative cost) and ``SET`` (an engine
call each) from 50 clients, without and with ``-P 16``. The variants run interleaved,
``--rounds`` times, and the medians are reported, because the 2-core machine is shared
and noisy; the server's CPU time per request (from /proc) is reported too, as it
varies far less with the load of other processes than throughput does. Then one
client's round trip (``get`` from the threaded client, one call at a time) over
``tcp://`` and ``rediss://``. A throwaway self-signed certificate is made with the
``openssl`` command.

    .venv/bin/python bench/server_ops.py [--rounds N] [--quick] [--no-record]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERE, machine, record_results, table
from server import PAYLOAD, free_port, wait_port

ROOT = HERE.parent
SET = ("SET", "bench.rec { payload: %s }", PAYLOAD)
GET = ("GET", "bench.rec")


def make_cert(where: Path) -> tuple[str, str]:
    cert, key = where / "server.pem", where / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return str(cert), str(key)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server(flags: list[str], tls: list[str]) -> Iterator[tuple[int, int]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "octopus", "serve", "--port", str(port),
                             *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=ROOT)
    try:
        wait_port(port, proc)
        subprocess.run(["redis-cli", "-p", str(port), *tls, *SET], check=True,
                       capture_output=True)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def benchmark(port: int, tls: list[str], clients: int, pipeline: int, requests: int,
              command: tuple[str, ...]) -> float:
    r = subprocess.run(["redis-benchmark", "-p", str(port), *tls, "-c", str(clients), "-n",
                        str(requests), "-P", str(pipeline), "-q", *command],
                       capture_output=True, text=True, timeout=600)
    m = re.findall(r"([\d.]+) requests per second", r.stdout.replace("\r", "\n"))
    if not m:
        raise RuntimeError(f"redis-benchmark said: {r.stdout[-300:]} {r.stderr[-300:]}")
    return float(m[-1])


def client_round_trip(url: str, calls: int) -> float:
    """Microseconds per ``get`` of one client, one call at a time (median of 5 runs)."""
    import octopus

    with octopus.connect(url) as c:
        for _ in range(200):
            c.get("bench.rec")
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(calls):
                c.get("bench.rec")
            runs.append((time.perf_counter() - t) / calls * 1e6)
    return statistics.median(runs)


def observe_cost(n: int = 200_000) -> float:
    """Nanoseconds the metrics add to one command: two clock reads and an observation
    (what a connection does per command with ``--metrics-port``), best of 5."""
    from octopus.server.commands import CommandLayer
    from octopus.server.metrics import CommandMetrics

    metrics = CommandMetrics(CommandLayer.COMMANDS)
    tally: dict[int, list[object]] = {}
    reply = b"$5\r\nhello\r\n"
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            started = time.perf_counter()
            metrics.observe(tally, b"GET", time.perf_counter() - started, reply)
        best = min(best, (time.perf_counter() - t) / n * 1e9)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    ap.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    args = ap.parse_args()
    for tool in ("redis-benchmark", "redis-cli", "openssl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    scale = 0.1 if args.quick else 1.0
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_cert(Path(tmp))
        tls = ["--tls", "--cacert", cert]
        variants = {"plain": ([], []), "metrics": (["--metrics-port", "0"], []),
                    "tls": (["--tls-cert", cert, "--tls-key", key], tls)}
        points = [(cmd, p) for cmd in ("GET", "SET") for p in (1, 16)]
        results: dict[tuple[str, str, int], list[float]] = {}
        cpu: dict[tuple[str, str, int], list[float]] = {}
        for r in range(args.rounds):
            for name, (flags, client_tls) in variants.items():
                with server(flags, client_tls) as (port, pid):
                    for cmd, p in points:
                        n = int((100_000 if cmd == "GET" else 30_000) * scale * (2 if p > 1
                                                                                else 1))
                        before = cpu_seconds(pid)
                        rps = benchmark(port, client_tls, 50, p, n, GET if cmd == "GET"
                                        else SET)
                        us = (cpu_seconds(pid) - before) / n * 1e6
                        results.setdefault((name, cmd, p), []).append(rps)
                        cpu.setdefault((name, cmd, p), []).append(us)
                        print(f"round {r + 1} {name:8} {cmd} -P {p:<2} {rps:>10.0f}/s "
                              f"{us:6.1f} µs CPU/request", flush=True)
        rows = []
        cpu_rows = []
        for cmd, p in points:
            med = {v: statistics.median(results[v, cmd, p]) for v in variants}
            rows.append([f"{cmd} -c 50 -P {p}", f"{med['plain']:.0f}", f"{med['metrics']:.0f}",
                         f"{med['metrics'] / med['plain']:.2f}", f"{med['tls']:.0f}",
                         f"{med['tls'] / med['plain']:.2f}"])
            c = {v: statistics.median(cpu[v, cmd, p]) for v in variants}
            cpu_rows.append([f"{cmd} -c 50 -P {p}", f"{c['plain']:.1f}", f"{c['metrics']:.1f}",
                             f"{c['metrics'] / c['plain']:.2f}", f"{c['tls']:.1f}",
                             f"{c['tls'] / c['plain']:.2f}"])
        summary = table("requests/s, median of interleaved rounds",
                        ["command", "plain", "--metrics-port", "ratio", "TLS", "ratio"], rows)
        summary += "\n" + table(
            "server CPU per request (µs, user + system, all threads; median)",
            ["command", "plain", "--metrics-port", "ratio", "TLS", "ratio"], cpu_rows)
        calls = int(5000 * scale)
        with server([], []) as (port, _):
            plain_rt = client_round_trip(f"tcp://127.0.0.1:{port}", calls)
        with server(["--tls-cert", cert, "--tls-key", key], tls) as (port, _):
            tls_rt = client_round_trip(f"rediss://localhost:{port}?ssl_ca_certs={cert}", calls)
        rt = table("one threaded client, one get at a time (µs per call, median of 5)",
                   ["tcp://", "rediss://", "ratio"],
                   [[f"{plain_rt:.0f}", f"{tls_rt:.0f}", f"{tls_rt / plain_rt:.2f}"]])
    cost = observe_cost()
    obs = table("the metrics' work per command, in-process (ns, best of 5)",
                ["per command"], [[f"{cost:.0f}"]])
    text = (f"{summary}\n\n{rt}\n\n{obs}\n\nredis-benchmark and the server on the same 2 "
            f"cores over loopback; {args.rounds} interleaved rounds. TLS 1.3, ECDSA P-256.")
    if not args.no_record and not args.quick:
        record_results("Operator features: TLS and metrics (bench/server_ops.py)", text)
    print(machine())


if __name__ == "__main__":
    main()

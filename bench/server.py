"""The paper's Figure 2, side by side: redis-benchmark against a real redis-server and
against ``octopus serve``, with the same command shape — ``GET`` of one record whose
payload is 256 bytes — for 1, 10, 50 and 100 clients, without and with pipelining
(``-P 16``). Prints a table, writes bench/server_throughput.png and the RESULTS.md
section, and reports the Octopus/Redis ratio at 50 clients (the paper: 0.67×).

Server variants measured in the same run (each is one optimisation switched off/on):

* ``octopus``            the default: uvloop event loop, revision-checked reply cache
* ``--no-reply-cache``   every GET goes to the engine (Prolog) — the plain translation
* ``--no-uvloop``        asyncio's own event loop

Runs interleave Redis and Octopus and keep the best of ``--repeat`` runs of each point,
because the 2-core machine is shared and noisy.

    .venv/bin/python bench/server.py [--quick] [--repeat N]

``--getset`` measures what a change to the request path costs: ``GET`` (reply cache
hits) and ``SET`` (always an engine call) at 50 clients, without and with ``-P 16``,
best of ``--repeat`` runs, plus the stall probe: the round-trip time of ``PING`` and of
an engine call from one client while another sends slow requests (range scans over
20,000 records; 1 MiB queries full of ``%``). ``--label`` names the run in RESULTS.md.
``--baseline DIR`` interleaves the same runs on another checkout (e.g. ``git worktree
add /tmp/base main``) ``--rounds`` times and reports medians and ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERE, machine, record_results, table

ROOT = HERE.parent
PAYLOAD = "x" * 256
CLIENTS = [1, 10, 50, 100]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        subprocess.run(["redis-cli", "-p", str(port), "SET", "bench.rec", PAYLOAD],
                       check=True, capture_output=True)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def octopus_server(*flags: str, root: Path = ROOT) -> Iterator[int]:
    """``octopus serve`` of the checkout at ``root`` (this one by default)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "octopus", "serve", "--port", str(port),
                             *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=root)
    try:
        wait_port(port, proc)
        subprocess.run(["redis-cli", "-p", str(port), "SET",
                        "bench.rec { payload: %s }", PAYLOAD], check=True, capture_output=True)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def benchmark(port: int, clients: int, pipeline: int, requests: int,
              command: tuple[str, ...] = ("GET", "bench.rec")) -> float:
    """Requests per second reported by redis-benchmark for ``command``."""
    r = subprocess.run(["redis-benchmark", "-p", str(port), "-c", str(clients), "-n",
                        str(requests), "-P", str(pipeline), "-q", *command],
                       capture_output=True, text=True, timeout=600)
    m = re.findall(r"([\d.]+) requests per second", r.stdout.replace("\r", "\n"))
    if not m:
        raise RuntimeError(f"redis-benchmark said: {r.stdout[-300:]} {r.stderr[-300:]}")
    return float(m[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per point (best is kept)")
    ap.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    ap.add_argument("--ratio", type=int, default=0, metavar="PAIRS",
                    help="only measure the 50-client ratio: PAIRS interleaved runs")
    ap.add_argument("--getset", action="store_true",
                    help="only GET/SET at 50 clients (-P 1 and 16) and the stall probe")
    ap.add_argument("--label", default="", help="a name for the --getset run")
    ap.add_argument("--baseline", type=Path, metavar="DIR",
                    help="with --getset: compare with the octopus checkout in DIR, "
                         "interleaving --rounds runs of each")
    ap.add_argument("--rounds", type=int, default=5, help="rounds for --baseline")
    args = ap.parse_args()
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (scripts/setup.sh installs it where apt can)")
    scale = 0.1 if args.quick else 1.0
    if args.ratio:
        ratio_only(args.ratio, args.no_record)
        return
    if args.getset and args.baseline:
        compare(args.baseline, args.rounds, args.repeat, scale,
                args.no_record or args.quick)
        return
    if args.getset:
        getset(args.repeat, scale, args.label, args.no_record or args.quick)
        return

    def requests(rps_guess: float) -> int:
        return max(2000, int(rps_guess * 2.5 * scale))   # about 2.5 s per point

    variants = [("octopus", ()), ("octopus --no-reply-cache", ("--no-reply-cache",)),
                ("octopus --no-uvloop", ("--no-uvloop",))]
    results: dict[tuple[str, int, int], float] = {}
    for pipeline in (1, 16):
        for name, flags in [("redis", ()), *variants]:
            ctx = redis_server() if name == "redis" else octopus_server(*flags)
            with ctx as port:
                guess = 20000.0 * (pipeline if name == "redis" else 1)
                for clients in CLIENTS:
                    best = 0.0
                    for _ in range(args.repeat):
                        best = max(best, benchmark(port, clients, pipeline, requests(guess)))
                    guess = best
                    results[(name, pipeline, clients)] = best
                    print(f"{name:28} -P {pipeline:<2} -c {clients:<3} {best:>11,.0f} req/s",
                          file=sys.stderr, flush=True)

    names = ["redis", *(v[0] for v in variants)]
    out = []
    for pipeline in (1, 16):
        rows = []
        for clients in CLIENTS:
            redis = results[("redis", pipeline, clients)]
            row = [f"{clients}", f"{redis:,.0f}"]
            for name in names[1:]:
                v = results[(name, pipeline, clients)]
                row += [f"{v:,.0f}", f"{v / redis:.2f}"]
            rows.append(row)
        header = ["clients", "redis req/s"]
        for name in names[1:]:
            header += [f"{name} req/s", "× redis"]
        title = ("GET of a 256-byte record, no pipelining" if pipeline == 1
                 else "GET of a 256-byte record, pipelined (-P 16)")
        out.append(table(title, header, rows))
    ratio = results[("octopus", 1, 50)] / results[("redis", 1, 50)]
    ratio_p = results[("octopus", 16, 50)] / results[("redis", 16, 50)]
    summary = (f"At 50 clients Octopus reaches {ratio:.2f}× Redis without pipelining and "
               f"{ratio_p:.2f}× with -P 16 (the paper: 0.67×).")
    print(summary)
    png = plot(results, names)
    out.append(f"{summary}\n\nPlot: `bench/{png.name}`. redis-server "
               f"{redis_version()}, redis-benchmark and both servers on the same 2 cores, "
               f"over TCP on loopback; best of {args.repeat} runs per point.")
    if not args.no_record and not args.quick:
        record_results("Server vs Redis (bench/server.py)", "\n".join(out))
    print(machine())


def ratio_only(pairs: int, no_record: bool) -> None:
    """Interleaved Redis/Octopus runs at 50 clients (no pipelining): the median ratio of
    back-to-back pairs is steadier on a shared machine than one run of each."""
    rows, ratios = [], []
    with redis_server() as rport, octopus_server() as oport:
        for i in range(pairs):
            r = benchmark(rport, 50, 1, 150_000)
            o = benchmark(oport, 50, 1, 75_000)
            ratios.append(o / r)
            rows.append([f"{i + 1}", f"{r:,.0f}", f"{o:,.0f}", f"{o / r:.2f}"])
            print(rows[-1], file=sys.stderr, flush=True)
    ratios.sort()
    median = ratios[len(ratios) // 2]
    text = table("Octopus/Redis at 50 clients, back-to-back pairs (no pipelining)",
                 ["pair", "redis req/s", "octopus req/s", "× redis"], rows)
    text += f"\nMedian ratio {median:.2f}× (min {ratios[0]:.2f}, max {ratios[-1]:.2f}).\n"
    print(text)
    if not no_record:
        record_results("Server vs Redis at 50 clients (bench/server.py --ratio)", text)


SET_COMMAND = ("SET", "bench.set { payload: '" + PAYLOAD + "' }")


def getset_points(root: Path, repeat: int, scale: float
                  ) -> tuple[dict[str, float], list[list[str]]]:
    """req/s of GET and SET at 50 clients without and with -P 16 (best of ``repeat``),
    and the stall probe, on the server of the checkout at ``root``."""
    points: dict[str, float] = {}
    with octopus_server(root=root) as port:
        for name, command in (("GET", ("GET", "bench.rec")), ("SET", SET_COMMAND)):
            for pipeline in (1, 16):
                n = int((100_000 if pipeline == 1 else 400_000) * scale)
                best = max(benchmark(port, 50, pipeline, n, command) for _ in range(repeat))
                points[f"{name} -P {pipeline}"] = best
                print(root, name, pipeline, f"{best:,.0f}", file=sys.stderr, flush=True)
        # One client alone: an engine call's round trip, thread hops included.
        points["EXISTS, 1 client"] = max(
            benchmark(port, 1, 1, int(20_000 * scale), ("EXISTS", "bench.rec"))
            for _ in range(repeat))
        stall = stall_probe(port)
    return points, stall


def getset(repeat: int, scale: float, label: str, no_record: bool) -> None:
    """GET and SET at 50 clients, without and with -P 16, then the stall probe."""
    points, stall = getset_points(ROOT, repeat, scale)
    rows = [[k, f"{v:,.0f}"] for k, v in points.items()]
    text = table(f"octopus {label}: 50 clients, best of {repeat}".replace("  ", " "),
                 ["point", "req/s"], rows)
    text += "\n" + table("Round trips of a client while another sends slow requests",
                         ["command", "median ms", "max ms", "slow requests done meanwhile"],
                         stall)
    print(machine())
    if not no_record:
        record_results(f"Server GET/SET at 50 clients{' (' + label + ')' if label else ''} "
                       "(bench/server.py --getset)", text)


def compare(baseline: Path, rounds: int, repeat: int, scale: float, no_record: bool) -> None:
    """``--getset`` on the baseline checkout and on this one, interleaved ``rounds``
    times (a shared machine's load drifts): the median of each point, and the median of
    the per-round ratios, which is steadier than either."""
    import statistics

    runs: dict[str, list[tuple[dict[str, float], list[list[str]]]]] = {"base": [], "this": []}
    for _ in range(rounds):
        runs["base"].append(getset_points(baseline.resolve(), repeat, scale))
        runs["this"].append(getset_points(ROOT, repeat, scale))
    rows = []
    for key in runs["this"][0][0]:
        base = [r[0][key] for r in runs["base"]]
        this = [r[0][key] for r in runs["this"]]
        ratios = [t / b for t, b in zip(this, base, strict=True)]
        rows.append([key, f"{statistics.median(base):,.0f}", f"{statistics.median(this):,.0f}",
                     f"{statistics.median(ratios):.2f}", f"{min(ratios):.2f}–{max(ratios):.2f}"])
    stall_rows = []
    for i, row in enumerate(runs["this"][0][1]):
        base = [float(r[1][i][1]) for r in runs["base"]]
        this = [float(r[1][i][1]) for r in runs["this"]]
        stall_rows.append([row[0], f"{statistics.median(base):.2f}",
                           f"{statistics.median(this):.2f}"])
    text = table(f"GET/SET at 50 clients, req/s: median of {rounds} interleaved rounds "
                 f"(best of {repeat} per round), baseline = {baseline.name}",
                 ["point", "baseline", "this", "× baseline (median)", "range"], rows)
    text += "\n" + table("Median round trip (ms) of a client while another sends slow "
                         "requests", ["command", "baseline", "this"], stall_rows)
    print(text)
    print(machine())
    if not no_record:
        record_results("Server GET/SET at 50 clients, against a baseline "
                       "(bench/server.py --getset --baseline)", text)


def stall_probe(port: int, probes: int = 30) -> list[list[str]]:
    """PING and an EXISTS (an engine call) from one client while another keeps sending
    slow requests: range scans over 20,000 records (~50 ms of Prolog each) and
    distinct 1 MiB queries full of ``%``. Before the engine calls left the event loop,
    every client waited for each of them."""
    import threading

    from octopus.server.resp import ReplyParser, encode_command

    def roundtrip(s: socket.socket, parser: ReplyParser, command: list[str]) -> object:
        s.sendall(encode_command(command))
        while (reply := parser.gets()) is False:
            parser.feed(s.recv(1 << 20))
        return reply

    with socket.create_connection(("127.0.0.1", port)) as s:
        n = 20_000
        s.sendall(b"".join(encode_command(["SET", f"scan{i} {{ slowscan: {i} }}"])
                           for i in range(n)))
        p = ReplyParser()
        got = 0
        while got < n:
            p.feed(s.recv(1 << 20))
            while p.gets() is not False:
                got += 1
    rows = []
    for label, slow_command in (
            ("range scans", lambda i: ["NAMES", "_ { slowscan > 1000000000 }"]),
            ("1 MiB '%' queries", lambda i: ["GET", f"_ {{ a: 'x{i}" + "%" * ((1 << 20) - 40)
                                           + "' }"])):
        stop = threading.Event()
        done = [0]

        def slow(make: Any = slow_command, stop: threading.Event = stop,
                 done: list[int] = done) -> None:
            with socket.create_connection(("127.0.0.1", port)) as s:
                p = ReplyParser()
                i = 0
                while not stop.is_set():
                    i += 1
                    roundtrip(s, p, make(i))
                    done[0] += 1

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port)) as s:
            p = ReplyParser()
            for name, command in (("PING", ["PING"]),
                                  ("EXISTS (engine call)", ["EXISTS", "bench.rec"])):
                times = []
                before = done[0]
                for _ in range(probes):
                    t0 = time.perf_counter()
                    roundtrip(s, p, command)
                    times.append(time.perf_counter() - t0)
                    time.sleep(0.02)
                times.sort()
                rows.append([f"{name}, during {label}", f"{times[len(times) // 2] * 1000:.2f}",
                             f"{times[-1] * 1000:.1f}", f"{done[0] - before}"])
        stop.set()
        thread.join()
    return rows


def redis_version() -> str:
    r = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    m = re.search(r"v=(\S+)", r.stdout)
    return m.group(1) if m else "?"


def plot(results: dict[tuple[str, int, int], float], names: list[str]) -> Path:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, pipeline in zip(axes, (1, 16), strict=True):
        for name in names:
            ys = [results[(name, pipeline, c)] / 1000 for c in CLIENTS]
            ax.plot(CLIENTS, ys, marker="o", label=name,
                    linewidth=2.5 if name in ("redis", "octopus") else 1.2)
        ax.set_xlabel("clients")
        ax.set_ylabel("thousand GETs / s")
        ax.set_title("no pipelining" if pipeline == 1 else "pipelined (-P 16)")
        ax.set_xticks(CLIENTS)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=8)
    fig.suptitle("Throughput of GET (256-byte payload): Octopus vs Redis (cf. paper Fig. 2)")
    fig.tight_layout()
    path = HERE / "server_throughput.png"
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    main()

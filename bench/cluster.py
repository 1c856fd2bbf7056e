"""Octopus as a cluster over etcd, side by side with etcd itself (and ZooKeeper when a
ZooKeeper server is installed), in one run on loopback (docs/cluster.md).

Measured, each with the same client count for every system:

- write throughput (a set of one small record; etcd: a put) with 1 and 3 Octopus nodes;
- read throughput (get by name; etcd: a linearizable range) with 1 and 3 nodes;
- lock acquire + release latency, one client alone (Octopus's lock recipe; etcd's own
  lock API: a session lease, then /v3/lock/lock and unlock, as `etcdctl lock` does;
  ZooKeeper: kazoo's Lock recipe);
- contended grants per second, contenders spread over the nodes;
- fail-over time: SIGKILL of the lock holder's node (or of the holder's process) to the
  next holder's grant on another node, with the nodes' lease TTL.

Clients run in separate worker processes (``bench/cluster.py worker ...``) so the
client side is not one GIL. The machine has 2 cores shared by 3 etcd members, the nodes
and the clients: the absolute numbers are this machine's; the ratios are the point.
Run: ``.venv/bin/python bench/cluster.py [--baseline REV]`` (about four minutes, six
with a baseline); results go to bench/RESULTS.md. ``--baseline REV`` runs the nodes of
an older commit too, in the same rounds against the same etcd: before/after figures
taken under the same load.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SECONDS = 3.0          # each throughput measurement
ROUNDS = 3             # interleaved rounds of the throughput rows
PROCESSES = 2          # client worker processes
THREADS = 8            # client threads per worker process (16 clients in all)
TTL = 2                # the nodes' lease TTL for the fail-over measurement


# --- workers (separate processes) -----------------------------------------------------------


def worker(kind: str, target: str, threads: int, seconds: float, tag: str) -> None:
    """Run ``threads`` clients doing ``kind`` against ``target`` for ``seconds``; print
    the operation count and the latencies' median as JSON."""
    counts = [0] * threads
    lat: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def run(i: int) -> None:
        try:
            op = _op(kind, target, i, tag)
            op()                                # connect and warm up
        except BaseException:
            start.abort()                       # the run fails instead of hanging
            raise
        start.wait()
        while not stop.is_set():
            t0 = time.perf_counter()
            op()
            lat[i].append(time.perf_counter() - t0)
            counts[i] += 1

    pool = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    cpu0 = time.process_time()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join(30)
    cpu = time.process_time() - cpu0
    flat = sorted(x for xs in lat for x in xs)
    print(json.dumps({"ops": sum(counts), "seconds": seconds, "cpu": cpu,
                      "median_ms": 1000 * flat[len(flat) // 2] if flat else 0}), flush=True)
    os._exit(0)


def _op(kind: str, target: str, i: int, tag: str) -> Any:
    urls = target.split(",")
    if kind.startswith("octo"):
        import octopus

        client = octopus.connect(urls[i % len(urls)])
        name = f"b{tag}.{os.getpid()}.{i}"
        if kind == "octo-set":
            n = iter(range(1 << 40))
            return lambda: client.set("%n { v: %d }", name, next(n))
        if kind == "octo-get":
            client.set("%n { v: 1, pad: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }", name)
            return lambda: client.get("%n", name)
        if kind == "octo-lock":
            lock = client.lock(f"lk{tag}")

            def grant() -> None:
                lock.acquire()
                lock.release()

            return grant
    if kind == "zk-lock":
        from kazoo.client import KazooClient

        zk = KazooClient(hosts=target)
        zk.start()
        zlock = zk.Lock(f"/lk{tag}", f"c{i}")

        def zk_grant() -> None:
            zlock.acquire()
            zlock.release()

        return zk_grant
    if kind == "zk-set":
        from kazoo.client import KazooClient

        zk = KazooClient(hosts=target)
        zk.start()
        path = f"/b{tag}-{os.getpid()}-{i}"
        zk.ensure_path(path)
        return lambda: zk.set(path, b'{"v":1}')
    if kind == "zk-get":
        from kazoo.client import KazooClient

        zk = KazooClient(hosts=target)
        zk.start()
        path = f"/g{tag}-{os.getpid()}-{i}"
        zk.ensure_path(path)
        return lambda: zk.get(path)
    from octopus.cluster.etcd import Etcd

    etcd = Etcd(urls[i % len(urls):] + urls[:i % len(urls)])
    key = f"/bench{tag}/{os.getpid()}.{i}".encode()
    if kind == "etcd-put":
        return lambda: etcd.put(key, b'{"a":{"v":1}}')
    if kind == "etcd-get":
        etcd.put(key, b'{"a":{"v":1,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}')
        return lambda: etcd.range(key)
    if kind == "etcd-lock":
        lease, _ = etcd.lease_grant(10)
        alive = threading.Thread(target=_keep, args=(etcd, lease), daemon=True)
        alive.start()

        def etcd_grant() -> None:
            owner = etcd.lock(f"/lk{tag}".encode(), lease, timeout=60)
            etcd.unlock(owner)

        return etcd_grant
    raise SystemExit(f"unknown kind {kind}")


def _keep(etcd: Any, lease: int) -> None:
    while True:
        time.sleep(3)
        with contextlib.suppress(Exception):
            etcd.lease_keepalive(lease)


def run_workers(kind: str, target: str, *, processes: int = PROCESSES, threads: int = THREADS,
                seconds: float = SECONDS) -> tuple[float, float, float]:
    """(operations per second, median latency ms, the clients' CPU µs per operation) of
    ``processes`` × ``threads`` clients."""
    tag = str(time.monotonic_ns())
    procs = [subprocess.Popen([sys.executable, __file__, "worker", kind, target, str(threads),
                               str(seconds), tag], stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 120)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"worker {kind} printed nothing")
        results.append(json.loads(lines[-1]))
    ops = sum(r["ops"] for r in results)
    return (ops / seconds, statistics.median(r["median_ms"] for r in results),
            1e6 * sum(r["cpu"] for r in results) / max(ops, 1))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the processes ``pids``."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_measured(kind: str, target: str, etcd_pids: list[int],
                 node_pids: list[int]) -> tuple[float, float, float, float, float]:
    """``run_workers`` and the CPU it cost per operation, in µs: (ops/s, median ms, etcd's
    CPU, the nodes' CPU, the clients' CPU). CPU per operation depends far less on the
    machine's other load than a rate does: on 2 shared cores it is what a rate is made
    of (the clients' share included: they run on the same cores)."""
    etcd0, nodes0 = cpu_seconds(etcd_pids), cpu_seconds(node_pids)
    rate, ms, clients = run_workers(kind, target)
    ops = max(rate * SECONDS, 1.0)
    return (rate, ms, 1e6 * (cpu_seconds(etcd_pids) - etcd0) / ops,
            1e6 * (cpu_seconds(node_pids) - nodes0) / ops, clients)


# --- ZooKeeper, when a server is installed ------------------------------------------------


def zookeeper_server() -> str | None:
    """The path of a ZooKeeper server start script, or None."""
    for path in ("/usr/share/zookeeper/bin/zkServer.sh",):
        if os.path.exists(path) and shutil.which("java"):
            return path
    return None


@contextlib.contextmanager
def zookeeper() -> Iterator[str | None]:
    """A standalone ZooKeeper on a free loopback port (its host:port), or None."""
    try:
        import kazoo  # the client must be there too: pip install kazoo
    except ImportError:
        kazoo = None
    if zookeeper_server() is None or kazoo is None:
        yield None
        return

    directory = Path(tempfile.mkdtemp(prefix="octopus-zk-"))
    port = _free_port()
    cfg = directory / "zoo.cfg"
    cfg.write_text(f"tickTime=2000\ndataDir={directory / 'data'}\nclientPort={port}\n"
                   f"clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
                   f"4lw.commands.whitelist=*\n")
    # The classpath Debian's zkEnv.sh uses (zookeeper.jar's manifest names the rest).
    with open(directory / "zk.log", "wb") as out:
        proc = subprocess.Popen(["java", "-cp",
                                 "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar",
                                 "-Dzookeeper.log.dir=" + str(directory),
                                 "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.2)
        time.sleep(1.0)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- fail-over ----------------------------------------------------------------------------------


HOLDER = """
import sys, time, octopus
c = octopus.connect(sys.argv[1])
lock = c.lock(sys.argv[2])
lock.acquire()
print("held", flush=True)
time.sleep(3600)
"""


def failover_time(etcd_url: str, what: str, prefix: str) -> float:
    """Seconds from SIGKILL of the holder's node (``node``) or process (``client``) to
    the grant of the waiter on another node."""
    import octopus
    from octopus.cluster.launch import OctopusNode

    a = OctopusNode(etcd_url, prefix=prefix, lease_ttl=TTL).start()
    b = OctopusNode(etcd_url, prefix=prefix, lease_ttl=TTL).start()
    try:
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, a.url, "fo"],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with octopus.connect(b.url) as waiter:
            lock = waiter.lock("fo")
            granted: list[float] = []
            t = threading.Thread(target=lambda: (lock.acquire(timeout=30),
                                                 granted.append(time.perf_counter())))
            t.start()
            time.sleep(0.5)
            killed = time.perf_counter()
            if what == "node":
                a.kill(signal.SIGKILL)
            else:
                holder.kill()
            t.join(30)
            holder.kill()
            holder.wait()
            lock.release()
            return granted[0] - killed
    finally:
        a.stop()
        b.stop()


# --- the run --------------------------------------------------------------------------------


#: Runs the ``octopus`` command line of the source tree given as its first argument
#: (a baseline checkout), not the installed one (an editable install's finder would
#: take precedence over sys.path, so it is dropped).
BASELINE_BOOT = ("import sys; tree = sys.argv.pop(1); "
                 "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
                 "sys.path.insert(0, tree); from octopus.cli import main; "
                 "sys.exit(main(sys.argv[1:]))")


@contextlib.contextmanager
def baseline_tree(revision: str | None) -> Iterator[tuple[list[str], str] | None]:
    """The command that runs ``octopus`` as of git ``revision`` (its octopus/ and
    prolog/ extracted to a temporary directory) and the revision's short name; None
    without a revision."""
    if revision is None:
        yield None
        return
    root = HERE.parent
    short = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", revision],
                           capture_output=True, text=True, check=True).stdout.strip()
    directory = Path(tempfile.mkdtemp(prefix="octopus-baseline-"))
    try:
        archive = subprocess.run(["git", "-C", str(root), "archive", revision, "octopus",
                                  "prolog"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
        yield [sys.executable, "-c", BASELINE_BOOT, str(directory)], short
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def start_nodes(etcd_url: str, prefix: str, n: int,
                command: list[str] | None = None) -> list[Any]:
    from octopus.cluster.launch import OctopusNode

    nodes = [OctopusNode(etcd_url, prefix=prefix, command=command) for _ in range(n)]
    for node in nodes:
        node.spawn()
    for node in nodes:
        node.wait_ready()
    return nodes


def main(baseline: str | None = None) -> None:
    from common import record_results, table

    from octopus.cluster.launch import EtcdCluster

    load = os.getloadavg()[0]
    rows: list[list[Any]] = []
    lock_rows: list[list[Any]] = []
    fail_rows: list[list[Any]] = []
    clients = PROCESSES * THREADS
    before_name: str | None = None
    with EtcdCluster() as etcd, baseline_tree(baseline) as before:
        before_name = before[1] if before else None
        one = start_nodes(etcd.url, "/one/", 1)
        three = start_nodes(etcd.url, "/three/", 3)
        # The same rows from an older checkout's nodes, in the same rounds.
        old_one = start_nodes(etcd.url, "/b-one/", 1, before[0]) if before else []
        old_three = start_nodes(etcd.url, "/b-three/", 3, before[0]) if before else []
        urls3 = ",".join(n.url for n in three)
        old3 = ",".join(n.url for n in old_three)
        try:
            # Interleaved rounds: the machine's load changes from minute to minute, so
            # each ratio is taken within one round and the median round is reported.
            epids = [p.pid for p in etcd.procs if p is not None]

            def pids(nodes: list[Any]) -> list[int]:
                return [n.proc.pid for n in nodes if n.proc is not None]

            rounds: list[dict[str, tuple[float, ...]]] = []
            for _ in range(ROUNDS):
                r: dict[str, tuple[float, ...]] = {
                    "etcd-put": run_measured("etcd-put", etcd.url, epids, []),
                    "w1": run_measured("octo-set", one[0].url, epids, pids(one)),
                    "w3": run_measured("octo-set", urls3, epids, pids(three))}
                if before:
                    r["ow1"] = run_measured("octo-set", old_one[0].url, epids, pids(old_one))
                    r["ow3"] = run_measured("octo-set", old3, epids, pids(old_three))
                r["etcd-get"] = run_measured("etcd-get", etcd.url, epids, [])
                r["r1"] = run_measured("octo-get", one[0].url, epids, pids(one))
                r["r3"] = run_measured("octo-get", urls3, epids, pids(three))
                # Lock latency: one client alone, each system in turn.
                r["etcd-lock"] = run_workers("etcd-lock", etcd.url, processes=1, threads=1)
                r["lock"] = run_workers("octo-lock", urls3, processes=1, threads=1)
                if before:
                    r["olock"] = run_workers("octo-lock", old3, processes=1, threads=1)
                rounds.append(r)
                print(f"round {len(rounds)} (load {os.getloadavg()[0]:.1f}): " + ", ".join(
                    f"{k} {v[0]:,.0f}/s {v[1]:.2f} ms"
                    + (f" cpu {v[2]:.0f}+{v[3]:.0f}+{v[4]:.0f} µs" if len(v) > 3 else "")
                    for k, v in r.items()), flush=True)

            def med(key: str, base: str | None = None,
                    latency: bool = False) -> tuple[float, float, float]:
                rates = [r[key][0] for r in rounds]
                index = 1 if latency else 0
                ratios = [r[key][index] / r[base][index] for r in rounds] if base else [1.0]
                return (statistics.median(rates),
                        statistics.median(r[key][1] for r in rounds),
                        statistics.median(ratios))

            def row(kind: str, label: str, key: str, base: str,
                    extra: str = "") -> list[Any]:
                rate, ms, ratio = med(key, base if key != base else None)
                etcd_cpu = statistics.median(r[key][2] for r in rounds)
                node_cpu = statistics.median(r[key][3] for r in rounds)
                client_cpu = statistics.median(r[key][4] for r in rounds)
                nodes = "" if key.startswith("etcd") else f"{node_cpu:,.0f}"
                return [kind, label, f"{rate:,.0f}", f"{ms:.2f}", f"{ratio:.2f}{extra}",
                        f"{etcd_cpu:,.0f}", nodes, f"{client_cpu:,.0f}"]

            scale = statistics.median(r["r3"][0] / r["r1"][0] for r in rounds)
            rows += [
                row("writes", "etcd put (JSON gateway)", "etcd-put", "etcd-put"),
                row("writes", "octopus set, 1 node", "w1", "etcd-put"),
                row("writes", "octopus set, 3 nodes", "w3", "etcd-put"),
            ]
            if before:
                rows += [
                    row("writes", f"octopus set, 1 node (before: {before[1]})", "ow1",
                        "etcd-put"),
                    row("writes", f"octopus set, 3 nodes (before: {before[1]})", "ow3",
                        "etcd-put"),
                ]
            rows += [
                row("reads", "etcd range (linearizable)", "etcd-get", "etcd-get"),
                row("reads", "octopus get, 1 node", "r1", "etcd-get"),
                row("reads", "octopus get, 3 nodes", "r3", "etcd-get",
                    f" ({scale:.2f}× 1 node)"),
            ]
            etcd_put = med("etcd-put")[0]
            etcd_get = med("etcd-get")[0]
            e_lat = med("etcd-lock")[1]
            # Contended: 6 contenders over the nodes.
            e_con = run_workers("etcd-lock", etcd.url, processes=2, threads=3)[0]
            o_con = run_workers("octo-lock", urls3, processes=2, threads=3)[0]
            o_lat, lat_ratio = med("lock", "etcd-lock", latency=True)[1:]
            lock_rows += [
                ["etcd lock API (v3lock, lease per client)", f"{e_lat:.2f}", "1.00",
                 f"{e_con:,.0f}", "1.00"],
                ["octopus Lock recipe (3 nodes)", f"{o_lat:.2f}", f"{lat_ratio:.2f}",
                 f"{o_con:,.0f}", f"{o_con / e_con:.2f}"],
            ]
            if before:
                b_con = run_workers("octo-lock", old3, processes=2, threads=3)[0]
                b_lat, b_ratio = med("olock", "etcd-lock", latency=True)[1:]
                lock_rows.append([f"octopus Lock recipe (3 nodes, before: {before[1]})",
                                  f"{b_lat:.2f}", f"{b_ratio:.2f}", f"{b_con:,.0f}",
                                  f"{b_con / e_con:.2f}"])
            with zookeeper() as zk:
                if zk is not None:
                    zs, zs_ms, _ = run_workers("zk-set", zk)
                    zg, zg_ms, _ = run_workers("zk-get", zk)
                    z_lat = run_workers("zk-lock", zk, processes=1, threads=1)[1]
                    z_con = run_workers("zk-lock", zk, processes=2, threads=3)[0]
                    rows += [["writes", "ZooKeeper set (kazoo, 1 server)", f"{zs:,.0f}",
                              f"{zs_ms:.2f}", f"{zs / etcd_put:.2f}", "", "", ""],
                             ["reads", "ZooKeeper get (kazoo, 1 server)", f"{zg:,.0f}",
                              f"{zg_ms:.2f}", f"{zg / etcd_get:.2f}", "", "", ""]]
                    lock_rows.append(["ZooKeeper Lock recipe (kazoo, 1 server)",
                                      f"{z_lat:.2f}", f"{z_lat / e_lat:.2f}", f"{z_con:,.0f}",
                                      f"{z_con / e_con:.2f}"])
                else:
                    rows.append(["—", "ZooKeeper: not measured (needs apt-get install "
                                 "zookeeper and pip install kazoo)", "", "", "", "", "", ""])
        finally:
            for node in one + three + old_one + old_three:
                node.stop()
        for what in ("node", "client"):
            times = [failover_time(etcd.url, what, f"/fo{what}{i}/") for i in range(3)]
            fail_rows.append([f"SIGKILL of the holder's {what}", f"{TTL}",
                              f"{statistics.median(times):.2f}",
                              ", ".join(f"{t:.2f}" for t in times)])
    load_end = os.getloadavg()[0]
    text = (
        f"3 etcd {etcd_version()} members and the Octopus nodes on loopback, {clients} "
        f"clients in {PROCESSES} worker processes ({THREADS} threads each), "
        f"{SECONDS:g} s per measurement, {ROUNDS} interleaved rounds (medians; each ratio "
        "is taken within a round; the lock latency of one client alone is measured in "
        "each round too). The ratio column divides by etcd's own figure from the "
        "same client count; the CPU columns are the CPU time etcd's three members, the "
        "Octopus nodes and the client processes spent per operation during the measurement "
        "(medians over the rounds; on 2 shared cores a rate is what they add up to). Load "
        f"average: {load:.1f} at the start, {load_end:.1f} at the end, "
        f"on {os.cpu_count()} cores (other work shares this machine)."
        + (f" Rows marked *before* are the nodes of commit {before_name}, run in the "
           "same rounds against the same etcd." if before_name else "")
        + "\n\n"
        + table("Throughput", ["kind", "system", "ops/s", "median ms", "× etcd",
                               "etcd CPU µs/op", "nodes' CPU µs/op", "clients' CPU µs/op"],
                rows)
        + "\n"
        + table("Locks", ["lock", "acquire+release ms (alone)", "× etcd",
                          "contended grants/s (6 clients)", "× etcd"], lock_rows)
        + "\n"
        + table("Fail-over (lease TTL in seconds)", ["event", "TTL s", "median s to the next "
                                                     "grant", "runs"], fail_rows))
    record_results("Cluster over etcd (bench/cluster.py)", text)


def etcd_version() -> str:
    from octopus.cluster.launch import etcd_binary

    out = subprocess.run([etcd_binary(), "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if out else "?"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    else:
        import argparse

        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("--baseline", metavar="REV",
                            help="also run the nodes of git revision REV in the same "
                                 "rounds (before/after rows)")
        main(parser.parse_args().baseline)

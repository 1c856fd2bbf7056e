"""``make cluster-demo``: a 3-member etcd cluster and 3 Octopus servers on loopback, what
they survive, and everything torn down at the end (docs/cluster.md).

Run: ``python -m octopus.cluster.demo`` (needs the ``etcd`` binary: Debian's
etcd-server package, installed by ``make setup`` as root).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import octopus
from octopus.cluster.launch import EtcdCluster, OctopusNode

TTL = 2

HOLDER = """
import sys, time, octopus
c = octopus.connect(sys.argv[1])
lock = c.lock("printer")
lock.acquire()
print(lock.token, flush=True)
time.sleep(3600)
"""


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    started = time.perf_counter()
    with EtcdCluster() as etcd:
        say(f"etcd: 3 members at {etcd.url}")
        nodes = [OctopusNode(etcd.url, lease_ttl=TTL) for _ in range(3)]
        for node in nodes:
            node.spawn()
        for node in nodes:
            node.wait_ready()
        try:
            for i, node in enumerate(nodes):
                print(f"node {i}: octopus serve --etcd ... on {node.url}")
            c0, c1, c2 = (octopus.connect(n.url) for n in nodes)

            say("a write on node 0 is read on nodes 1 and 2; a trigger on node 2 fires")
            c2.watch("r'^hw\\.'", lambda ev: print(f"   node 2 trigger: {ev.mode.name} "
                                                   f"{ev.record} (revision {ev.revision})"))
            record = c0.set("hw.nic.0 { vendor: 0x8086, up: true }")
            print(f"   node 0 wrote  {record} at etcd revision {record.revision}")
            c1.sync()
            print(f"   node 1 reads  {c1.get('hw.nic.0')}")
            c2.flush()

            say("a lock held through node 0; node 0 is killed with SIGKILL")
            holder = subprocess.Popen([sys.executable, "-c", HOLDER, nodes[0].url],
                                      stdout=subprocess.PIPE, text=True)
            assert holder.stdout is not None
            token = holder.stdout.readline().strip()
            print(f"   a client of node 0 holds 'printer' with token {token}")
            lock = c1.lock("printer")
            granted: list[float] = []

            def wait_for_lock() -> None:
                lock.acquire()
                granted.append(time.perf_counter())

            waiter = threading.Thread(target=wait_for_lock)
            waiter.start()
            time.sleep(0.5)
            print(f"   a client of node 1 waits; queue: {lock.contenders()}")
            killed = time.perf_counter()
            nodes[0].kill(signal.SIGKILL)
            waiter.join(30)
            print(f"   node 1's client got it {granted[0] - killed:.2f} s after the kill "
                  f"(lease TTL {TTL} s), token {lock.token}")
            lock.release()
            holder.kill()
            holder.wait()

            say("a client given every URL fails over and keeps its session")
            fo = octopus.connect([nodes[1].url, nodes[2].url])
            fo.set("presence.demo { who: 'me' }", ephemeral=True)
            print(f"   connected to {fo.url}, wrote an ephemeral record")
            nodes[1].kill(signal.SIGKILL)
            print(f"   node 1 killed; the record: {fo.get('presence.demo')} via {fo.url}")

            say("two etcd members killed: no quorum")
            etcd.kill(0)
            etcd.kill(1)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    c2.set("during { x: 1 }")
                except octopus.Unavailable as e:
                    print(f"   write: Unavailable: {str(e)[:110]}...")
                    if "no etcd quorum" in str(e):
                        break
            print(f"   read goes on: {c2.get('hw.nic.0')}; staleness {c2.staleness():.1f} s")
            etcd.restart(0)
            etcd.restart(1)
            etcd.wait_healthy(60)
            deadline = time.monotonic() + 30
            while True:
                try:
                    print(f"   quorum back: wrote {c2.set('after { x: 2 }')}")
                    break
                except octopus.Unavailable:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            for c in (fo, c1, c2):
                c.close()
        finally:
            for node in nodes:
                node.stop()
    say(f"torn down after {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Losing a node or a client: ephemeral records go with the session's lease, ON_DEL fires
on the other nodes, the next lock waiter proceeds, and a client given several URLs fails
over and keeps its session. Nodes and clients are separate processes killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import octopus
from octopus import Mode
from octopus.cluster.launch import OctopusNode

from .conftest import TTL

HOLDER = textwrap.dedent("""
    import json, sys, time
    import octopus
    url, log = sys.argv[1], sys.argv[2]
    client = octopus.connect(url)
    lock = client.lock("res", identifier="holder")
    assert lock.acquire(timeout=30)
    with open(log, "a") as f:
        f.write(json.dumps(["enter", lock.token, "holder", time.time()]) + "\\n")
    print("held", flush=True)
    while not client.closed:          # hold until the connection (or this process) dies
        try:
            client.exists("res_0")
        except octopus.OctopusError:
            break
        time.sleep(0.05)
    with open(log, "a") as f:
        f.write(json.dumps(["exit", lock.token, "holder", time.time()]) + "\\n")
""")


def _holder(url: str, log: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(log)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def _entries(log: Path) -> list[list[object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _lock_survives(kill: str, nodes: list[OctopusNode]) -> None:
    """A holder on node A, a waiter on node B; SIGKILL ``kill`` (the node or the
    holder's process); the waiter gets the lock within TTL + 1 s, after the holder's
    exit in the shared log, with a greater token."""
    fd, name = tempfile.mkstemp(suffix=".log")
    os.close(fd)
    log = Path(name)
    holder = _holder(nodes[0].url, log)
    granted = threading.Event()
    waiter = octopus.connect(nodes[1].url)
    lock = waiter.lock("res", identifier="waiter")
    times: dict[str, float] = {}

    def wait() -> None:
        assert lock.acquire(timeout=30)
        times["granted"] = time.time()
        with open(log, "a") as f:
            f.write(json.dumps(["enter", lock.token, "waiter", times["granted"]]) + "\n")
        granted.set()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.5)
    assert not granted.is_set()                       # the holder has it
    assert waiter.get_names("r'^res_'") == ["res_0", "res_1"]
    times["killed"] = time.time()
    if kill == "node":
        nodes[0].kill(signal.SIGKILL)
    else:
        holder.kill()
        holder.wait()
        with open(log, "a") as f:                     # it held the lock until it died
            f.write(json.dumps(["exit", 0, "holder", times["killed"]]) + "\n")
    assert granted.wait(TTL + 5)
    thread.join()
    waited = times["granted"] - times["killed"]
    assert waited <= TTL + 1.0, waited
    lock.release()
    with open(log, "a") as f:
        f.write(json.dumps(["exit", lock.token, "waiter", time.time()]) + "\n")
    holder.wait(30)
    entries = _entries(log)
    enter_holder = next(e for e in entries if e[0] == "enter" and e[2] == "holder")
    exit_holder = next(e for e in entries if e[0] == "exit" and e[2] == "holder")
    enter_waiter = next(e for e in entries if e[0] == "enter" and e[2] == "waiter")
    assert enter_holder[3] < exit_holder[3] <= enter_waiter[3]     # no overlap
    assert enter_waiter[1] > enter_holder[1]                        # tokens only grow
    waiter.close()
    os.unlink(log)


def test_lock_holder_node_killed_next_waiter_on_another_node_gets_it(
        nodes: list[OctopusNode]) -> None:
    _lock_survives("node", nodes)


def test_lock_holder_client_killed_next_waiter_gets_it(nodes: list[OctopusNode]) -> None:
    _lock_survives("client", nodes)


def test_a_dead_nodes_ephemeral_records_go_and_on_del_fires_everywhere(
        nodes: list[OctopusNode]) -> None:
    a = octopus.connect(nodes[0].url)
    a.set("member.a { up: true }", ephemeral=True)
    seen: list[list[octopus.Event]] = [[], []]
    watchers = [octopus.connect(n.url) for n in nodes[1:]]
    for w, box in zip(watchers, seen, strict=True):
        w.sync()
        assert w.exists("member.a")
        w.watch("member.a", box.append, on=Mode.ON_DEL)
    nodes[0].kill(signal.SIGKILL)
    deadline = time.monotonic() + TTL + 5
    while not all(seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(len(box) == 1 and box[0].mode == Mode.ON_DEL for box in seen)
    for w in watchers:
        assert not w.exists("member.a")
        w.close()


def test_a_client_with_several_urls_fails_over_and_keeps_its_session(
        nodes: list[OctopusNode]) -> None:
    client = octopus.connect([n.url for n in nodes])
    first = client.url
    client.set("presence { who: 'me' }", ephemeral=True)
    lock = client.lock("fo")
    assert lock.acquire(timeout=10)
    observer = octopus.connect(nodes[2].url)
    index = [n.url for n in nodes].index(first)
    nodes[index].kill(signal.SIGKILL)
    time.sleep(TTL + 1.0)                     # longer than the lease: resumed, not expired
    assert client.get("presence")["who"] == "me"
    assert client.url != first
    observer.sync()
    assert observer.exists("presence") and observer.exists("fo_0")
    other = observer.lock("fo")
    assert not other.acquire(blocking=False)  # still held by the failed-over client
    lock.release()
    assert other.acquire(timeout=10)
    other.release()
    written = client.set("after { n: 1 }")
    assert client.get("after") == written
    client.close()
    observer.sync()
    assert not observer.exists("presence")     # close() ended the session: records gone
    observer.close()


def test_a_session_that_was_not_resumed_in_time_is_gone(nodes: list[OctopusNode]) -> None:
    client = octopus.connect([nodes[0].url, "tcp://127.0.0.1:9"])   # nothing at port 9
    client.set("lonely { x: 1 }", ephemeral=True)
    nodes[0].kill(signal.SIGKILL)
    deadline = time.monotonic() + TTL + 10
    while not client.closed and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.closed
    try:
        client.get("lonely")
    except octopus.EngineClosed as e:
        assert "no other server" in str(e)
    else:
        raise AssertionError("a closed client answered")
    with octopus.connect(nodes[1].url) as other:
        deadline = time.monotonic() + TTL + 5
        while other.exists("lonely") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not other.exists("lonely")

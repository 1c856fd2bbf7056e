"""Coordination between real processes through a server: a lock whose holder is killed
with SIGKILL, and two processes meeting at a barrier."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import octopus
from octopus.server import connect

from .conftest import ROOT, ServerProcess, python_env

# session_timeout=None: the session ends with the connection (no grace to resume it);
# tests/server/test_sessions.py kills holders of resumable sessions.
HOLDER = """
import sys, time, octopus
client = octopus.connect(sys.argv[1], session_timeout=None)
lock = client.lock("printer")
assert lock.acquire(timeout=30)
print("held", lock.token, flush=True)
time.sleep(120)
"""

RAW_HOLDER = """
import sys, time, octopus
client = octopus.connect(sys.argv[1], session_timeout=None)
me = client.set("rawlock_ { lock: 'r' }", sequential=True, ephemeral=True)
print(me.name, flush=True)
time.sleep(120)
"""

PARTY = """
import sys, time, octopus
client = octopus.connect(sys.argv[1])
with client.barrier("meet", 2):
    print("passed", time.time(), flush=True)
client.close()
"""


def spawn(tmp: Path, name: str, code: str, url: str) -> subprocess.Popen[str]:
    script = tmp / f"{name}.py"
    script.write_text(code)
    return subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE,
                            text=True, env=python_env(), cwd=ROOT)


def test_killed_lock_holder_releases_the_lock(server: ServerProcess, tmp_path: Path) -> None:
    holder = spawn(tmp_path, "holder", HOLDER, server.unix_url)
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline().split()
        assert line[0] == "held"
        with connect(server.tcp_url) as c:
            lock = c.lock("printer")
            assert not lock.acquire(timeout=0.2)           # really held by the other process
            holder.kill()
            killed = time.monotonic()
            assert lock.acquire(timeout=10)
            assert time.monotonic() - killed < 1.0         # within a second of the kill
            assert lock.token > int(line[1])
            lock.release()
    finally:
        holder.kill()
        holder.wait()


def test_killed_holder_with_engine_primitives(server: ServerProcess, tmp_path: Path) -> None:
    """The same with only the store API: a sequential ephemeral record per contender and
    a one-shot ON_DEL trigger on the predecessor."""
    holder = spawn(tmp_path, "rawholder", RAW_HOLDER, server.unix_url)
    try:
        assert holder.stdout is not None
        theirs = holder.stdout.readline().strip()
        with connect(server.unix_url) as c:
            mine = c.set("rawlock_ { lock: 'r' }", sequential=True, ephemeral=True).name
            names = c.get_names("_ { lock: 'r' }")
            assert names == [theirs, mine]
            events: list[octopus.Event] = []
            t = octopus.Trigger(events.append, on=octopus.Mode.ON_DEL, install_if="found")
            assert c.exists(theirs, trigger=t) and t.installed
            holder.kill()
            killed = time.monotonic()
            while not events and time.monotonic() - killed < 10:
                time.sleep(0.005)
            assert time.monotonic() - killed < 1.0
            assert events[0].record.name == theirs
            assert events[0].mode == octopus.Mode.ON_DEL | octopus.Mode.REMOVED
            assert c.get_names("_ { lock: 'r' }") == [mine]
    finally:
        holder.kill()
        holder.wait()


def test_two_processes_meet_at_a_barrier(server: ServerProcess, tmp_path: Path) -> None:
    first = spawn(tmp_path, "party1", PARTY, server.unix_url)
    second = None
    try:
        time.sleep(1.0)
        assert first.poll() is None                       # waiting for its partner
        started = time.time()
        second = spawn(tmp_path, "party2", PARTY, server.unix_url)
        out1, _ = first.communicate(timeout=60)
        out2, _ = second.communicate(timeout=60)
        t1 = float(out1.split()[1])
        t2 = float(out2.split()[1])
        assert t1 >= started and t2 >= started             # nobody passed alone
        with connect(server.unix_url) as c:
            assert c.get_names("r'meet'") == []            # nothing left of the round
    finally:
        for p in (first, second):
            if p is not None:
                p.kill()
                p.wait()

"""Crash loops with real processes and real SIGKILLs (docs/durability.md, Guarantees).

A writer process (tests/durable/crash_writer.py) or a server with several clients runs
sets, compare-and-sets, deletes, sequential sets, batches and ephemeral sets with
fsync="always"; it is killed with SIGKILL at a random moment, restarted, killed again.
After every restart: every acknowledged write is there with its value and revision,
the store equals the model replayed from the acknowledged log (tests/durable/model.py),
no sequential name is handed out twice, the revision only grows, and no ephemeral
record survives. A handful of kills run in ``make test``; 50 and more behind ``slow``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import octopus
from octopus import Record
from octopus.record import natural_sorted

from .model import Writer

WRITER = Path(__file__).with_name("crash_writer.py")
ROOT = Path(__file__).resolve().parents[2]


def _stored(directory: Path) -> tuple[dict[str, Record], int, dict[str, object]]:
    with octopus.Engine(path=directory) as engine:
        # First the index of v as the restart left it (restored from the snapshot and
        # kept by the journal's replay, or built now): it must answer as the records do.
        by_index = engine.get_names("_ { v > 500 }")
        records = {r.name: r for r in engine.get_all("_")}
        assert by_index == natural_sorted([n for n, r in records.items()
                                           if type(r.get("v")) is int and r["v"] > 500])
        return records, engine.revision, engine.stats()


def _read_log(path: Path, offset: int) -> tuple[list[dict[str, object]], int]:
    data = path.read_bytes() if path.exists() else b""
    lines = []
    end = data.rfind(b"\n") + 1        # a line cut by the kill is not a line
    for line in data[offset:end].splitlines():
        lines.append(json.loads(line))
    return lines, end


def crash_loop(tmp_path: Path, kills: int, seed: int, compact_every: int = 0) -> None:
    rng = random.Random(seed)
    directory = tmp_path / "data"
    log = tmp_path / "acks.log"
    model = Writer("")
    offset = 0
    previous_revision = 0
    applied = 0
    for kill in range(kills):
        proc = subprocess.Popen([sys.executable, str(WRITER), str(directory), str(log),
                                 str(seed * 1000 + kill), "--compact-every",
                                 str(compact_every)], cwd=ROOT)
        try:
            # Wait until it is writing, then let it run a random while.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                lines, _ = _read_log(log, offset)
                if any("ready" in line for line in lines):
                    break
                assert proc.poll() is None, f"the writer died with status {proc.returncode}"
                time.sleep(0.02)
            else:
                raise AssertionError("the writer never started")
            time.sleep(rng.uniform(0.05, 0.8))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        lines, offset = _read_log(log, offset)
        # A line cut by the kill must not run into the next writer's first line.
        os.truncate(log, offset)
        for line in lines:
            if "intent" in line:
                model.pending = line["intent"]         # type: ignore[assignment]
            elif "ack" in line:
                model.apply(line["ack"], line["revision"])   # type: ignore[arg-type]
                model.pending = None
                applied += 1
        stored, revision, stats = _stored(directory)
        assert revision >= previous_revision, "the revision went backwards"
        previous_revision = revision
        assert not [n for n in stored if n.startswith("e")], "an ephemeral record survived"
        model.check(stored, revision)
        assert set(stored) == model.expected_names()
        assert stats["persistence_status"] == "ok"
    assert applied > kills, "the writers acknowledged almost nothing"


def test_crash_loop_a_handful_of_kills(tmp_path: Path) -> None:
    crash_loop(tmp_path, kills=5, seed=1)


def test_crash_loop_with_snapshots(tmp_path: Path) -> None:
    # compact() every 40 operations: kills land before, during and after rewrites.
    crash_loop(tmp_path, kills=4, seed=2, compact_every=40)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
def test_crash_loop_fifty_kills(tmp_path: Path, seed: int) -> None:
    crash_loop(tmp_path, kills=50, seed=seed, compact_every=0 if seed % 2 else 25)


# --- a server with several clients -------------------------------------------------------------


def _serve(directory: Path, socket_path: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "octopus", "serve", "--unix",
                             str(socket_path), "--data", str(directory), "--fsync", "always",
                             "--log-level", "warning"], cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if socket_path.exists():
            try:
                with octopus.connect(f"unix://{socket_path}") as c:
                    c.revision  # noqa: B018  (a round trip)
                return proc
            except (OSError, octopus.OctopusError):
                pass
        assert proc.poll() is None, f"the server died with status {proc.returncode}"
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the server never started")


def _client(url: str, prefix: str, writer: Writer, seed: int, stop: threading.Event) -> None:
    """One client's writes on its own names, acknowledged ones applied to its model;
    the last one is left pending when the server dies."""
    rng = random.Random(seed)
    known: dict[str, int] = {}
    try:
        with octopus.connect(url) as c:
            while not stop.is_set():
                name = f"{prefix}k{rng.randrange(6)}"
                v = rng.randrange(1000)
                attrs = {"v": v}
                roll = rng.random()
                if roll < 0.4:
                    op = {"op": "set", "name": name, "attrs": attrs}
                    writer.pending = op
                    r = c.set("%s { v: %d }", name, v)
                    known[name] = v
                    writer.apply(op, r.revision)
                elif roll < 0.6:
                    op = {"op": "cas", "name": name, "attrs": attrs, "ok": True}
                    writer.pending = op
                    try:
                        r = c.set("%s { v: %d, v == %d }", name, v, known.get(name, -1))
                    except octopus.ConditionFailed:
                        writer.apply({**op, "ok": False}, None)
                    else:
                        known[name] = v
                        writer.apply(op, r.revision)
                elif roll < 0.75:
                    op = {"op": "del", "name": name, "ok": True}
                    writer.pending = op
                    try:
                        c.delete(name)
                    except octopus.NotFound:
                        writer.apply({**op, "ok": False}, None)
                    else:
                        known.pop(name, None)
                        writer.apply(op, None)
                elif roll < 0.9:
                    op = {"op": "seq", "base": f"{prefix}s.", "attrs": attrs}
                    writer.pending = op
                    r = c.set("%s { v: %d }", f"{prefix}s.", v, sequential=True)
                    writer.apply({**op, "name": r.name}, r.revision)
                else:
                    op = {"op": "set", "name": name, "attrs": attrs, "eph": True}
                    writer.pending = op
                    r = c.set("%s { v: %d }", name, v, ephemeral=True)
                    known.pop(name, None)
                    writer.apply(op, r.revision)
                writer.pending = None
    except (OSError, octopus.OctopusError):
        return                          # the server was killed: writer.pending is in flight


def server_crash_loop(tmp_path: Path, kills: int, clients: int, seed: int) -> None:
    rng = random.Random(seed)
    directory = tmp_path / "data"
    socket_path = tmp_path / "octopus.sock"
    writers = [Writer(f"c{i}.") for i in range(clients)]
    previous_revision = 0
    for kill in range(kills):
        proc = _serve(directory, socket_path)
        stop = threading.Event()
        threads = [threading.Thread(target=_client, args=(f"unix://{socket_path}", w.prefix, w,
                                                          seed * 100 + kill * 10 + i, stop))
                   for i, w in enumerate(writers)]
        try:
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.2, 1.0))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        stop.set()
        for t in threads:
            t.join(30)
        stored, revision, _ = _stored(directory)
        assert revision >= previous_revision
        previous_revision = revision
        for w in writers:
            mine = {n: r for n, r in stored.items() if n.startswith(w.prefix)}
            w.check(mine, revision)
            assert set(mine) == w.expected_names()


def test_server_crash_loop(tmp_path: Path) -> None:
    server_crash_loop(tmp_path, kills=3, clients=4, seed=5)


@pytest.mark.slow
def test_server_crash_loop_fifty_kills(tmp_path: Path) -> None:
    server_crash_loop(tmp_path, kills=50, clients=6, seed=7)


def test_the_writer_is_really_killed_mid_write(tmp_path: Path) -> None:
    """The kill lands while the writer writes: its log ends with an intent more often
    than not (otherwise the loop above would test only quiet moments)."""
    pending = 0
    for kill in range(3):
        log = tmp_path / f"acks{kill}.log"
        proc = subprocess.Popen([sys.executable, str(WRITER), str(tmp_path / f"d{kill}"),
                                 str(log), str(kill)], cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.exists() and b"ack" in log.read_bytes()):
            time.sleep(0.02)
        time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        last = _read_log(log, 0)[0][-1]
        pending += "intent" in last
        assert proc.returncode == -signal.SIGKILL
    assert pending >= 1

"""Group commit under ``fsync=always``: the writes of many calls (and of a pipeline)
share one fsync, each acknowledged only once an fsync covers it; reads are not held
back by it; a failed fsync fails exactly the writes it covered.

The engine is a real durable one; only its file operations are wrapped
(:mod:`octopus.durable.files`), to hold an fsync until the test lets it go or to make
it fail.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import octopus
from octopus.durable import files
from octopus.server.resp import encode
from octopus.server.runner import EngineRunner
from octopus.server.testing import serve_in_thread


class GatedOps(files.FileOps):
    """The real file operations; ``fdatasync`` waits while the gate is closed, and
    fails with EIO while ``fail`` is set."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()     # an fdatasync is waiting at the gate
        self.fail = False
        self.syncs = 0                       # fdatasyncs of the journal that completed

    def fdatasync(self, fd: int) -> None:
        if not self.gate.is_set():
            self.entered.set()
            assert self.gate.wait(30), "the test never opened the gate"
        if self.fail:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().fdatasync(fd)
        self.syncs += 1


@pytest.fixture
def ops(monkeypatch: pytest.MonkeyPatch) -> GatedOps:
    gated = GatedOps()
    monkeypatch.setattr(files, "ops", gated)
    return gated


@pytest.fixture
def engine(tmp_path: Path, ops: GatedOps) -> Iterator[octopus.Engine]:
    with octopus.Engine(path=tmp_path / "data", fsync="always") as e:
        yield e


def fsyncs(engine: octopus.Engine) -> int:
    n = engine.persistence()["fsyncs"]
    assert isinstance(n, int)
    return n


# --- the runner --------------------------------------------------------------------------


def test_a_write_is_delivered_after_its_fsync_and_a_read_is_not_held_back(
        engine: octopus.Engine, ops: GatedOps) -> None:
    session = engine.session()
    session.set("before { x: 0 }")

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        runner = EngineRunner(loop, 2, durability=engine._core)
        got: list[str] = []
        futures: dict[str, asyncio.Future[None]] = {k: loop.create_future()
                                                    for k in ("a", "read", "b")}

        def on_done(key: str) -> Any:
            def done(result: object, error: BaseException | None) -> None:
                assert error is None, error
                got.append(key)
                futures[key].set_result(None)
            return done

        ops.gate.clear()
        runner.call(lambda _: session.set("a { x: 1 }"), None, on_done("a"))
        await loop.run_in_executor(None, ops.entered.wait, 30)   # a's fsync is held
        runner.call(lambda _: session.get("a"), None, on_done("read"))
        await futures["read"]                  # the read sees a, and is not held back
        runner.call(lambda _: session.set("b { x: 2 }"), None, on_done("b"))
        while engine.revision < 3:             # b is applied (its fsync comes after a's)
            await asyncio.sleep(0.001)
        assert got == ["read"]                 # neither write is acknowledged yet
        ops.gate.set()
        await futures["a"]
        await futures["b"]
        assert runner.commits == 2 and runner.committed_calls == 2
        committer = runner._committer
        runner.shutdown()
        assert committer is not None and not committer.is_alive()
        return got

    assert asyncio.run(main()) == ["read", "a", "b"]
    session.close()


def test_without_durability_there_is_no_committer(engine: octopus.Engine) -> None:
    async def main() -> None:
        runner = EngineRunner(asyncio.get_running_loop(), 1)
        assert runner._committer is None
        runner.shutdown()

    asyncio.run(main())


# --- through the server --------------------------------------------------------------------


def _connect(url: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(url[len("unix://"):])
    return sock


def _read_replies(sock: socket.socket, n: int) -> list[bytes]:
    """``n`` single-line replies (+OK, :int, -ERR, or a short bulk string's 2 lines)."""
    data = b""
    replies: list[bytes] = []
    while len(replies) < n:
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            data += chunk
        line, data = data.split(b"\r\n", 1)
        if line.startswith(b"$") and line != b"$-1":
            size = int(line[1:])
            while len(data) < size + 2:
                data += sock.recv(65536)
            line, data = data[:size], data[size + 2:]
        replies.append(line)
    return replies


def test_a_pipeline_of_writes_shares_one_fsync(engine: octopus.Engine) -> None:
    """Each SET of a pipeline used to wait for its own fsync (200 fsyncs)."""
    with serve_in_thread(engine) as url:
        sock = _connect(url)
        before = fsyncs(engine)
        sock.sendall(b"".join(encode([b"SET", f"p{i} {{ v: {i} }}".encode()])
                              for i in range(200)))
        replies = _read_replies(sock, 200)
        assert all(not r.startswith(b"-") for r in replies), replies[:3]
        assert fsyncs(engine) - before <= 10    # one per batch the reads cut it into
        assert engine.count() == 200
        sock.close()


def test_writers_on_many_connections_share_fsyncs_and_wait_for_them(
        engine: octopus.Engine, ops: GatedOps) -> None:
    writers = 20
    with serve_in_thread(engine) as url:
        socks = [_connect(url) for _ in range(writers + 1)]
        reader = socks.pop()
        for s in socks:                         # each connection's session is open
            # Octopus's conventions: each SET answers its own record (not +OK).
            s.sendall(encode([b"PING"]) + encode([b"CLIENT", b"FORMAT", b"TEXT", b"OCTOPUS"]))
            assert _read_replies(s, 2) == [b"+PONG", b"+OK"]
        replies: list[bytes] = []

        def write(i: int) -> None:
            socks[i].sendall(encode([b"SET", f"w{i} {{ v: {i} }}".encode()]))
            replies.extend(_read_replies(socks[i], 1))

        before = fsyncs(engine)
        revision = engine.revision
        ops.gate.clear()
        threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
        for t in threads:
            t.start()
        assert ops.entered.wait(30)             # the first write's fsync is held
        while engine.revision < revision + writers:     # every write is applied ...
            threading.Event().wait(0.001)
        reader.sendall(encode([b"EXISTS", b"w0"]))
        assert _read_replies(reader, 1) == [b":1"]      # ... visible to a reader ...
        assert replies == []                    # ... and acknowledged to nobody yet
        ops.gate.set()
        for t in threads:
            t.join(30)
        assert sorted(replies) == sorted(f"w{i} {{ v: {i} }}".encode()
                                         for i in range(writers))
        # The held fsync covered the first write(s); one more covers all the others.
        assert fsyncs(engine) - before <= 3
        for s in [*socks, reader]:
            s.close()


def test_a_failed_fsync_fails_the_writes_it_covered_and_nothing_else(
        engine: octopus.Engine, ops: GatedOps) -> None:
    engine.set("there { x: 1 }")
    with serve_in_thread(engine) as url:
        sock = _connect(url)
        ops.fail = True
        sock.sendall(encode([b"SET", b"lost { x: 1 }"]) + encode([b"EXISTS", b"there"])
                     + encode([b"SET", b"lost2 { x: 2 }"]) + encode([b"GET", b"there"]))
        replies = _read_replies(sock, 4)
        assert replies[0].startswith(b"-PersistenceError") and b"applied" in replies[0]
        assert replies[1] == b":1"
        assert replies[2].startswith(b"-PersistenceError")
        assert replies[3] == b"there { x: 1 }"
        # Applied, durability unknown: in memory, and later writes are refused until a
        # snapshot of the memory state is written.
        assert engine.count() == 3
        ops.fail = False
        sock.close()


def test_a_committing_runner_never_shut_down_does_not_hold_up_the_exit(
        tmp_path: Path) -> None:
    """The committer stops with the engine threads at interpreter exit."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys, octopus\n"
        "from octopus.server.runner import EngineRunner\n"
        "engine = octopus.Engine(path=sys.argv[1], fsync='always')\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    runner = EngineRunner(loop, 3, durability=engine._core)\n"
        "    done = loop.create_future()\n"
        "    runner.call(lambda _: engine.set('x { a: 1 }'), None,\n"
        "                lambda r, e: done.set_result(r))\n"
        "    print(await done, runner.commits, flush=True)\n"
        "asyncio.run(main())\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "x { a: 1 } 1" and "invalid pointer" not in r.stderr

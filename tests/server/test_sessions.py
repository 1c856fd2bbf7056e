"""Sessions that outlive a blip (docs/server.md): a real ``octopus serve`` process, blips
made by a TCP proxy that drops or freezes connections, SIGSTOP/SIGCONT of the server,
SIGKILL of a client process; and thread tests of the order of replayed events."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import octopus
from octopus import ConnectionState, Mode
from octopus.errors import EngineClosed, SessionExpired, Unavailable, WaitTimeout
from octopus.server import connect
from octopus.server.config import ServerConfig
from octopus.server.testing import serve_in_thread

from .conftest import ROOT, ServerProcess, python_env
from .proxy import Proxy


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[Proxy]:
    with Proxy(("127.0.0.1", server.port)) as p:
        yield p


def _until(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class States:
    def __init__(self, client: octopus.Client) -> None:
        self.seen: list[ConnectionState] = []
        self.threads: set[str] = set()
        client.add_listener(self)

    def __call__(self, state: ConnectionState) -> None:
        self.seen.append(state)
        self.threads.add(threading.current_thread().name)


def test_a_blip_keeps_the_session(server: ServerProcess, proxy: Proxy) -> None:
    """Through a dropped connection: the ephemeral record, the lock and the trigger
    stay; the events set meanwhile arrive once each, in revision order."""
    with connect(proxy.url, session_timeout=10) as c, connect(server.unix_url) as other:
        states = States(c)
        deleted: list[octopus.Event] = []
        other.watch("blip.eph", deleted.append, on=Mode.ON_DEL)
        c.set("blip.eph { v: 1 }", ephemeral=True)
        lock = c.lock("blip.lock")
        assert lock.acquire(timeout=5)
        token = lock.token
        seen: list[octopus.Event] = []
        c.watch("blip.n", seen.append, on=Mode.ON_SET)
        other.set("blip.n { k: 0 }")
        _until(lambda: len(seen) == 1)

        assert proxy.drop() == 1
        revisions = [other.set("blip.n { k: %d }", k).revision for k in range(1, 6)]
        # the client reconnects by itself, resumes, and the missed events follow
        _until(lambda: len(seen) == 6)
        assert [e.revision for e in seen[1:]] == revisions
        assert [e.record["k"] for e in seen] == list(range(6))
        assert c.get("blip.eph")["v"] == 1
        assert other.exists("blip.eph")
        assert lock.held and lock.token == token
        assert other.get_names("_ { lock: 'blip.lock' }") == [f"blip.lock_{token}"]
        c.flush()
        assert states.seen == [ConnectionState.SUSPENDED, ConnectionState.CONNECTED]
        assert states.threads == {"octopus-client-events"}    # the handlers' thread
        lock.release()
        other.flush()
        assert deleted == []                   # the ephemeral record never went
        assert proxy.accepted == 2
    info = other_info(server)
    assert "sessions_resumed:" in info and "sessions_resumed:0" not in info


def other_info(server: ServerProcess) -> str:
    with connect(server.unix_url) as c:
        return c.info()


def test_a_half_open_connection_is_taken_over(server: ServerProcess, proxy: Proxy) -> None:
    """Nothing passes and nobody is told (the server still sees the old connection):
    the client's health check notices, it reconnects, and its resume takes the session
    over from the old connection."""
    with connect(proxy.url, session_timeout=10, socket_timeout=0.5,
                 health_check_interval=0.2) as c, connect(server.unix_url) as other:
        states = States(c)
        c.set("half.eph { v: 1 }", ephemeral=True)
        seen: list[octopus.Event] = []
        c.watch("half.n", seen.append, on=Mode.ON_SET)
        proxy.freeze()
        other.set("half.n { k: 1 }")
        _until(lambda: len(seen) == 1)
        assert c.get("half.eph")["v"] == 1
        assert states.seen[:2] == [ConnectionState.SUSPENDED, ConnectionState.CONNECTED]
        assert other.exists("half.eph")


def test_reads_in_flight_are_redone_and_writes_report_an_unknown_outcome(
        tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)
    try:
        with Proxy(("127.0.0.1", srv.port)) as proxy, \
                connect(proxy.url, session_timeout=30, socket_timeout=60) as c:
            c.set("inflight { v: 1 }")
            srv.proc.send_signal(signal.SIGSTOP)
            results: dict[str, object] = {}

            def call(what: str, fn: object) -> None:
                try:
                    results[what] = fn()  # type: ignore[operator]
                except Exception as e:
                    results[what] = e

            threads = [threading.Thread(target=call, args=("get", lambda: c.get("inflight"))),
                       threading.Thread(target=call,
                                        args=("set", lambda: c.set("inflight2 { v: 2 }")))]
            for t in threads:
                t.start()
                time.sleep(0.2)
            proxy.drop()
            time.sleep(0.3)
            srv.proc.send_signal(signal.SIGCONT)
            for t in threads:
                t.join(30)
            assert isinstance(results["get"], octopus.Record)
            assert results["get"]["v"] == 1                      # redone after the resume
            assert isinstance(results["set"], Unavailable)        # sent once, outcome unknown
            assert "outcome is unknown" in str(results["set"])
            assert c.get("inflight2")["v"] == 2                   # (here it was applied)
    finally:
        with contextlib.suppress(ProcessLookupError):
            srv.proc.send_signal(signal.SIGCONT)
        srv.stop()


CLIENT = """
import sys, time, octopus
client = octopus.connect(sys.argv[1], session_timeout=float(sys.argv[2]))
client.set("expiry.eph { v: 1 }", ephemeral=True)
lock = client.lock("expiry.lock")
assert lock.acquire(timeout=10)
print("ready", flush=True)
time.sleep(120)
"""


def test_a_killed_client_s_session_expires_after_its_timeout(
        server: ServerProcess, tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    proc = subprocess.Popen([sys.executable, str(script), server.unix_url, "1.5"],
                            stdout=subprocess.PIPE, text=True, env=python_env(), cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with connect(server.unix_url) as c:
            gone: list[octopus.Event] = []
            c.watch("expiry.eph", gone.append, on=Mode.ON_DEL)
            proc.kill()
            killed = time.monotonic()
            proc.wait()
            time.sleep(0.5)
            assert c.exists("expiry.eph")                    # detached, not closed
            assert gone == []
            lock = c.lock("expiry.lock")
            assert lock.acquire(timeout=20)                 # once the session expired
            waited = time.monotonic() - killed
            _until(lambda: len(gone) == 1)
            assert gone[0].mode & Mode.ON_DEL and gone[0].record.name == "expiry.eph"
            assert not c.exists("expiry.eph")
            assert waited >= 1.4                             # not before its timeout
            lock.release()
    finally:
        proc.kill()
        proc.wait()


def test_a_stopped_server_cannot_hold_calls_past_their_timeout(tmp_path: Path) -> None:
    """SIGSTOP: wait_for, lock.acquire and connect return within about their timeout;
    after SIGCONT the client goes on, and what the abandoned calls left is undone."""
    srv = ServerProcess(tmp_path)
    try:
        with connect(srv.tcp_url) as c:
            c.set("stopped.x { v: 1 }")
            srv.proc.send_signal(signal.SIGSTOP)
            t = time.monotonic()
            with pytest.raises(WaitTimeout):
                c.wait_for("stopped.nothing", timeout=1)
            assert time.monotonic() - t < 2.5
            lock = c.lock("stopped.lock")
            t = time.monotonic()
            assert not lock.acquire(timeout=1)
            assert time.monotonic() - t < 2.5
            t = time.monotonic()
            with pytest.raises(EngineClosed, match="cannot connect"):
                connect(srv.tcp_url, timeout=1)
            assert time.monotonic() - t < 2.5
            srv.proc.send_signal(signal.SIGCONT)
            assert c.get("stopped.x")["v"] == 1
            # the lock's entry, created late, was deleted: nobody is left in its queue
            _until(lambda: c.get_names("_ { lock: 'stopped.lock' }") == [])
            assert lock.acquire(timeout=5)
            lock.release()
    finally:
        with contextlib.suppress(ProcessLookupError):
            srv.proc.send_signal(signal.SIGCONT)
        srv.stop()


def test_past_the_replay_bound_the_session_expires() -> None:
    """More events than the replay buffer holds arrive while the client is away: the
    session expires (records deleted) and the client is told LOST, never a silent gap."""
    config = ServerConfig(session_replay_bytes=4096)
    with serve_in_thread(config=config) as url, \
            Proxy(url[len("unix://"):]) as proxy, \
            connect(proxy.url, session_timeout=30) as c, connect(url) as other:
        states = States(c)
        c.set("bound.eph { v: 1 }", ephemeral=True)
        c.watch("bound.n", lambda e: None, on=Mode.ON_SET)
        proxy.refusing = True
        proxy.drop()
        for k in range(200):                                # ~ 40 bytes per event
            other.set("bound.n { k: %d }", k)
        _until(lambda: not other.exists("bound.eph"))     # expired at once, not in 30 s
        proxy.refusing = False
        _until(lambda: c.closed)
        assert states.seen == [ConnectionState.SUSPENDED, ConnectionState.LOST]
        with pytest.raises(SessionExpired):
            c.get("bound.eph")


def test_a_session_not_resumed_in_time_is_lost() -> None:
    with serve_in_thread() as url, Proxy(url[len("unix://"):]) as proxy, \
            connect(proxy.url, session_timeout=0.5) as c, connect(url) as other:
        states = States(c)
        c.set("late.eph { v: 1 }", ephemeral=True)
        proxy.refusing = True
        proxy.drop()
        _until(lambda: c.closed)
        assert not other.exists("late.eph")
        assert states.seen == [ConnectionState.SUSPENDED, ConnectionState.LOST]
        with pytest.raises(SessionExpired, match="lost"):
            c.set("late.x { v: 1 }")


def test_a_session_without_timeout_ends_with_its_connection() -> None:
    with serve_in_thread() as url, Proxy(url[len("unix://"):]) as proxy, \
            connect(proxy.url, session_timeout=None) as c, connect(url) as other:
        states = States(c)
        c.set("plain.eph { v: 1 }", ephemeral=True)
        proxy.drop()
        _until(lambda: c.closed and not other.exists("plain.eph"))
        assert states.seen == [ConnectionState.LOST]
        with pytest.raises(EngineClosed):
            c.get("plain.eph")


@pytest.mark.parametrize("seed", range(3))
def test_replayed_events_arrive_once_in_revision_order(seed: int) -> None:
    """A writer thread sets records while the proxy drops the client's connection at
    random moments: every change arrives exactly once, in revision order."""
    rng = random.Random(seed)
    with serve_in_thread() as url, Proxy(url[len("unix://"):]) as proxy, \
            connect(proxy.url, session_timeout=30) as c, connect(url) as writer:
        seen: list[int] = []
        c.watch("order.n", lambda e: seen.append(e.revision), on=Mode.ON_SET)
        msgs: list[int] = []
        c.subscribe("order.m", lambda e: msgs.append(e.record["k"]))
        written: list[int] = []
        published: list[int] = []

        def write() -> None:
            for k in range(300):
                written.append(writer.set("order.n { k: %d }", k).revision)
                if k % 3 == 0 and writer.publish("order.m { k: %d }", k):
                    published.append(k)

        thread = threading.Thread(target=write)
        thread.start()
        drops = 0
        while thread.is_alive():
            time.sleep(rng.uniform(0.005, 0.08))
            drops += proxy.drop()
        thread.join()
        _until(lambda: len(seen) >= len(written) and c.state is ConnectionState.CONNECTED)
        c.flush()
        assert seen == written                 # each once, in revision order
        assert msgs == [k for k in range(0, 300, 3)]
        assert drops >= 1


# --- the asyncio client -------------------------------------------------------------------


def test_async_client_resumes_after_a_blip(server: ServerProcess, proxy: Proxy) -> None:
    async def main() -> None:
        c = await octopus.connect_async(proxy.url, session_timeout=10)
        other = await octopus.connect_async(server.unix_url)
        try:
            states: list[ConnectionState] = []
            c.add_listener(states.append)
            await c.set("ablip.eph { v: 1 }", ephemeral=True)
            seen: list[octopus.Event] = []
            await c.watch("ablip.n", seen.append, on=Mode.ON_SET)
            proxy.drop()
            revisions = [(await other.set("ablip.n { k: %d }", k)).revision for k in range(5)]
            deadline = time.monotonic() + 20
            while len(seen) < 5:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert [e.revision for e in seen] == revisions
            assert (await c.get("ablip.eph"))["v"] == 1
            assert states == [ConnectionState.SUSPENDED, ConnectionState.CONNECTED]
            assert c.state is ConnectionState.CONNECTED
        finally:
            await c.close()
            await other.close()
        assert states[-1] is ConnectionState.LOST

    asyncio.run(main())


def test_async_client_timeouts_against_a_stopped_server(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)

    async def main() -> None:
        c = await octopus.connect_async(srv.tcp_url)
        try:
            await c.set("astop.x { v: 1 }")
            srv.proc.send_signal(signal.SIGSTOP)
            t = time.monotonic()
            with pytest.raises(WaitTimeout):
                await c.wait_for("astop.nothing", timeout=1)
            assert time.monotonic() - t < 2.5
            t = time.monotonic()
            with pytest.raises(EngineClosed, match="cannot connect"):
                await octopus.connect_async(srv.tcp_url, timeout=1)
            assert time.monotonic() - t < 2.5
            srv.proc.send_signal(signal.SIGCONT)
            assert (await c.get("astop.x"))["v"] == 1
        finally:
            await c.close()

    try:
        asyncio.run(main())
    finally:
        with contextlib.suppress(ProcessLookupError):
            srv.proc.send_signal(signal.SIGCONT)
        srv.stop()


def test_async_client_session_lost() -> None:
    async def main(url: str, proxy: Proxy) -> None:
        c = await octopus.connect_async(proxy.url, session_timeout=0.5)
        states: list[ConnectionState] = []
        c.add_listener(states.append)
        await c.set("alost.eph { v: 1 }", ephemeral=True)
        proxy.refusing = True
        proxy.drop()
        deadline = time.monotonic() + 20
        while not c.closed:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert states == [ConnectionState.SUSPENDED, ConnectionState.LOST]
        with pytest.raises(SessionExpired):
            await c.get("alost.eph")
        await c.close()

    with serve_in_thread() as url, Proxy(url[len("unix://"):]) as proxy:
        asyncio.run(main(url, proxy))
        with connect(url) as other:
            assert not other.exists("alost.eph")


def test_closed_sessions_are_forgotten_and_cannot_be_resumed() -> None:
    """QUIT ends a resumable session for good: the server forgets it (nothing kept), and
    its id and secret resume nothing."""
    with serve_in_thread() as url, connect(url, session_timeout=None) as watcher:
        c = connect(url, session_timeout=30)
        assert c._session is not None
        sid, secret, timeout = c._session
        assert timeout == 30
        c.set("quit.eph { v: 1 }", ephemeral=True)
        c.close()
        assert not watcher.exists("quit.eph")
        _until(lambda: "resumable_sessions:0" in watcher.info())
        assert "detached_sessions:0" in watcher.info()
        from octopus.server.client_base import _check, _Request
        probe = connect(url, session_timeout=None)
        with pytest.raises(SessionExpired):
            probe._call(_Request(["SESSION", "RESUME", str(sid), secret, "0"], _check))
        with pytest.raises(SessionExpired):
            probe._call(_Request(["SESSION", "RESUME", str(sid + 1000), "x" * 32, "0"], _check))
        probe.close()


def test_session_timeouts_are_capped_by_the_server() -> None:
    config = ServerConfig(max_session_timeout=2.0)
    with serve_in_thread(config=config) as url:
        with connect(url, session_timeout=3600) as c:
            assert c._session is not None and c._session[2] == 2.0
        with connect(url, session_timeout=0.001) as c:
            assert c._session is not None and c._session[2] == config.min_session_timeout

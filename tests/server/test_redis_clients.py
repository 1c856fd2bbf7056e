"""Tools that speak Redis work as clients: redis-cli, redis-benchmark and the ``redis``
Python package. redis-cli comes from Debian's ``redis-tools`` (scripts/setup.sh installs
it where it can); without it those tests skip."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

import octopus
from octopus.server import connect

from .conftest import ServerProcess

redis_cli = shutil.which("redis-cli")
needs_cli = pytest.mark.skipif(redis_cli is None, reason="redis-cli is not installed")


def cli(server: ServerProcess, *args: str, resp3: bool = False) -> str:
    cmd = [redis_cli or "redis-cli", "-s", server.socket, *(["-3"] if resp3 else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()


@needs_cli
def test_redis_cli(server: ServerProcess) -> None:
    assert cli(server, "PING") == "PONG"
    assert cli(server, "SET", "hw.pci.device.0 { vendor: 0x8086, class: 'C' }") == "OK"
    assert cli(server, "GET", "hw.pci.device.0") == "hw.pci.device.0 { class: 'C', vendor: 32902 }"
    assert cli(server, "GET", "_ { vendor: %d }", "32902").startswith("hw.pci.device.0")
    assert cli(server, "NAMES", "r'^hw'") == "hw.pci.device.0"
    assert cli(server, "EXISTS", "hw.pci.device.0") == "1"
    assert cli(server, "GET", "nothing") == ""                 # nil
    assert cli(server, "GET", "x {") == ('ParseError unexpected end of input at line 1, '
                                         'column 4 ~{"reason":"unexpected end of input",'
                                         '"line":1,"column":4,"text":""}')
    assert cli(server, "PUBLISH", "msg { a: 1 }") == "0"
    assert "connected_clients" in cli(server, "INFO")
    assert cli(server, "DEL", "hw.pci.device.0") == "1"
    assert cli(server, "DEL", "hw.pci.device.0") == "0"
    assert cli(server, "EXISTS", "hw.pci.device.0") == "0"
    assert cli(server, "CLIENT", "FORMAT", "TEXT", "OCTOPUS") == "OK"
    assert int(cli(server, "COMMAND", "COUNT")) >= 29
    docs = cli(server, "COMMAND", "DOCS", "get").splitlines()
    assert docs[:3] == ["get", "summary", "The first record matching a query (nil if none)"]


@needs_cli
def test_redis_cli_resp3_sees_pushed_events(server: ServerProcess) -> None:
    proc = subprocess.Popen([redis_cli or "redis-cli", "-s", server.socket, "-3",
                             "--show-pushes", "y"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with connect(server.unix_url) as c:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("WATCH \"r'^cli'\"\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip().isdigit()
        c.set("cli.thing { n: 1 }")
        c.flush()                   # the server has queued the push: it precedes PONG
        proc.stdin.write("PING\n")
        proc.stdin.close()
        out = proc.stdout.read()
    proc.wait(10)
    assert "trigger" in out and "ON_SET" in out and "cli.thing { n: 1 }" in out


@pytest.mark.skipif(shutil.which("redis-benchmark") is None,
                    reason="redis-benchmark is not installed")
def test_redis_benchmark_runs_against_the_server(server: ServerProcess) -> None:
    with connect(server.unix_url) as c:
        c.set("bench.rec { payload: %s }", "x" * 256)
    r = subprocess.run(["redis-benchmark", "-s", server.socket, "-n", "2000", "-c", "4", "-P", "4",
                        "-q", "GET", "bench.rec"], capture_output=True, text=True, timeout=120)
    assert "requests per second" in r.stdout


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def r(request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[Any]:
    """redis-py as a Redis user would make it (its default protocol is RESP3)."""
    redis = pytest.importorskip("redis")
    client = redis.Redis(unix_socket_path=server.socket, protocol=request.param,
                         decode_responses=True)
    yield client
    client.close()


def test_redis_py(r: Any) -> None:
    import redis

    ns = f"py{r.get_connection_kwargs()['protocol']}"
    assert r.ping() is True
    # redis-py's set(name, value): a record with one placeholder and its parameter.
    assert r.set(f"{ns}.rec {{ n: %d }}", 7) is True
    assert r.get(f"{ns}.rec") == f"{ns}.rec {{ n: 7 }}"
    assert r.get(f"{ns}.none") is None                        # nil, not an error
    assert r.execute_command("NAMES", f"r'^{ns}'") == [f"{ns}.rec"]
    assert r.exists(f"{ns}.rec") == 1
    assert r.execute_command("EXISTS", f"{ns}.rec {{ n > %d }}", "5") == 1
    pipe = r.pipeline(transaction=False)
    for i in range(10):
        pipe.execute_command("SET", f"{ns}.p{i} {{ i: {i} }}")
    pipe.execute_command("GETALL", f"r'^{ns}\\.p'")
    results = pipe.execute()
    assert results[:10] == [True] * 10
    assert len(results[-1]) == 10 and results[-1][2] == f"{ns}.p2 {{ i: 2 }}"
    assert r.delete(f"{ns}.rec") == 1
    assert r.delete(f"{ns}.rec") == 0
    with pytest.raises(redis.ResponseError, match=r"^ParseError .* line 1, column 4"):
        r.get("x {")
    assert r.publish(f"{ns}.m {{ n: %d }}", 1) == 0           # publish(channel, message)
    info = r.command()
    assert info["get"]["arity"] == -2 and r.command_count() == len(info)


def test_redis_py_transactions_are_atomic(r: Any, server: ServerProcess) -> None:
    import redis

    ns = f"tx{r.get_connection_kwargs()['protocol']}"
    events: list[octopus.Event] = []
    with connect(server.unix_url) as c:
        c.watch(f"r'^{ns}\\.'", events.append)
        before = c.revision
        with r.pipeline() as pipe:                  # transactional: MULTI ... EXEC
            for i in range(5):
                pipe.set(f"{ns}.k{i} {{ i: %d }}", i)
            assert pipe.execute() == [True] * 5
        c.flush()
        assert [(e.record.name, e.revision) for e in events if e.record] == \
            [(f"{ns}.k{i}", before + 1 + i) for i in range(5)]   # one batch, in order
        with r.pipeline() as pipe:                  # a bad record: nothing is stored
            pipe.set(f"{ns}.a {{ i: %d }}", 1)
            pipe.set(f"{ns}.b {{ i: %d", 2)
            with pytest.raises(redis.ResponseError, match=r"^ParseError command 2 of the"):
                pipe.execute()
        assert not c.exists(f"{ns}.a")
        with r.pipeline() as pipe:                  # reads, all at one revision
            pipe.get(f"{ns}.k1").exists(f"{ns}.k9").execute_command("REVISION")
            pipe.execute_command("NAMES", f"r'^{ns}\\.k[0-3]'")
            assert pipe.execute() == [f"{ns}.k1 {{ i: 1 }}", 0, c.revision,
                                      [f"{ns}.k{i}" for i in range(4)]]
        with r.pipeline() as pipe:                  # reads and writes do not mix
            pipe.set(f"{ns}.c {{ i: %d }}", 1).get(f"{ns}.c")
            with pytest.raises(redis.ResponseError):
                pipe.execute()
        assert not c.exists(f"{ns}.c")
        assert r.ping() is True                     # the connection is usable after


def test_redis_py_pubsub(r: Any, server: ServerProcess) -> None:
    ns = f"ps{r.get_connection_kwargs()['protocol']}"
    channel = f"_ {{ topic: '{ns}' }}"
    handled: list[dict[str, Any]] = []
    p = r.pubsub()
    try:
        p.subscribe(channel)
        p.psubscribe(f"r'^{ns}'")
        p.subscribe(**{f"_ {{ topic: '{ns}', n: 2 }}": handled.append})
        assert [p.get_message(timeout=5) for _ in range(3)] == [
            {"type": "subscribe", "pattern": None, "channel": channel, "data": 1},
            {"type": "psubscribe", "pattern": None, "channel": f"r'^{ns}'", "data": 2},
            {"type": "subscribe", "pattern": None,
             "channel": f"_ {{ topic: '{ns}', n: 2 }}", "data": 3}]
        with connect(server.unix_url) as c:
            assert c.publish(f"{ns}.m {{ topic: %s, n: %d }}", ns, 1) == 2
            # redis-py's publish(channel, message): a message with a placeholder.
            assert r.publish(f"{ns}.m {{ topic: '{ns}', n: %d }}", 2) == 3
        text = f"{ns}.m {{ n: %d, topic: '{ns}' }}"
        got = []
        for message in p.listen():
            if message is not None and message["type"] in ("message", "pmessage"):
                got.append(message)
            if len(got) == 4:
                break
        assert sorted(got, key=lambda m: (m["data"], m["type"])) == [
            {"type": "message", "pattern": None, "channel": channel, "data": text % 1},
            {"type": "pmessage", "pattern": f"r'^{ns}'", "channel": f"{ns}.m",
             "data": text % 1},
            {"type": "message", "pattern": None, "channel": channel, "data": text % 2},
            {"type": "pmessage", "pattern": f"r'^{ns}'", "channel": f"{ns}.m",
             "data": text % 2}]
        assert p.get_message(timeout=5) is None and [m["data"] for m in handled] == [text % 2]
        p.unsubscribe(channel)
        assert p.get_message(timeout=5) == {"type": "unsubscribe", "pattern": None,
                                            "channel": channel, "data": 2}
        p.punsubscribe()
        assert p.get_message(timeout=5)["data"] == 1
        with connect(server.unix_url) as c:
            assert c.publish(f"{ns}.m {{ topic: %s, n: %d }}", ns, 3) == 0
    finally:
        p.close()


def test_redis_py_pubsub_health_checks(r: Any, server: ServerProcess) -> None:
    import redis

    protocol = r.get_connection_kwargs()["protocol"]
    checked = redis.Redis(unix_socket_path=server.socket, protocol=protocol,
                          decode_responses=True, health_check_interval=1)
    p = checked.pubsub(ignore_subscribe_messages=True)
    try:
        p.subscribe("_ { topic: 'health' }")
        assert p.get_message(timeout=1) is None
        p.ping("hello")
        # What Redis 7 answers: a pong frame in RESP2, a plain reply redis-py skips in RESP3.
        assert p.get_message(timeout=5) == ({"type": "pong", "pattern": None,
                                             "channel": None, "data": "hello"}
                                            if protocol == 2 else None)
        time.sleep(1.1)
        p.check_health()                        # its own PING: answered, then skipped
        assert p.get_message(timeout=1) is None
        assert checked.publish("m { topic: %s }", "health") == 1
        deadline = time.monotonic() + 10
        message = None
        while message is None and time.monotonic() < deadline:
            message = p.get_message(timeout=1)     # None also for a skipped health pong
        assert message is not None and message["data"] == "m { topic: 'health' }"
    finally:
        p.close()
        checked.close()

"""Tools that speak Redis work as clients: redis-cli, redis-benchmark and the ``redis``
Python package. redis-cli comes from Debian's ``redis-tools`` (scripts/setup.sh installs
it where it can); without it those tests skip."""

from __future__ import annotations

import shutil
import subprocess

import pytest

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
    assert cli(server, "SET", "hw.pci.device.0 { vendor: 0x8086, class: 'C' }") == \
        "hw.pci.device.0 { class: 'C', vendor: 32902 }"
    assert cli(server, "GET", "hw.pci.device.0") == "hw.pci.device.0 { class: 'C', vendor: 32902 }"
    assert cli(server, "GET", "_ { vendor: %d }", "32902").startswith("hw.pci.device.0")
    assert cli(server, "NAMES", "r'^hw'") == "hw.pci.device.0"
    assert cli(server, "EXISTS", "hw.pci.device.0") == "1"
    assert cli(server, "GET", "nothing").startswith("NotFound")
    assert cli(server, "GET", "x {").startswith("ParseError")
    assert cli(server, "PUBLISH", "msg { a: 1 }") == "0"
    assert "connected_clients" in cli(server, "INFO")
    assert cli(server, "DEL", "hw.pci.device.0").startswith("hw.pci.device.0")
    assert cli(server, "EXISTS", "hw.pci.device.0") == "0"


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


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py(server: ServerProcess, protocol: int) -> None:
    redis = pytest.importorskip("redis")
    r = redis.Redis(unix_socket_path=server.socket, protocol=protocol, decode_responses=True)
    for command in ("SET", "DEL", "EXISTS"):   # redis-py turns Redis's replies into bools
        r.set_response_callback(command, lambda reply, **options: reply)
    try:
        assert r.ping() is True
        ns = f"py{protocol}"
        assert r.execute_command("SET", f"{ns}.rec {{ n: %d }}", "7") == f"{ns}.rec {{ n: 7 }}"
        assert r.get(f"{ns}.rec") == f"{ns}.rec {{ n: 7 }}"
        assert r.execute_command("NAMES", f"r'^{ns}'") == [f"{ns}.rec"]
        assert r.execute_command("EXISTS", f"{ns}.rec {{ n > %d }}", "5") == 1
        pipe = r.pipeline(transaction=False)
        for i in range(10):
            pipe.execute_command("SET", f"{ns}.p{i} {{ i: {i} }}")
        pipe.execute_command("GETALL", f"r'^{ns}\\.p'")
        results = pipe.execute()
        assert len(results[-1]) == 10 and results[-1][2] == f"{ns}.p2 {{ i: 2 }}"
        with pytest.raises(redis.ResponseError, match="NotFound"):
            r.get(f"{ns}.none")
        assert r.execute_command("DEL", f"{ns}.rec") == f"{ns}.rec {{ n: 7 }}"
    finally:
        r.close()

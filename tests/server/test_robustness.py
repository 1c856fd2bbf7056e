"""Bad clients do not stop the server: garbage, absurd lengths, floods, slow readers,
many connections, clients killed mid-command. Each test ends by checking that a
well-behaved client is still served and that nothing was lost."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import octopus
from octopus.server import connect
from octopus.server.resp import ReplyParser, encode_command

from .conftest import ServerProcess, python_env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("robust"), "--output-limit", "1000000")
    yield srv
    assert srv.alive, "the server died"
    srv.stop()


def raw(server: ServerProcess) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(server.socket)
    s.settimeout(10)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while True:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def still_serving(server: ServerProcess) -> None:
    assert server.alive
    with connect(server.unix_url) as c:
        c.set("canary { n: 1 }")
        assert c.get("canary")["n"] == 1


@pytest.mark.parametrize("garbage", [
    b"\x00\x01\x02\xff" * 1000,
    b"*1\r\n$-5\r\n",
    b"*3\r\n$3\r\nGET\r\n:12\r\n",
    b"*99999999999999999999\r\n",
    b"*1\r\n$999999999999\r\n",
    b"*2\r\n$3\r\nGET\r\n$3\r\nabcde\r\n",
    b"*1\r\n$4\r\nPING",                          # then the client goes away
    b"$5\r\nhello\r\n",
    b"GET \"unterminated\r\n",
    os.urandom(4096),
])
def test_garbage_gets_an_error_and_a_close(server: ServerProcess, garbage: bytes) -> None:
    s = raw(server)
    s.sendall(garbage)
    if garbage.endswith(b"PING"):
        s.close()
    else:
        s.shutdown(socket.SHUT_WR)
        reply = read_all(s)
        s.close()
        assert reply == b"" or b"-ERR" in reply or reply.startswith(b"-")
    still_serving(server)


def test_absurd_bulk_length_is_refused_at_once(server: ServerProcess) -> None:
    s = raw(server)
    s.sendall(b"*2\r\n$3\r\nGET\r\n$2147483647\r\n")      # then nothing: no waiting for 2 GB
    reply = read_all(s)
    assert reply.startswith(b"-ERR Protocol error") and b"bulk length" in reply
    still_serving(server)


def test_oversized_query_is_an_error_reply_and_the_connection_lives(
        server: ServerProcess) -> None:
    s = raw(server)
    s.sendall(encode_command(["GET", "x" * 100_000]) + encode_command(["PING"]))
    p = ReplyParser()
    replies: list[object] = []
    while len(replies) < 2:
        p.feed(s.recv(65536))
        while (r := p.gets()) is not False:
            replies.append(r)
    assert str(replies[0]).startswith("QueryError") and "limit" in str(replies[0])
    assert replies[1] == "PONG"
    s.close()


def test_pipeline_of_many_commands(server: ServerProcess) -> None:
    s = raw(server)
    n = 5000
    s.sendall(encode_command(["SET", "pipe { n: 1 }"]) + encode_command(["GET", "pipe"]) * n)
    p = ReplyParser()
    got = 0
    while got < n + 1:
        p.feed(s.recv(1 << 16))
        while p.gets() is not False:
            got += 1
    s.close()
    still_serving(server)


def test_unknown_commands_and_wrong_arguments(server: ServerProcess) -> None:
    s = raw(server)
    cmds = [["NOSUCH"], ["GET"], ["WATCH", "x", "SIDEWAYS"], ["UNWATCH", "abc"],
            ["UNWATCH", "1"], ["GET", "x", "TRIGGER", "SET"], ["WAIT", "x", "-1"],
            ["CLIENT", "FORMAT", "XML"], ["HELLO", "4"], ["AUTH", "pw"], ["PING"]]
    s.sendall(b"".join(encode_command(c) for c in cmds))
    p = ReplyParser()
    replies: list[object] = []
    while len(replies) < len(cmds):
        p.feed(s.recv(65536))
        while (r := p.gets()) is not False:
            replies.append(r)
    codes = [str(r).split(" ")[0] for r in replies[:-1]]
    assert codes == ["ERR", "ERR", "ERR", "ERR", "TriggerNotFound", "ERR", "ERR", "ERR",
                     "NOPROTO", "ERR"]
    assert replies[-1] == "PONG"
    s.close()


def test_slow_subscriber_is_dropped_and_others_keep_their_messages(
        server: ServerProcess) -> None:
    slow = raw(server)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(encode_command(["SUBSCRIBE", "_ { topic: 'flood' }"]))
    assert slow.recv(100).startswith(b"*3\r\n$9\r\nsubscribe\r\n")
    received: list[octopus.Event] = []
    with connect(server.unix_url) as fast, connect(server.unix_url) as publisher:
        fast.subscribe("_ { topic: 'flood' }", received.append)
        payload = "p" * 10_000
        deadline = time.monotonic() + 60
        delivered = 2
        sent = 0
        while delivered == 2 and time.monotonic() < deadline:
            delivered = publisher.publish("m { topic: 'flood', n: %d, p: %s }", sent, payload)
            sent += 1
        assert delivered == 1, "the slow subscriber was never dropped"
        fast.flush()
        assert [e.record["n"] for e in received] == list(range(sent))   # nothing lost
        info = publisher.info()
    assert re.search(r"output_limit_disconnections:[1-9]", info)
    slow.close()
    still_serving(server)


def test_a_thousand_connections(server: ServerProcess) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    socks = []
    try:
        for _ in range(1000):
            socks.append(raw(server))
        for i, s in enumerate(socks):
            s.sendall(encode_command(["SET", f"conn{i} {{ i: {i} }}", "EPHEMERAL"]))
        for s in socks:
            assert s.recv(100) == b"+OK\r\n"
        with connect(server.unix_url) as c:
            assert len(c.get_names("r'^conn[0-9]+$'")) == 1000
            assert "connected_clients:1001" in c.info()
    finally:
        for s in socks:
            s.close()
    with connect(server.unix_url) as c:
        deadline = time.monotonic() + 30
        while c.get_names("r'^conn[0-9]+$'") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get_names("r'^conn[0-9]+$'") == []      # each session ended with its socket


def test_client_killed_mid_command(server: ServerProcess, tmp_path: Path) -> None:
    """A process sends half a command and dies (SIGKILL): its session ends, the server
    goes on, and the half command never happens."""
    script = tmp_path / "half.py"
    script.write_text(
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "s.sendall(b'*2\\r\\n$3\\r\\nSET\\r\\n$15\\r\\nkilled { a: 1 }\\r\\n"
        "*3\\r\\n$3\\r\\nSET\\r\\n$13\\r\\nhalf { a: ')\n"
        "print('sent', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script), server.socket],
                            stdout=subprocess.PIPE, env=python_env())
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"sent"
    with connect(server.unix_url) as c:
        deadline = time.monotonic() + 10
        while not c.exists("killed") and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        assert c.exists("killed")           # a complete command is kept (not ephemeral)
        assert not c.exists("half")
    still_serving(server)


def test_unix_socket_is_private(server: ServerProcess) -> None:
    mode = os.stat(server.socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_non_loopback_needs_a_flag_and_a_password(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "octopus", "serve", "--host", "0.0.0.0", "--port", "0"]
    r = subprocess.run(base, capture_output=True, text=True, timeout=60, env=python_env())
    assert r.returncode == 2 and "--allow-remote" in r.stderr
    r = subprocess.run([*base, "--allow-remote"], capture_output=True, text=True, timeout=60,
                       env=python_env())
    assert r.returncode == 2 and "--requirepass" in r.stderr


def test_password_protects_every_command(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, "--requirepass", "pw")
    try:
        s = raw(srv)
        s.sendall(encode_command(["GET", "x"]) + encode_command(["AUTH", "bad"]) +
                  encode_command(["AUTH", "pw"]) + encode_command(["PING"]))
        p = ReplyParser()
        replies: list[object] = []
        while len(replies) < 4:
            p.feed(s.recv(4096))
            while (r := p.gets()) is not False:
                replies.append(r)
        assert [str(r).split(" ")[0] for r in replies] == ["NOAUTH", "WRONGPASS", "OK", "PONG"]
        s.close()
        s = raw(srv)                               # before AUTH: small frames only
        s.sendall(b"*100\r\n")
        assert read_all(s).startswith(b"-ERR Protocol error")
    finally:
        srv.stop()

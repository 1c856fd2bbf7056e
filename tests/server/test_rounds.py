"""Rounds: the batches of every connection that made an engine call in one loop iteration
run as one hand-off, their GETs by name read in one store call (octopus.server.server,
Round; Core.get_named). Whatever the batching, each connection gets its replies in its
request order, sees its own writes, and an error stays the reply of its own request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

import octopus
from octopus.errors import EngineClosed
from octopus.query.ast import Name
from octopus.query.parser import parse_ply
from octopus.server.commands import bare_name
from octopus.server.resp import ReplyError, ReplyParser, encode_command
from octopus.server.testing import serve_in_thread

CONNECTIONS = 12


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[octopus.Engine, str]]:
    engine = octopus.Engine()
    with serve_in_thread(engine) as url:
        yield engine, url[len("unix://"):]
    engine.close()


def connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s


def read_replies(sock: socket.socket, n: int) -> list[object]:
    parser = ReplyParser()
    out: list[object] = []
    while len(out) < n:
        data = sock.recv(1 << 16)
        assert data, f"the server closed the connection after {len(out)} of {n} replies"
        parser.feed(data)
        while (reply := parser.gets()) is not False:
            out.append(reply)
    return out


def send_all_then_read(path: str, pipelines: list[list[list[str]]]) -> list[list[object]]:
    """Send every connection's whole pipeline first (so that many connections have
    requests in the same loop iteration), then read each connection's replies."""
    socks = [connect(path) for _ in pipelines]
    try:
        for sock in socks:                         # the session is open before we go
            sock.sendall(encode_command(["PING"]))
            assert read_replies(sock, 1) == ["PONG"]
        for sock, commands in zip(socks, pipelines, strict=True):
            sock.sendall(b"".join(encode_command(c) for c in commands))
        return [read_replies(sock, len(commands))
                for sock, commands in zip(socks, pipelines, strict=True)]
    finally:
        for sock in socks:
            sock.close()


def info(path: str) -> dict[str, str]:
    with connect(path) as sock:
        sock.sendall(encode_command(["INFO", "server"]))
        text = read_replies(sock, 1)[0]
    assert isinstance(text, bytes)
    return dict(line.split(":", 1) for line in text.decode().split("\r\n") if ":" in line)


def test_interleaved_pipelines_get_their_own_replies_in_order(
        served: tuple[octopus.Engine, str]) -> None:
    engine, path = served
    for i in range(CONNECTIONS):
        engine.set(f"r{i}.fixed {{ c: {i} }}")
    pipelines = []
    for i in range(CONNECTIONS):
        commands: list[list[str]] = []
        for j in range(20):
            commands.append(["SET", f"r{i}.k {{ v: {j} }}"])
            commands.append(["GET", f"r{i}.k"])              # sees the set just before
            commands.append(["GET", f"r{i}.fixed"])
            commands.append(["GET", f"r{i}.missing"])        # Redis's nil
        pipelines.append(commands)
    for i, replies in enumerate(send_all_then_read(path, pipelines)):
        expected: list[object] = []
        for j in range(20):
            expected += ["OK", f"r{i}.k {{ v: {j} }}".encode(),
                         f"r{i}.fixed {{ c: {i} }}".encode(), None]
        assert replies == expected


def test_gets_of_many_connections_share_store_calls(
        served: tuple[octopus.Engine, str]) -> None:
    engine, path = served
    for i in range(50):
        engine.set(f"s.{i} {{ n: {i} }}")
    pipelines = [[["GET", f"s.{(i + j) % 50}"] for j in range(30)] for i in range(CONNECTIONS)]
    combined = False
    for _ in range(20):                   # the sockets' timing decides what one round holds
        before = info(path)
        for i, replies in enumerate(send_all_then_read(path, pipelines)):
            assert replies == [f"s.{(i + j) % 50} {{ n: {(i + j) % 50} }}".encode()
                               for j in range(30)]
        after = info(path)
        reads = int(after["engine_batched_reads"]) - int(before["engine_batched_reads"])
        gets = int(after["engine_batched_gets"]) - int(before["engine_batched_gets"])
        assert 0 < reads <= gets
        if gets > reads:
            combined = True
            break
    assert combined, "no store call ever answered the GETs of two connections"


def test_an_error_stays_the_reply_of_its_own_request(
        served: tuple[octopus.Engine, str]) -> None:
    engine, path = served
    engine.set("e.there { x: 1 }")
    good = [["GET", "e.there"], ["GET", "e.nothing"], ["GET", "e.there"]]
    bad = [["GET", "e.there"], ["SET", "e.broken {"], ["GET", "_ { x: }"],
           ["NOSUCHCOMMAND"], ["GET", "e.there"], ["GET", "e.nothing"]]
    tagged = [["CLIENT", "FORMAT", "TEXT", "OCTOPUS"], ["GET", "e.nothing"],
              ["GET", "e.there"]]
    pipelines = [good, bad, tagged, good, bad, tagged]
    for _ in range(5):
        got = send_all_then_read(path, pipelines)
        for replies in got[0::3]:
            assert replies == [b"e.there { x: 1 }", None, b"e.there { x: 1 }"]
        for replies in got[1::3]:
            assert replies[0] == b"e.there { x: 1 }" and replies[4] == b"e.there { x: 1 }"
            assert [type(r) for r in replies[1:4]] == [ReplyError] * 3
            assert replies[5] is None
        for replies in got[2::3]:
            # Under Octopus's conventions a missing record is the error NotFound, here
            # while the others' GETs of the same name in the same round answer nil.
            assert replies[0] == "OK"
            assert isinstance(replies[1], ReplyError) and replies[1].code == "NotFound"
            assert replies[2] == b"e.there { x: 1 }"


def test_reads_by_name_see_every_write_made_before_them(
        served: tuple[octopus.Engine, str]) -> None:
    """Writes from other connections while GETs are batched: a GET never answers a
    revision older than one its own connection saw."""
    engine, path = served
    engine.set("w.counter { n: 0 }")
    stop = threading.Event()

    def writer() -> None:
        n = 0
        with connect(path) as sock:
            while not stop.is_set():
                n += 1
                sock.sendall(encode_command(["SET", f"w.counter {{ n: {n} }}"]))
                assert read_replies(sock, 1) == ["OK"]

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        got = send_all_then_read(path, [[["GET", "w.counter"]] * 100] * 4)
    finally:
        stop.set()
        thread.join(30)
    for replies in got:
        seen = [int(r.decode().split("n: ")[1].rstrip(" }")) for r in replies]  # type: ignore[union-attr]
        assert seen == sorted(seen)


def test_get_named_reads_many_sessions_at_once() -> None:
    engine = octopus.Engine()
    try:
        a, b = engine.session(), engine.session()
        a.set("n.one { v: 1 }")
        b.close()
        core = engine._core
        revision, found = core.get_named([(a._sid, "n.one"), (b._sid, "n.one"),
                                          (a._sid, "n.two"), (a._sid, "n.one")])
        assert revision == engine.revision
        assert found[0] == a.get("n.one") and found[3] == found[0]
        assert isinstance(found[1], EngineClosed)
        assert found[2] is None
    finally:
        engine.close()


@pytest.mark.parametrize(("raw", "name"), [
    (b"hw.pci.device.7", "hw.pci.device.7"),
    (b"a", "a"),
    (b"_", None), (b"true", None), (b"x { a: 1 }", None), (b"%s", None),
    (b"r'x'", None), (b"X", None), (b" x", None), (b"x ", None),
    ("caf\u00e9".encode(), None), (b"a" * 5000, None),
])
def test_bare_name_is_exactly_a_name_the_parser_reads_as_the_whole_query(
        raw: bytes, name: str | None) -> None:
    assert bare_name(raw, 4096) == name
    if name is not None:
        q = parse_ply(name)                        # the grammar's own reading
        assert isinstance(q.name, Name) and q.name.text == name and not q.constraints

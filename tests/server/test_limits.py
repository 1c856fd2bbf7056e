"""The server under abuse: a slow request must not stall other clients, an HTTP request
is refused, slow subscribers are bounded per connection and in total, AUTH guesses are
slowed down, and triggers per connection are limited. Real sockets throughout."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest

from octopus.errors import LimitExceeded
from octopus.server import connect
from octopus.server.config import ServerConfig
from octopus.server.limits import AuthThrottle, BufferLimit, OutputBudget, RateLimitedLog
from octopus.server.resp import ReplyParser, encode_command
from octopus.server.testing import serve_in_thread

from .conftest import ServerProcess


def unix(url: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(url.removeprefix("unix://"))
    s.settimeout(30)
    return s


def replies(s: socket.socket, n: int, parser: ReplyParser | None = None) -> list[object]:
    p = parser or ReplyParser()
    out: list[object] = []
    while len(out) < n:
        while (r := p.gets()) is not False:
            out.append(r)
            if len(out) == n:
                return out
        data = s.recv(1 << 16)
        if not data:
            raise ConnectionError(f"closed after {len(out)} replies: {out!r}")
        p.feed(data)
    return out


def info(url: str) -> dict[str, str]:
    """INFO once every event published so far has been written (or dropped)."""
    with connect(url) as c:
        c.flush()
        return dict(line.split(":", 1) for line in c.info().splitlines() if ":" in line)


def pending_bytes(s: socket.socket) -> bytes:
    """What has arrived on ``s`` so far, without waiting."""
    s.setblocking(False)
    try:
        chunks = []
        while True:
            try:
                data = s.recv(1 << 20)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)
    finally:
        s.setblocking(True)
        s.settimeout(30)


# --- a slow request does not stall the others (finding 3) -----------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("limits"))
    yield srv
    assert srv.alive, "the server died"
    srv.stop()


def test_other_clients_are_served_while_a_slow_request_runs(server: ServerProcess) -> None:
    """One client pipelines 40 scans over 20,000 records (a name regex on every record:
    tens of ms of Prolog each; a range is no scan since the ordered index); another
    client's PING, GET and EXISTS must be answered before the first has all its replies
    (they used to wait for every scan: the loop ran them)."""
    setup = unix(server.unix_url)
    n_records = 20_000
    setup.sendall(b"".join(encode_command(["SET", f"scan{i} {{ slowscan: {i} }}"])
                           for i in range(n_records)) +
                  encode_command(["SET", "fast.rec { a: 1 }"]))
    assert replies(setup, n_records + 1)[-1] == "OK"          # Redis's convention
    setup.close()
    slow = unix(server.unix_url)
    n = 40
    slow.sendall(encode_command(["NAMES", "r'^scan[0-9]+x$' { slowscan: _ }"]) * n)
    time.sleep(0.2)                               # the scans are running
    fast = unix(server.unix_url)
    fast.sendall(encode_command(["PING"]) + encode_command(["GET", "fast.rec"]) +
                 encode_command(["EXISTS", "fast.rec"]))
    assert replies(fast, 3) == ["PONG", b"fast.rec { a: 1 }", 1]
    early = ReplyParser()
    early.feed(pending_bytes(slow))
    got = 0
    while early.gets() is not False:
        got += 1
    assert got < n, "the slow client's requests were all answered first"
    assert replies(slow, n - got, early) == [[]] * (n - got)
    slow.close()
    fast.close()
    with connect(server.unix_url) as c:
        c.delete("fast.rec")


def test_a_query_longer_than_the_engine_limit_is_refused_before_parsing(
        server: ServerProcess) -> None:
    s = unix(server.unix_url)
    s.sendall(encode_command(["GET", "_ { a: 'x" + "%" * ((1 << 20) - 40) + "' }"]) +
              encode_command(["PING"]))
    error, pong = replies(s, 2)
    assert str(error).startswith("QueryError") and "limit" in str(error) and pong == "PONG"
    s.close()


def test_replies_keep_request_order_across_engine_calls(server: ServerProcess) -> None:
    s = unix(server.unix_url)
    cmds = [["PING"], ["SET", "ord { n: 1 }"], ["ECHO", "a"], ["GET", "ord"], ["ECHO", "b"],
            ["NAMES", "r'^ord$'"], ["ECHO", "c"], ["WAIT", "ord"], ["ECHO", "d"],
            ["FLUSH"], ["ECHO", "e"], ["GET", "ord"], ["DEL", "ord"], ["EXISTS", "ord"]]
    for _ in range(3):
        s.sendall(b"".join(encode_command(c) for c in cmds))
        assert replies(s, len(cmds)) == [
            "PONG", "OK", b"a", b"ord { n: 1 }", b"b", [b"ord"], b"c",
            b"ord { n: 1 }", b"d", "OK", b"e", b"ord { n: 1 }", 1, 0]
    s.close()


def test_a_watch_reply_comes_before_its_events(server: ServerProcess) -> None:
    stop = threading.Event()

    def writer() -> None:
        with connect(server.unix_url) as c:
            i = 0
            while not stop.is_set():
                c.set("race { n: %d }", i)
                i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        s = unix(server.unix_url)
        for _ in range(30):
            s.sendall(encode_command(["WATCH", "race"]))
            p = ReplyParser()
            first = replies(s, 1, p)[0]
            assert isinstance(first, int), first          # the id, not an event
            s.sendall(encode_command(["UNWATCH", str(first)]))
            while replies(s, 1, p)[0] != "OK":           # events, then the UNWATCH's OK
                pass
            while replies(s, 1, p)[0] != [b"trigger", first, b"REMOVED", ANY, None]:
                pass                                       # ... and its last event
        s.close()
    finally:
        stop.set()
        t.join()


# --- cross-protocol (finding 8) -----------------------------------------------------------------


def test_an_http_request_is_refused_and_its_body_never_runs(server: ServerProcess) -> None:
    for request in (b"POST / HTTP/1.1\r\nHost: 127.0.0.1:6380\r\nContent-Length: 30\r\n\r\n"
                    b"SET evil { a: 1 }\r\nQUIT\r\n",
                    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nSET evil { a: 1 }\r\n"):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        s.sendall(request)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        s.close()
        assert b"evil" not in data and b"+OK" not in data
    with connect(server.unix_url) as c:
        assert not c.exists("evil")
    log = server.log.read_text()
    assert "possible SECURITY ATTACK" in log
    assert int(info(server.unix_url)["cross_protocol_disconnections"]) >= 2


# --- slow subscribers (finding 12) --------------------------------------------------------------


def slow_subscriber(url: str, query: str) -> socket.socket:
    s = unix(url)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(encode_command(["SUBSCRIBE", query]))
    assert replies(s, 1)[0] == [b"subscribe", query.encode(), 1]
    return s


def test_soft_limit_held_too_long_drops_a_subscriber() -> None:
    config = ServerConfig(output_limit=0, output_soft_limit=512 << 10,
                          output_soft_seconds=1.0, output_memory_limit=0)
    with serve_in_thread(config=config) as url, connect(url) as c:
        slow = slow_subscriber(url, "_ { topic: 's' }")
        payload = "p" * 8000
        for i in range(1000):
            c.publish("m { topic: 's', n: %d, p: %s }", i, payload)
            if int(info(url)["client_output_bytes"]) > (512 << 10):
                break
        assert c.publish("m { topic: 's', n: %d, p: %s }", -1, payload) == 1   # still there
        time.sleep(1.5)
        c.publish("m { topic: 's', n: %d, p: %s }", -2, payload)    # noticed on this write
        deadline = time.monotonic() + 10
        while c.publish("m { topic: 's', n: %d, p: %s }", -3, "x") and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        stats = info(url)
        assert stats["output_soft_limit_disconnections"] == "1"
        assert stats["output_hard_limit_disconnections"] == "0"
        slow.close()


def test_past_the_total_cap_the_largest_buffers_are_dropped_first() -> None:
    config = ServerConfig(output_limit=256 << 20, output_soft_limit=0,
                          output_memory_limit=3 << 20)
    with serve_in_thread(config=config) as url, connect(url) as c:
        a = slow_subscriber(url, "_ { topic: r'^(a|all)$' }")
        b = slow_subscriber(url, "_ { topic: r'^(b|all)$' }")
        small = slow_subscriber(url, "_ { topic: 'all' }")
        payload = "q" * 20_000
        message = "m { topic: %s, n: %d, p: %s }"
        # a holds ~1.5 MiB unsent, b ~1 MiB (the kernel takes the first ~200 KB each).
        for topic, total in (("a", 1536 << 10), ("b", 2560 << 10)):
            for i in range(1000):
                assert c.publish(message, topic, i, payload) == 1
                if int(info(url)["client_output_bytes"]) > total:
                    break
        # Messages to all three: past 3 MiB in total the largest buffer (a) goes.
        delivered: list[int] = []
        while 2 not in delivered:
            delivered.append(c.publish(message, "all", len(delivered), payload))
            assert len(delivered) < 200
        assert set(delivered) == {3, 2}
        stats = info(url)
        assert stats["output_memory_limit_disconnections"] == "1"
        assert int(stats["client_output_bytes"]) <= 3 << 20
        assert c.publish(message, "b", -1, payload) == 1       # b is still there
        # The small subscriber lost nothing and is still served.
        small.sendall(encode_command(["PING"]))
        got = replies(small, len(delivered) + 1)
        assert [m[2] for m in got[:-1]] == [  # type: ignore[index]  # [message, q, record]
            f"m {{ n: {i}, p: '{payload}', topic: 'all' }}".encode()
            for i in range(len(delivered))]
        assert got[-1] == [b"pong", b""]      # Redis's PING reply on a subscribed RESP2 link
        with pytest.raises(OSError):                           # a was closed
            while a.recv(1 << 20):
                pass
            raise ConnectionResetError("closed")
        for s in (a, b, small):
            s.close()


def test_output_budget_without_sockets() -> None:
    budget: OutputBudget[str] = OutputBudget(
        1000, pubsub=BufferLimit(hard=800, soft=300, soft_seconds=5),
        normal=BufferLimit())
    assert budget.note("a", 400, 0.0, True) is None           # over soft: the clock starts
    assert budget.note("a", 350, 4.0, True) is None
    assert budget.note("a", 350, 5.5, True) == "soft"          # over soft for 5.5 s
    assert budget.note("b", 900, 0.0, True) == "hard"
    assert budget.note("c", 5000, 0.0, False) is None          # normal: no per-client limit
    sizes = {"a": 350, "b": 900, "c": 5000, "d": 10}
    budget.note("d", 10, 0.0, False)
    assert budget.over() and budget.total == 6260
    assert budget.victims(sizes.__getitem__) == ["c", "b"]     # largest first, until under
    assert budget.total == 360 and not budget.over()
    assert budget.victims(sizes.__getitem__) == []
    budget.note("a", 0, 9.0, True)
    assert budget.total == 10 and budget.size("a") == 0


# --- AUTH (finding 18) ----------------------------------------------------------------------


def test_a_failed_auth_is_answered_late_without_holding_up_anyone(
        caplog: pytest.LogCaptureFixture) -> None:
    config = ServerConfig(password="pw", auth_failure_delay=1.0, auth_failures_per_second=50)
    caplog.set_level(logging.WARNING, logger="octopus.server")
    with serve_in_thread(config=config) as url:
        guesser = unix(url)
        guesser.sendall(encode_command(["AUTH", "wrong"]) + encode_command(["PING"]) +
                        encode_command(["AUTH", "pw"]) + encode_command(["PING"]))
        time.sleep(0.1)
        other = unix(url)
        other.sendall(encode_command(["AUTH", "pw"]) + encode_command(["PING"]) +
                      encode_command(["SET", "a { b: 1 }"]))
        assert replies(other, 3) == ["OK", "PONG", "OK"]
        assert pending_bytes(guesser) == b""            # still held
        got = replies(guesser, 4)
        assert [str(r).split(" ")[0] for r in got] == ["WRONGPASS", "NOAUTH", "OK", "PONG"]
        for _ in range(4):                               # more failures: logged once
            s = unix(url)
            s.sendall(encode_command(["AUTH", "nope"]))
            assert str(replies(s, 1)[0]).startswith("WRONGPASS")
            s.close()
        guesser.close()
        other.close()
        assert info_authed(url)["auth_failures"] == "5"
    logged = [r for r in caplog.records if "failed AUTH" in r.getMessage()]
    assert len(logged) == 1


def info_authed(url: str) -> dict[str, str]:
    with connect(url, password="pw") as c:
        return dict(line.split(":", 1) for line in c.info().splitlines() if ":" in line)


def test_auth_throttle_spaces_failures_server_wide() -> None:
    t = AuthThrottle(delay=0.5, per_second=10)
    holds = [t.failure(100.0) for _ in range(5)]          # five connections at once
    assert holds == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
    assert t.failure(200.0) == pytest.approx(0.5)          # later: just the delay
    assert t.failures == 6


def test_rate_limited_log_counts_what_it_skipped(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("octopus.test.ratelimit")
    caplog.set_level(logging.WARNING, logger=logger.name)
    log = RateLimitedLog(logger, 10.0)
    assert log.warning(0.0, "x %d", 1)
    assert not log.warning(1.0, "x %d", 2) and not log.warning(2.0, "x %d", 3)
    assert log.warning(12.0, "x %d", 4)
    assert [r.getMessage() for r in caplog.records] == [
        "x 1", "x 4 (and 2 more like it in the last 12 s, not logged)"]


def test_unauthenticated_inline_commands_are_small(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, "--requirepass", "pw")
    try:
        s = unix(srv.unix_url)
        s.sendall(b"SET " + b"x" * 20_000 + b"\r\n")       # 60 KB used to be accepted
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert data.startswith(b"-ERR Protocol error: inline request longer than 16384")
        s.close()
        s = unix(srv.unix_url)                             # after AUTH: the normal limit
        s.sendall(b"AUTH pw\r\nECHO " + b"y" * 20_000 + b"\r\n")
        assert replies(s, 2) == ["OK", b"y" * 20_000]
        s.close()
    finally:
        srv.stop()


# --- triggers per connection (finding 18) -------------------------------------------------------


def test_triggers_and_subscriptions_per_connection_are_limited() -> None:
    with serve_in_thread(config=ServerConfig(max_triggers=4)) as url, connect(url) as c:
        handles = [c.watch(f"w{i}", lambda e: None) for i in range(3)]
        handles.append(c.subscribe("m", lambda e: None))
        with pytest.raises(LimitExceeded, match="limit is 4"):
            c.watch("w9", lambda e: None)
        with pytest.raises(LimitExceeded):
            c.subscribe("m9", lambda e: None)
        with connect(url) as other:                        # per connection, not global
            other.watch("w9", lambda e: None)
        c.remove_trigger(handles[0])
        c.flush()
        c.watch("w9", lambda e: None)
        assert re.search(r"max_triggers_per_client:4", c.info())

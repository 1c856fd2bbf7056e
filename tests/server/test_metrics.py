"""``octopus serve --metrics-port``: the Prometheus endpoint, scraped over HTTP from a
real server (docs/server.md, *Metrics*): the exposition format, per-command counts and
latency histograms with a bounded label set, the engine's gauges, and an endpoint that
answers nothing else and cannot be held open by many scrapers."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import octopus
from octopus.server.metrics import BUCKETS, MAX_SCRAPES

from .conftest import ROOT, ServerProcess, python_env

SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{[^}]*\})? (\S+)$')


class Scraped:
    """A parsed exposition: (name, labels) -> value, and each family's TYPE."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, str], float] = {}
        self.types: dict[str, str] = {}
        helps: set[str] = set()
        for line in text.splitlines():
            if line.startswith("# HELP "):
                helps.add(line.split()[2])
            elif line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                assert name in helps, f"TYPE before HELP for {name}"
                self.types[name] = kind
            else:
                m = SAMPLE.match(line)
                assert m, f"not a sample line: {line!r}"
                name, labels, value = m.group(1), m.group(2) or "", m.group(3)
                family = re.sub(r"_(bucket|sum|count)$", "", name) \
                    if name not in self.types else name
                assert family in self.types, f"{name} has no TYPE"
                assert (name, labels) not in self.samples, f"duplicate {name}{labels}"
                self.samples[name, labels] = float(value)

    def get(self, name: str, labels: str = "") -> float:
        return self.samples[name, labels]

    def commands(self) -> set[str]:
        return {re.search(r'command="([^"]*)"', labels).group(1)  # type: ignore[union-attr]
                for name, labels in self.samples if name == "octopus_commands_total"}


def metrics_port(srv: ServerProcess) -> int:
    m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", srv.log.read_text())
    assert m, srv.log.read_text()
    return int(m.group(1))


def scrape(port: int) -> Scraped:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return Scraped(r.read().decode())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("metrics"), "--metrics-port", "0")
    yield srv
    assert srv.alive
    srv.stop()


def raw(srv: ServerProcess, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(srv.socket)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_counts_and_latencies_per_command(server: ServerProcess) -> None:
    port = metrics_port(server)
    before = scrape(port)
    with octopus.connect(server.unix_url) as c:
        for i in range(20):
            c.set(f"m.rec{i} {{ i: %d }}", i)
        for i in range(5):
            c.get(f"m.rec{i}")
        with pytest.raises(octopus.NotFound):
            c.get("m.none")
        live = scrape(port)                     # the connection's own tally
    after = scrape(port)                        # folded into the totals: counted once

    def delta(name: str, labels: str, now: Scraped = after) -> float:
        return now.get(name, labels) - before.samples.get((name, labels), 0.0)

    assert delta("octopus_commands_total", '{command="set"}', live) == 20
    assert delta("octopus_commands_total", '{command="set"}') == 20
    assert delta("octopus_commands_total", '{command="get"}') == 6
    assert delta("octopus_command_errors_total", '{command="get"}') == 1
    assert after.types["octopus_command_duration_seconds"] == "histogram"
    # The histogram is cumulative, ends at +Inf = count, and its sum is plausible.
    h = "octopus_command_duration_seconds"
    counts = [after.get(f"{h}_bucket", f'{{command="set",le="{b!r}"}}') for b in BUCKETS]
    inf = after.get(f"{h}_bucket", '{command="set",le="+Inf"}')
    assert counts == sorted(counts) and counts[-1] <= inf
    assert inf == after.get(f"{h}_count", '{command="set"}') == \
        after.get("octopus_commands_total", '{command="set"}')
    assert 0 < after.get(f"{h}_sum", '{command="set"}') < inf * 10


def test_the_label_set_is_bounded(server: ServerProcess) -> None:
    port = metrics_port(server)
    # A hundred made-up command names (and a huge one) are all "unknown".
    junk = b"".join(b"*1\r\n$%d\r\n%s\r\n" % (len(n), n)
                    for n in [b"NOSUCH%d" % i for i in range(100)] + [b"X" * 5000])
    assert raw(server, junk).count(b"-ERR unknown command") == 101
    scraped = scrape(port)
    assert scraped.get("octopus_commands_total", '{command="unknown"}') >= 101
    assert not any("nosuch" in c for c in scraped.commands())
    names = scraped.commands()
    assert names <= {"unknown", *(n.decode().lower() for n in _command_names())}


def _command_names() -> list[bytes]:
    from octopus.server.commands import CommandLayer

    return list(CommandLayer.COMMANDS)


def test_engine_gauges(server: ServerProcess) -> None:
    port = metrics_port(server)
    with octopus.connect(server.unix_url) as c:
        c.set("g.one { a: 1 }")
        c.set("g.eph { a: 2 }", ephemeral=True)
        c.watch("r'^g\\.'", lambda e: None)
        c.subscribe("_ { topic: 'g' }", lambda e: None)
        info = dict(line.split(":", 1) for line in c.info().splitlines() if ":" in line)
        s = scrape(port)
        assert s.get("octopus_revision") == int(info["revision"])
        assert s.get("octopus_records") == int(info["records"])
        assert s.get("octopus_connected_clients") >= 1
        assert s.get("octopus_triggers") >= 1 and s.get("octopus_subscriptions") >= 1
        assert s.get("octopus_ephemeral_records") >= 1
        assert s.get("octopus_durable") == 0
        assert s.types["octopus_connections_received_total"] == "counter"
    s = scrape(port)
    assert s.get("octopus_ephemeral_records") == 0


def test_journal_stats_of_a_durable_server(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, "--metrics-port", "0", "--data", str(tmp_path / "data"))
    try:
        with octopus.connect(srv.unix_url) as c:
            c.set("d.one { a: 1 }")
        s = scrape(metrics_port(srv))
        assert s.get("octopus_durable") == 1
        assert s.get("octopus_persistence_journal_entries") >= 1
        assert s.get("octopus_persistence_journal_bytes") > 0
    finally:
        srv.stop()


def http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_the_endpoint_answers_nothing_else(server: ServerProcess) -> None:
    port = metrics_port(server)
    assert http(port, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 404 Not Found\r\n")
    assert http(port, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(
        b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert http(port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert http(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10000).startswith(
        b"HTTP/1.1 431 ")
    head = http(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=30)


def test_idle_scrapers_cannot_hold_the_endpoint(server: ServerProcess) -> None:
    port = metrics_port(server)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=30)
            for _ in range(MAX_SCRAPES)]
    try:
        time.sleep(0.2)
        # Closed at once, unanswered (a reset if the request arrived first).
        with socket.create_connection(("127.0.0.1", port), timeout=30) as extra, \
                contextlib.suppress(ConnectionResetError, BrokenPipeError):
            extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            assert extra.recv(100) == b""
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 30
    while True:                                 # the slots come back
        try:
            scrape(port)
            break
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline
            time.sleep(0.1)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "octopus", *args], capture_output=True,
                          text=True, timeout=60, env=python_env(), cwd=ROOT)


def test_serve_refuses_a_metrics_port_in_use_or_on_the_network(server: ServerProcess) -> None:
    port = metrics_port(server)
    r = run("serve", "--port", "0", "--metrics-port", str(port))
    assert r.returncode == 4, r.stderr
    assert f"the metrics port 127.0.0.1:{port} is in use" in r.stderr
    r = run("serve", "--port", "0", "--metrics-port", "0", "--metrics-host", "0.0.0.0")
    assert r.returncode == 2 and "--allow-remote" in r.stderr
    r = run("serve", "--metrics-port", "70000")
    assert r.returncode == 2 and "argument --metrics-port" in r.stderr

"""The ``octopus`` command line against a server process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, ServerProcess, python_env


def octopus(server: ServerProcess, *args: str,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "octopus", *args, "--url", server.unix_url],
                          capture_output=True, text=True, timeout=timeout, env=python_env(),
                          cwd=ROOT)


def test_get_set_names_exists_del(server: ServerProcess) -> None:
    r = octopus(server, "set", "cli.dev { port: %d, kind: %s }", "80", "web")
    assert r.returncode == 0 and r.stdout.strip() == "cli.dev { kind: 'web', port: 80 }"
    r = octopus(server, "get", "_ { port: %d }", "80", "--json")
    data = json.loads(r.stdout)
    assert data["name"] == "cli.dev" and data["attributes"] == {"kind": "web", "port": 80}
    assert octopus(server, "names", "r'^cli'").stdout.split() == ["cli.dev"]
    assert octopus(server, "exists", "cli.dev").returncode == 0
    assert octopus(server, "exists", "cli.none").returncode == 1
    r = octopus(server, "get", "cli.none")
    assert r.returncode == 1 and "NotFound" in r.stderr
    r = octopus(server, "get", "_ { port: %d }", "eighty")
    assert r.returncode == 1 and "ParameterError" in r.stderr
    assert octopus(server, "del", "cli.dev").returncode == 0
    assert "revision" in octopus(server, "info").stdout


def test_watch_streams_events(server: ServerProcess) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "octopus", "watch", "r'^cliw'", "--json", "--url",
         server.unix_url], stdout=subprocess.PIPE, text=True, env=python_env(), cwd=ROOT)
    try:
        from octopus.server import connect

        with connect(server.unix_url) as c:
            deadline = time.monotonic() + 30       # wait until the watch is installed
            while "connected_clients:2" not in c.info() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            c.set("cliw.a { n: 1 }")
            c.delete("cliw.a")
        assert watcher.stdout is not None
        first = json.loads(watcher.stdout.readline())
        second = json.loads(watcher.stdout.readline())
        assert (first["mode"], first["record"]["name"]) == ("ON_SET", "cliw.a")
        assert second["mode"] == "ON_DEL"
    finally:
        watcher.terminate()
        watcher.wait(10)


def test_wait_times_out(server: ServerProcess) -> None:
    r = octopus(server, "wait", "cli.never", "--timeout", "0.2")
    assert r.returncode == 1 and "WaitTimeout" in r.stderr


def test_serve_loads_knowledge_base_files_before_serving(tmp_path: Path) -> None:
    good = tmp_path / "drivers.pl"
    good.write_text("driver_for(0x8086, e1000n).\n")
    srv = ServerProcess(tmp_path, "--load", str(good))
    try:
        assert srv.alive
    finally:
        srv.stop()
    bad = tmp_path / "broken.pl"
    bad.write_text("driver_for(0x8086, e1000n.\n")
    (tmp_path / "second").mkdir()
    with pytest.raises(RuntimeError, match=r"KnowledgeBaseError|syntax"):
        ServerProcess(tmp_path / "second", "--load", str(bad))

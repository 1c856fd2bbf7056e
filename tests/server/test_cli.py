"""The ``octopus`` command line in real processes: every exit status and its message,
refusals to take over a live address, logging, parameters read as the language reads
literals, and no traceback for an ordinary failure (docs/cli.md)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import octopus
from octopus.cli import build_parser
from octopus.errors import ParameterError, ParseError
from octopus.server.cli import parse_params

from .conftest import ROOT, ServerProcess, python_env

NOWHERE = "unix:///nonexistent-dir/octopus.sock"


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "octopus", *args], capture_output=True,
                       text=True, timeout=timeout, env=python_env(), cwd=ROOT)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def octopus_cli(server: ServerProcess, *args: str,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run(*args, "--url", server.unix_url, timeout=timeout)


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "octopus", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=python_env(), cwd=ROOT)


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert "Traceback" not in err, err
    return proc.returncode, out, err


def wait_for_clients(server: ServerProcess, n: int) -> None:
    with octopus.connect(server.unix_url) as c:
        deadline = time.monotonic() + 30
        while f"connected_clients:{n + 1}" not in c.info():
            assert time.monotonic() < deadline, "the other client never connected"
            time.sleep(0.05)
        time.sleep(0.2)        # connected; let it send its command


# --- the client commands ---------------------------------------------------------------------


def test_get_set_names_exists_del(server: ServerProcess) -> None:
    r = octopus_cli(server, "set", "cli.dev { port: %d, kind: %s }", "80", "web")
    assert r.returncode == 0 and r.stdout.strip() == "cli.dev { kind: 'web', port: 80 }"
    r = octopus_cli(server, "get", "_ { port: %d }", "80", "--json")
    data = json.loads(r.stdout)
    assert data["name"] == "cli.dev" and data["attributes"] == {"kind": "web", "port": 80}
    assert octopus_cli(server, "names", "r'^cli'").stdout.split() == ["cli.dev"]
    assert octopus_cli(server, "exists", "cli.dev").returncode == 0
    assert octopus_cli(server, "del", "cli.dev").returncode == 0
    assert "revision" in octopus_cli(server, "info").stdout


def test_exit_1_for_not_found_false_and_timeouts(server: ServerProcess) -> None:
    r = octopus_cli(server, "get", "cli.none")
    assert (r.returncode, r.stderr) == (1, "octopus get: NotFound: no record matches "
                                           "'cli.none'\n")
    r = octopus_cli(server, "exists", "cli.none")
    assert (r.returncode, r.stdout) == (1, "no\n")
    r = octopus_cli(server, "del", "cli.none")
    assert r.returncode == 1 and "NotFound" in r.stderr
    r = octopus_cli(server, "wait", "cli.never", "--timeout", "0.2")
    assert r.returncode == 1 and "octopus wait: WaitTimeout:" in r.stderr
    octopus_cli(server, "set", "cli.cas { v: 1 }")
    r = octopus_cli(server, "set", "cli.cas { v: 3, v == 2 }")
    assert r.returncode == 1 and "ConditionFailed" in r.stderr


def test_exit_2_for_usage_errors_before_connecting() -> None:
    # No server anywhere: a usage error is reported as such, not as "cannot connect".
    r = run("get", "_ { port: %d }", "eighty", "--url", NOWHERE)
    assert r.returncode == 2
    assert r.stderr == ("octopus get: ParameterError: parameter 1 (%d) must be an integer "
                        "(42, -7, 0x1F), got 'eighty'\n")
    r = run("get", "_ { port: ", "--url", NOWHERE)
    assert r.returncode == 2 and "octopus get: ParseError: unexpected end of input" in r.stderr
    r = run("get", "_ { port: %d }", "--url", NOWHERE)
    assert r.returncode == 2 and "1 placeholder(s) but 0 parameter(s)" in r.stderr
    r = run("get", "x", "--url", "ftp://host")
    assert r.returncode == 2 and "unsupported server URL" in r.stderr
    r = run("get", "--no-such-flag", "x")
    assert r.returncode == 2 and "unrecognized arguments: --no-such-flag" in r.stderr
    r = run("set", "x { a: 1 }", "--ephemeral", "--url", NOWHERE)
    assert r.returncode == 2 and "--ephemeral" in r.stderr
    assert run().returncode == 2                      # no command at all


def test_exit_3_when_the_server_cannot_be_reached(tmp_path: Path) -> None:
    r = run("get", "x", "--url", f"unix://{tmp_path}/absent.sock")
    assert r.returncode == 3
    assert r.stderr.startswith(f"octopus get: cannot connect to unix://{tmp_path}/absent.sock")
    assert "is `octopus serve` running there?" in r.stderr
    with socket.socket() as s:              # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run("exists", "x", "--url", f"tcp://127.0.0.1:{port}")
    assert r.returncode == 3 and "Connection refused" in r.stderr
    r = run("info", "--url", f"tcp://127.0.0.1:{port}")
    assert r.returncode == 3


def test_exit_3_for_a_wrong_password(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, "--requirepass", "secret")
    try:
        r = run("get", "x", "--url", srv.unix_url, "--password", "wrong")
        assert r.returncode == 3 and "refused the password" in r.stderr
        r = run("exists", "x", "--url", srv.unix_url, "--password", "secret")
        assert r.returncode == 1
    finally:
        srv.stop()


def test_exit_3_when_the_connection_is_lost(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)
    waiter = start("wait", "cli.never", "--url", srv.unix_url)
    watcher = start("watch", "r'^cli'", "--url", srv.unix_url)
    try:
        wait_for_clients(srv, 2)
        srv.proc.kill()                        # the server dies under both commands
        srv.proc.wait(10)
        code, _, err = finish(waiter)
        assert code == 3 and "octopus wait:" in err and "lost" in err
        code, _, err = finish(watcher)
        assert code == 3 and err.startswith("octopus watch: the connection to ")
    finally:
        for p in (waiter, watcher):
            if p.poll() is None:
                p.kill()
                p.wait()
        srv.stop()


def test_ctrl_c_ends_a_command_with_130_and_a_stream_with_0(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)
    try:
        waiter = start("wait", "cli.never", "--url", srv.unix_url)
        wait_for_clients(srv, 1)
        waiter.send_signal(signal.SIGINT)
        code, _, err = finish(waiter)
        assert (code, err) == (130, "octopus wait: interrupted\n")
        watcher = start("watch", "r'^cli'", "--url", srv.unix_url)
        wait_for_clients(srv, 1)
        watcher.send_signal(signal.SIGINT)
        code, _, err = finish(watcher)
        assert (code, err) == (0, "")
    finally:
        srv.stop()


def test_parameters_are_read_as_the_language_reads_literals(server: ServerProcess) -> None:
    octopus_cli(server, "set", "cli.nic { vendor: 0x8086, gain: 2.5, up: true }")
    r = octopus_cli(server, "get", "_ { vendor: %d }", "0x8086")
    assert (r.returncode, r.stdout) == (0, "cli.nic { gain: 2.5, up: true, vendor: 32902 }\n")
    assert octopus_cli(server, "exists", "_ { vendor: %d }", "32902").returncode == 0
    assert octopus_cli(server, "exists", "_ { gain: %f }", "2.5").returncode == 0
    assert octopus_cli(server, "exists", "_ { gain: %f, up: %b }", "25e-1", "true"
                       ).returncode == 0
    assert octopus_cli(server, "exists", "_ { up: %b }", "1").returncode == 0
    r = octopus_cli(server, "set", "%s { n: %d }", "cli.neg", "-7")
    assert r.stdout == "cli.neg { n: -7 }\n"
    # A parameter that looks like a flag follows `--`, as with any argparse command.
    r = octopus_cli(server, "set", "%s { n: %d }", "cli.neg", "-0x10")
    assert r.returncode == 2
    r = run("set", "--url", server.unix_url, "%s { n: %d, f: %f }", "--", "cli.neg", "-0x10",
            "-1e3")
    assert r.stdout == "cli.neg { f: -1000.0, n: -16 }\n"


@pytest.mark.parametrize(("query", "texts", "values"), [
    ("_ { a: %d }", ["0x8086"], (0x8086,)),
    ("_ { a: %d }", ["-0X1f"], (-31,)),
    ("_ { a: %d }", ["  7 "], (7,)),
    ("_ { a: %f }", ["7"], (7.0,)),
    ("_ { a: %f }", ["-1.5e3"], (-1500.0,)),
    ("_ { a: %b, b: %b }", ["false", "0"], (False, False)),
    ("%s { a: %s }", ["x.y", "0x10"], ("x.y", "0x10")),      # text stays text
    ("%n", ["x"], ("x",)),
])
def test_parse_params(query: str, texts: list[str], values: tuple[object, ...]) -> None:
    assert parse_params(query, texts) == values


@pytest.mark.parametrize(("query", "texts"), [
    ("_ { a: %d }", ["1.5"]), ("_ { a: %d }", ["true"]), ("_ { a: %d }", ["007"]),
    ("_ { a: %d }", ["1 2"]), ("_ { a: %d }", ["'1'"]), ("_ { a: %d }", [""]),
    ("_ { a: %f }", ["1e999"]), ("_ { a: %f }", ["nan"]), ("_ { a: %b }", ["yes"]),
    ("_ { a: %d }", []), ("_ { a: %d }", ["1", "2"]),
])
def test_parse_params_refuses(query: str, texts: list[str]) -> None:
    with pytest.raises(ParameterError):
        parse_params(query, texts)


def test_parse_params_reports_a_bad_query() -> None:
    with pytest.raises(ParseError):
        parse_params("_ { a: ", [])


def test_watch_streams_events(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)
    watcher = start("watch", "r'^cliw'", "--json", "--url", srv.unix_url)
    try:
        wait_for_clients(srv, 1)
        with octopus.connect(srv.unix_url) as c:
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
        srv.stop()


# --- serve -------------------------------------------------------------------------------------


def test_serve_logs_listening_and_shutdown(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)
    srv.proc.send_signal(signal.SIGINT)                 # Ctrl-C: a clean stop
    assert srv.proc.wait(30) == 0
    log = srv.log.read_text()
    assert "Traceback" not in log
    lines = log.splitlines()
    assert " INFO octopus.server: serving on unix://" in lines[0]
    assert f"(octopus {octopus.__version__}, pid {srv.proc.pid})" in lines[0]
    assert " INFO octopus.server: shut down after " in lines[-1]
    assert not Path(srv.socket).exists()


def test_serve_log_level(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    proc = start("serve", "--unix", str(sock), "--log-level", "WARNING")
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert run("exists", "x", "--url", f"unix://{sock}").returncode == 1
    finally:
        proc.terminate()
    code, _, err = finish(proc)
    assert (code, err) == (0, "")
    r = run("serve", "--log-level", "loud")
    assert r.returncode == 2 and "invalid choice: 'loud'" in r.stderr


def test_serve_refuses_a_live_unix_socket(server: ServerProcess) -> None:
    r = run("serve", "--unix", server.socket)
    assert r.returncode == 4
    assert r.stderr == (f"octopus serve: unix://{server.socket} is in use: a server answers "
                        "on it; stop that server or choose another --unix path\n")
    assert server.alive and Path(server.socket).exists()
    with octopus.connect(server.unix_url) as c:           # still the only authority there
        assert "revision" in c.info()


def test_serve_replaces_the_socket_of_a_dead_server(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path)
    first.proc.kill()                                     # leaves its socket file behind
    first.proc.wait(10)
    assert Path(first.socket).exists()
    second = ServerProcess(tmp_path)
    try:
        with octopus.connect(second.unix_url) as c:
            assert "revision" in c.info()
    finally:
        second.stop()


def test_serve_refuses_a_path_that_is_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    r = run("serve", "--unix", str(path))
    assert r.returncode == 4 and "exists and is not a socket (not replacing it)" in r.stderr
    assert path.read_text() == "keep me"


def test_serve_refuses_a_missing_directory(tmp_path: Path) -> None:
    r = run("serve", "--unix", str(tmp_path / "absent" / "s.sock"))
    assert r.returncode == 4
    assert r.stderr == (f"octopus serve: cannot listen on unix://{tmp_path}/absent/s.sock: "
                        f"the directory {tmp_path}/absent does not exist\n")


@pytest.mark.parametrize("uvloop", [True, False])
def test_serve_refuses_a_port_in_use(server: ServerProcess, uvloop: bool) -> None:
    flags = [] if uvloop else ["--no-uvloop"]
    r = run("serve", "--port", str(server.port), *flags)
    assert r.returncode == 4
    assert r.stderr == (f"octopus serve: tcp://127.0.0.1:{server.port} is in use (another "
                        "server?); stop it or choose another --port\n")
    assert server.alive


@pytest.mark.parametrize("port", ["70000", "65536", "-1", "http"])
def test_serve_checks_the_port_range(port: str) -> None:
    r = run("serve", "--port", port)
    assert r.returncode == 2 and "argument --port:" in r.stderr


def test_serve_refuses_remote_without_flag_and_password() -> None:
    r = run("serve", "--host", "0.0.0.0", "--port", "0")
    assert r.returncode == 2 and "--allow-remote" in r.stderr
    r = run("serve", "--host", "0.0.0.0", "--port", "0", "--allow-remote")
    assert r.returncode == 2 and "--requirepass" in r.stderr


def test_serve_loads_knowledge_base_files_before_serving(tmp_path: Path) -> None:
    good = tmp_path / "drivers.pl"
    good.write_text("driver_for(0x8086, e1000n).\n")
    srv = ServerProcess(tmp_path, "--load", str(good))
    try:
        assert srv.alive
        assert f"loaded {good}" in srv.log.read_text()
    finally:
        srv.stop()
    bad = tmp_path / "broken.pl"
    bad.write_text("driver_for(0x8086, e1000n.\n")
    r = run("serve", "--port", "0", "--load", str(bad))
    assert r.returncode == 4 and r.stderr.startswith("octopus serve: KnowledgeBaseError:")


def test_serve_without_swi_prolog_says_what_to_install(tmp_path: Path) -> None:
    # A pip user's environment with no SWI-Prolog: nothing recorded in the venv (sys.prefix
    # points elsewhere), no $SWIPL, an empty cache, no swipl on PATH.
    env = {k: v for k, v in python_env().items()
           if k not in ("SWI_HOME_DIR", "SWIPL", "LD_LIBRARY_PATH")}
    env.update(XDG_CACHE_HOME=str(tmp_path), PATH="/usr/bin:/bin")
    if any(os.path.exists(f"{d}/swipl") for d in ("/usr/bin", "/bin")):
        pytest.skip("a system swipl is on PATH")
    code = ("import sys; sys.prefix = sys.argv[1]; from octopus.cli import main; "
            "sys.exit(main(['serve', '--port', '0']))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                       text=True, timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 4 and "Traceback" not in r.stderr
    assert r.stderr.startswith("octopus serve: no SWI-Prolog >= 9.1.12 found")
    assert "--no-binary janus-swi janus-swi" in r.stderr and "make setup" in r.stderr


# --- the parser --------------------------------------------------------------------------------


def _parsers(parser: argparse.ArgumentParser, path: str = "octopus"
             ) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out += _parsers(child, f"{path} {name}")
    return out


def test_every_flag_has_help() -> None:
    parsers = _parsers(build_parser())
    assert len(parsers) > 10
    for path, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{path} {action.option_strings or action.dest} has no help"


def test_version_and_help() -> None:
    r = run("--version")
    assert (r.returncode, r.stdout) == (0, f"octopus {octopus.__version__}\n")
    r = run("--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert ("exit status: 0 success/found/true, 1 not found/false (also a wait that timed "
            "out), 2 usage") in text and "3 cannot connect" in text
    r = run("get", "--help")
    assert r.returncode == 0 and "exit status" in r.stdout and "0x2A" in r.stdout


def test_demo_graph_without_matplotlib(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['matplotlib'] = None; from octopus.cli import main; "
            "sys.exit(main(['demo', '--graph', sys.argv[1]]))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "boot.png")],
                       capture_output=True, text=True, timeout=60, env=python_env())
    assert r.returncode == 4 and "Traceback" not in r.stderr
    assert r.stderr == ("octopus demo: --graph needs matplotlib: pip install matplotlib "
                        "(or octopus[demo])\n")
    assert not (tmp_path / "boot.png").exists()


def test_serve_session_flags_bound_what_clients_ask(tmp_path: Path) -> None:
    import redis

    srv = ServerProcess(tmp_path, "--session-timeout", "1.5", "--max-session-timeout", "2",
                        "--session-replay-bytes", "1000", "--max-triggers", "1")
    try:
        r = redis.Redis(unix_socket_path=srv.socket, protocol=3)
        assert r.execute_command("SESSION")[b"timeout_ms"] == 1500
        assert r.execute_command("SESSION", "TIMEOUT", "30")[b"timeout_ms"] == 2000
        r.execute_command("WATCH", "a", "SET")
        with pytest.raises(redis.ResponseError, match="LimitExceeded"):
            r.execute_command("WATCH", "b", "SET")
        r.close()
    finally:
        srv.stop()


@pytest.mark.parametrize(("flags", "message"), [
    (["--session-timeout", "9", "--max-session-timeout", "5"], "is more than"),
    (["--session-timeout", "0"], "argument --session-timeout:"),
    (["--max-session-timeout", "inf"], "argument --max-session-timeout:"),
    (["--session-replay-bytes", "-1"], "argument --session-replay-bytes:"),
])
def test_serve_session_flags_are_checked(flags: list[str], message: str) -> None:
    r = run("serve", "--port", "0", *flags)
    assert r.returncode == 2 and message in r.stderr

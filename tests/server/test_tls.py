"""TLS end to end: ``octopus serve --tls-cert/--tls-key[/--tls-ca]`` in a real process,
reached with ``rediss://`` by the threaded client, the asyncio client, the CLI and
redis-py; mutual TLS; what is refused, and how (docs/server.md, *TLS*). Certificates
are made for the module by the ``openssl`` command (tests/server/certs.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import octopus
from octopus.errors import EngineClosed
from octopus.events import Event
from octopus.server.client_base import tls_context
from octopus.server.server import exposure_error
from octopus.server.tls import client_context

from .certs import Certs, make_certs
from .conftest import ROOT, ServerProcess, python_env


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("tls"), "--tls-cert", certs.server,
                        "--tls-key", certs.server_key)
    yield srv
    assert srv.alive, "the server died during the module's tests"
    srv.stop()


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory,
                certs: Certs) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("mtls"), "--tls-cert", certs.server,
                        "--tls-key", certs.server_key, "--tls-ca", certs.ca, "--no-uvloop")
    yield srv
    assert srv.alive, "the server died during the module's tests"
    srv.stop()


def url(srv: ServerProcess, host: str = "localhost", **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"rediss://{host}:{srv.port}" + (f"?{query}" if query else "")


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "octopus", *args], capture_output=True,
                       text=True, timeout=timeout, env=python_env(), cwd=ROOT)
    assert "Traceback" not in r.stderr, r.stderr
    return r


# --- the clients over TLS ----------------------------------------------------------------


def test_threaded_client_over_tls(tls_server: ServerProcess, certs: Certs) -> None:
    with octopus.connect(url(tls_server, ssl_ca_certs=certs.ca)) as c:
        assert c._sock.version() in ("TLSv1.2", "TLSv1.3")
        rec = c.set("tls.a { x: 1 }")
        assert c.get("tls.a") == rec
        # A reply much larger than one TLS record (16 KiB) arrives whole.
        big = "y" * 300_000
        c.set("tls.big { s: %s }", big)
        assert c.get("tls.big").attributes["s"] == big
    # The IP address is in the certificate too.
    with octopus.connect(url(tls_server, "127.0.0.1", ssl_ca_certs=certs.ca)) as c:
        assert c.exists("tls.a")


def test_threaded_client_sends_and_receives_at_once(tls_server: ServerProcess,
                                                    certs: Certs) -> None:
    # The reader thread decrypts replies and events while four threads encrypt requests:
    # the TLS state must never be used by two threads at once (the test would see a
    # corrupt stream, an SSLError or a hang).
    events: list[Event] = []
    with octopus.connect(url(tls_server, ssl_ca_certs=certs.ca)) as c:
        c.watch("r'^tls\\.conc\\.'", events.append)

        def writer(k: int) -> None:
            for i in range(150):
                c.set(f"tls.conc.{k} {{ i: %d, pad: %s }}", i, "p" * (i * 97))

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert c.flush(30)
        assert len(events) == 600
        assert c.get("tls.conc.3").attributes["i"] == 149


def test_async_client_over_tls(tls_server: ServerProcess, certs: Certs) -> None:
    async def main() -> None:
        c = await octopus.connect_async(url(tls_server, ssl_ca_certs=certs.ca))
        async with c:
            await c.set("tls.async { n: 2 }")
            assert (await c.get("tls.async")).attributes == {"n": 2}
        ctx = client_context(certs.ca)
        c = await octopus.connect_async(url(tls_server), ssl_context=ctx)
        async with c:
            assert await c.exists("tls.async")

    asyncio.run(main())


def test_redis_py_over_tls(tls_server: ServerProcess, certs: Certs) -> None:
    redis = pytest.importorskip("redis")
    r = redis.Redis(host="localhost", port=tls_server.port, ssl=True, ssl_ca_certs=certs.ca)
    try:
        assert r.ping() is True
        r.execute_command("SET", "tls.redispy { v: 'ok' }")
        assert b"'ok'" in r.execute_command("GET", "tls.redispy")
    finally:
        r.close()
    r = redis.Redis.from_url(f"rediss://localhost:{tls_server.port}?ssl_ca_certs={certs.ca}")
    try:
        assert r.ping() is True
    finally:
        r.close()


def test_the_server_certificate_is_checked(tls_server: ServerProcess, certs: Certs) -> None:
    # The system's CAs do not know the test CA; another CA is no better.
    for bad in (url(tls_server), url(tls_server, ssl_ca_certs=certs.rogue_ca)):
        with pytest.raises(EngineClosed, match="CERTIFICATE_VERIFY_FAILED"):
            octopus.connect(bad, timeout=10)
    # Encrypted but unauthenticated, when asked for explicitly (redis-cli --insecure).
    with octopus.connect(url(tls_server, ssl_cert_reqs="none"), timeout=10) as c:
        assert c.exists("nothing") is False
    # The context given wins over the URL's options.
    with octopus.connect(url(tls_server, ssl_ca_certs=certs.rogue_ca),
                         ssl_context=client_context(certs.ca)) as c:
        assert c.exists("nothing") is False


def test_clear_text_and_tls_do_not_mix(tls_server: ServerProcess, certs: Certs,
                                       tmp_path: Path) -> None:
    # A clear-text client on the TLS port: refused, not hung.
    started = time.monotonic()
    with pytest.raises(EngineClosed):
        octopus.connect(f"tcp://127.0.0.1:{tls_server.port}", timeout=10)
    assert time.monotonic() - started < 15
    # A TLS client on a clear-text port: refused, not hung.
    plain = ServerProcess(tmp_path)
    try:
        with pytest.raises(EngineClosed):
            octopus.connect(f"rediss://127.0.0.1:{plain.port}?ssl_ca_certs={certs.ca}",
                            timeout=10)
    finally:
        plain.stop()
    assert tls_server.alive


def test_mutual_tls(mtls_server: ServerProcess, certs: Certs) -> None:
    good = url(mtls_server, ssl_ca_certs=certs.ca, ssl_certfile=certs.client,
               ssl_keyfile=certs.client_key)
    with octopus.connect(good) as c:
        c.set("mtls.a { ok: true }")
        assert c.get("mtls.a").attributes == {"ok": True}
    # No client certificate, or one of a CA the server does not trust: the session
    # never works (TLS 1.3 reports it at the first read, so the handshake may pass).
    for bad in (url(mtls_server, ssl_ca_certs=certs.ca),
                url(mtls_server, ssl_ca_certs=certs.ca, ssl_certfile=certs.rogue_client,
                    ssl_keyfile=certs.rogue_client_key)):
        with pytest.raises(EngineClosed), octopus.connect(bad, timeout=10) as c:
            c.exists("mtls.a")
    redis = pytest.importorskip("redis")
    r = redis.Redis(host="localhost", port=mtls_server.port, ssl=True, ssl_ca_certs=certs.ca,
                    ssl_certfile=certs.client, ssl_keyfile=certs.client_key)
    try:
        assert r.ping() is True
    finally:
        r.close()


def test_cli_over_tls(mtls_server: ServerProcess, certs: Certs) -> None:
    base = ["--url", url(mtls_server), "--tls-ca", certs.ca]
    r = run("set", "cli.tls { n: %d }", "0x10", *base, "--tls-cert", certs.client,
            "--tls-key", certs.client_key)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "cli.tls { n: 16 }"
    r = run("exists", "cli.tls", *base)               # no client certificate
    assert r.returncode == 3
    r = run("exists", "x", "--url", "tcp://127.0.0.1:1", "--tls-ca", certs.ca)
    assert r.returncode == 2 and "need a rediss:// URL" in r.stderr
    r = run("exists", "x", "--url", url(mtls_server), "--tls-ca", "/nonexistent.pem")
    assert r.returncode == 2 and "cannot load the TLS files" in r.stderr


# --- what serve refuses ----------------------------------------------------------------------


def test_serve_refuses_bad_tls_flags(certs: Certs, tmp_path: Path) -> None:
    r = run("serve", "--port", "0", "--tls-key", certs.server_key)
    assert r.returncode == 2 and "need --tls-cert" in r.stderr
    r = run("serve", "--unix", str(tmp_path / "s.sock"), "--tls-cert", certs.server,
            "--tls-key", certs.server_key)
    assert r.returncode == 2 and "TLS is for TCP" in r.stderr
    r = run("serve", "--port", "0", "--tls-cert", str(tmp_path / "absent.pem"))
    assert r.returncode == 4 and "cannot load the TLS certificate" in r.stderr
    # A key that is not the certificate's.
    r = run("serve", "--port", "0", "--tls-cert", certs.server, "--tls-key", certs.client_key)
    assert r.returncode == 4 and "cannot load the TLS certificate" in r.stderr


@pytest.mark.parametrize(("host", "password", "tls", "client_certs", "remote", "cleartext",
                          "refused"), [
    ("127.0.0.1", None, False, False, False, False, None),
    ("::1", "pw", False, False, False, False, None),
    ("localhost", "pw", False, False, False, False, None),
    (None, None, False, False, False, False, None),
    ("0.0.0.0", "pw", True, False, False, False, "--allow-remote"),
    ("0.0.0.0", None, False, False, True, False, "--requirepass or client certificates"),
    ("0.0.0.0", None, True, False, True, False, "--requirepass or client certificates"),
    ("0.0.0.0", "pw", False, False, True, False, "clear text"),
    ("10.1.2.3", "pw", True, False, True, False, None),
    ("0.0.0.0", None, True, True, True, False, None),
    ("0.0.0.0", "pw", False, False, True, True, None),
])
def test_exposure_rules(host: str | None, password: str | None, tls: bool,
                        client_certs: bool, remote: bool, cleartext: bool,
                        refused: str | None) -> None:
    why = exposure_error(host, password=password, tls=tls, client_certs=client_certs,
                         allow_remote=remote, allow_cleartext=cleartext)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why


def test_serve_refuses_a_clear_text_password_on_the_network() -> None:
    r = run("serve", "--host", "0.0.0.0", "--port", "0", "--allow-remote",
            "--requirepass", "pw")
    assert r.returncode == 2
    assert "refusing to take --requirepass in clear text" in r.stderr
    assert "--unsafe-allow-cleartext" in r.stderr


def _serves(*args: str, expect: str) -> str:
    """Start ``serve`` with ``args``, wait for its 'serving on' line, stop it; its log."""
    proc = subprocess.Popen([sys.executable, "-m", "octopus", "serve", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=python_env(), cwd=ROOT)
    lines: list[str] = []
    assert proc.stderr is not None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "serving on" in line:
                break
        assert any(expect in line for line in lines), "".join(lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[1]
    return "".join(lines) + out


def test_serve_on_the_network_with_tls_or_the_unsafe_flag(certs: Certs) -> None:
    log = _serves("--host", "0.0.0.0", "--port", "0", "--allow-remote", "--requirepass",
                  "pw", "--tls-cert", certs.server, "--tls-key", certs.server_key,
                  expect="serving on rediss://0.0.0.0:")
    assert "UNSAFE" not in log
    # Client certificates authenticate: no password needed.
    _serves("--host", "0.0.0.0", "--port", "0", "--allow-remote", "--tls-cert",
            certs.server, "--tls-key", certs.server_key, "--tls-ca", certs.ca,
            expect="serving on rediss://0.0.0.0:")
    log = _serves("--host", "0.0.0.0", "--port", "0", "--allow-remote", "--requirepass",
                  "pw", "--unsafe-allow-cleartext", expect="serving on tcp://0.0.0.0:")
    assert "WARNING octopus.server: UNSAFE: the password and all data cross the network " \
           "in clear text" in log


def test_tls_context_from_a_url(certs: Certs) -> None:
    assert tls_context("tcp://h:1") is None
    assert tls_context("unix:///x.sock") is None
    ctx = tls_context(f"rediss://h:1?ssl_ca_certs={certs.ca}")
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    ctx = tls_context("rediss://h:1?ssl_cert_reqs=none")
    assert ctx is not None and ctx.verify_mode == ssl.CERT_NONE
    ctx = tls_context(f"rediss://h:1?ssl_ca_certs={certs.ca}&ssl_check_hostname=false")
    assert ctx is not None and not ctx.check_hostname
    with pytest.raises(octopus.QueryError, match="ssl_cert_reqs must be required or none"):
        tls_context("rediss://h:1?ssl_cert_reqs=maybe")
    with pytest.raises(FileNotFoundError):
        tls_context("rediss://h:1?ssl_ca_certs=/nonexistent.pem")
    assert os.path.exists(certs.ca)

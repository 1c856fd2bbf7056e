"""Server URLs: the schemes, credentials in the URL (``redis://:pass@host``,
``redis://user:pass@host``, ``unix:///path?password=``), options, and a password that
never shows in a message or a repr (docs/server.md, *The Python client*)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import octopus
from octopus.errors import EngineClosed, QueryError
from octopus.server.client_base import AuthenticationError, parse_url, redact_url, url_options

from .conftest import ROOT, ServerProcess, python_env

SECRET = "s3cr%t:@/"                       # needs quoting in a URL
QUOTED = "s3cr%25t%3A%40%2F"


@pytest.mark.parametrize(("url", "address"), [
    ("tcp://h:7000", ("tcp", ("h", 7000))),
    ("redis://h", ("tcp", ("h", 6380))),
    ("rediss://h:6390", ("tls", ("h", 6390))),
    ("redis://:pw@h:1", ("tcp", ("h", 1))),
    ("redis://user:pw@[::1]:2", ("tcp", ("::1", 2))),
    ("unix:///run/o.sock", ("unix", "/run/o.sock")),
    ("unix://:pw@/run/o.sock", ("unix", "/run/o.sock")),
    ("unix:///run/o.sock?password=pw", ("unix", "/run/o.sock")),
])
def test_parse_url(url: str, address: tuple[str, object]) -> None:
    assert parse_url(url) == address


@pytest.mark.parametrize(("url", "options"), [
    ("tcp://h:1", {}),
    ("redis://:pw@h", {"password": "pw"}),
    ("redis://bob:pw@h", {"username": "bob", "password": "pw"}),
    ("redis://bob@h", {"username": "bob"}),
    (f"redis://:{QUOTED}@h", {"password": SECRET}),
    ("unix:///s.sock?password=pw&username=bob", {"password": "pw", "username": "bob"}),
    ("rediss://h?ssl_ca_certs=/ca.pem&ssl_cert_reqs=none",
     {"ssl_ca_certs": "/ca.pem", "ssl_cert_reqs": "none"}),
])
def test_url_options(url: str, options: dict[str, str]) -> None:
    assert url_options(url) == options


def test_url_options_refused() -> None:
    with pytest.raises(QueryError, match="unknown option 'db'"):
        url_options("redis://h?db=0")
    with pytest.raises(QueryError, match="needs a rediss:// \\(TLS\\) URL"):
        url_options("redis://h?ssl_ca_certs=/ca.pem")
    with pytest.raises(QueryError, match="unsupported server URL 'ftp://u:\\*\\*\\*@h'"):
        parse_url("ftp://u:pw@h")
    # Every URL of a cluster's list is checked before connecting, not at fail-over.
    with pytest.raises(QueryError, match="unknown option 'db'"):
        octopus.connect("tcp://127.0.0.1:1,tcp://h:2?db=0")


def test_redact_url() -> None:
    assert redact_url("redis://:pw@h:1") == "redis://:***@h:1"
    assert redact_url("redis://bob:pw@h:1") == "redis://bob:***@h:1"
    assert redact_url("redis://bob@h:1") == "redis://bob@h:1"
    assert redact_url("unix:///s.sock?password=pw&username=bob") == \
        "unix:///s.sock?password=***&username=bob"
    assert redact_url("tcp://h:1") == "tcp://h:1"


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("pw"), "--requirepass", SECRET)
    yield srv
    assert srv.alive
    srv.stop()


def test_password_in_the_url(locked: ServerProcess) -> None:
    port = locked.port
    for url in (f"tcp://:{QUOTED}@127.0.0.1:{port}",
                f"redis://default:{QUOTED}@127.0.0.1:{port}",
                f"unix://{locked.socket}?password={QUOTED}"):
        with octopus.connect(url) as c:
            assert c.exists("nothing") is False
            assert SECRET not in repr(c) and QUOTED not in repr(c)
    # The explicit argument wins over the URL's.
    with octopus.connect(f"tcp://:wrong@127.0.0.1:{port}", password=SECRET) as c:
        assert c.exists("nothing") is False

    async def main() -> None:
        c = await octopus.connect_async(f"redis://:{QUOTED}@127.0.0.1:{port}")
        async with c:
            assert await c.exists("nothing") is False

    asyncio.run(main())


def test_a_wrong_password_in_the_url_is_refused_and_not_shown(locked: ServerProcess) -> None:
    with pytest.raises(AuthenticationError) as info:
        octopus.connect(f"tcp://:hunter2@127.0.0.1:{locked.port}")
    assert "hunter2" not in str(info.value)
    with pytest.raises(AuthenticationError):           # a password is needed
        octopus.connect(f"tcp://127.0.0.1:{locked.port}")


def test_a_failed_connection_does_not_show_the_password(tmp_path: Path) -> None:
    with pytest.raises(EngineClosed) as info:
        octopus.connect(f"unix://{tmp_path}/absent.sock?password=hunter2")
    assert "hunter2" not in str(info.value) and "password=***" in str(info.value)


def test_cli_takes_the_password_from_the_url(locked: ServerProcess) -> None:
    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "octopus", *args], capture_output=True,
                              text=True, timeout=60, env=env or python_env(), cwd=ROOT)

    r = run("exists", "x", "--url", f"redis://:{QUOTED}@127.0.0.1:{locked.port}")
    assert r.returncode == 1, r.stderr
    # The URL's password wins over $OCTOPUS_PASSWORD, --password over both.
    env = python_env() | {"OCTOPUS_PASSWORD": "wrong"}
    r = run("exists", "x", "--url", f"unix://{locked.socket}?password={QUOTED}", env=env)
    assert r.returncode == 1, r.stderr
    r = run("exists", "x", "--url", f"redis://:hunter2@127.0.0.1:{locked.port}",
            "--password", SECRET)
    assert r.returncode == 1, r.stderr
    r = run("exists", "x", "--url", f"redis://:hunter2@127.0.0.1:{locked.port}")
    assert r.returncode == 3 and "refused the password" in r.stderr
    assert "hunter2" not in r.stderr

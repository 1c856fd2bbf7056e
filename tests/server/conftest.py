"""Real servers in real processes: ``octopus serve`` started per module (or per test where
a test kills or floods one), reached over a Unix socket and TCP on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    """``python -m octopus serve`` on a Unix socket and an ephemeral TCP port."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.dir = tmp
        self.socket = str(tmp / "octopus.sock")
        self.log = tmp / "server.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "octopus", "serve", "--unix", self.socket,
             "--host", "127.0.0.1", "--port", "0", *extra],
            stdout=subprocess.DEVNULL, stderr=self.log.open("wb"), cwd=ROOT)
        deadline = time.monotonic() + 60
        while True:
            text = self.log.read_text(errors="replace")
            m = re.search(r"serving on (\S+) (?:tcp|rediss)://127\.0\.0\.1:(\d+)", text)
            if m:
                self.port = int(m.group(2))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start:\n{text}")
            time.sleep(0.05)
        self.unix_url = f"unix://{self.socket}"
        self.tcp_url = f"tcp://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("server"))
    yield srv
    assert srv.alive, "the server died during the module's tests"
    srv.stop()


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env

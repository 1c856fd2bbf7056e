"""Every ```` ```python ```` block of README.md and docs/ runs, in its own process, as a
reader would paste it, unless the line before it says why it cannot
(``<!-- not run: needs an etcd cluster -->``, invisible on GitHub and on the site).

A block that talks to a server (``octopus.connect("unix:///....sock")``) runs against a
real ``octopus serve``, whose socket replaces the one written in the block. docs/api.md
is generated from the docstrings; its blocks are signatures, not programs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md",
         *(p for p in sorted((ROOT / "docs").glob("*.md")) if p.name != "api.md")]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\n\Z")
SOCKET_URL = re.compile(r'"unix://(/[^"]+\.sock)"')


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    code: str
    not_run: str | None          # why it does not run

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            before = text[:m.start()]
            reason = NOT_RUN.search(before)
            found.append(Block(str(page.relative_to(ROOT)), before.count("\n") + 1,
                               m.group(1), reason.group(1) if reason else None))
    return found


BLOCKS = blocks()
RUN = [b for b in BLOCKS if b.not_run is None]


def test_most_blocks_run() -> None:
    assert len(RUN) >= 6 and len(RUN) > len(BLOCKS) - len(RUN)
    for b in BLOCKS:
        assert b.not_run is None or len(b.not_run) > 10, f"{b.id}: say why it cannot run"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server; yields its socket path."""
    tmp = tmp_path_factory.mktemp("blocks")
    sock = str(tmp / "octopus.sock")
    proc = subprocess.Popen([sys.executable, "-m", "octopus", "serve", "--unix", sock],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp)
    deadline = time.monotonic() + 60
    while not os.path.exists(sock):
        assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield sock
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    code = block.code
    if SOCKET_URL.search(code):
        sock = request.getfixturevalue("server")
        code = SOCKET_URL.sub(f'"unix://{sock}"', code)
    # Relative paths (`prolog/device_db.pl`) are the repository's, as from a checkout;
    # whatever the block writes (`var/octopus`) goes to its own directory.
    (tmp_path / "prolog").symlink_to(ROOT / "prolog")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, f"{block.id} failed:\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr

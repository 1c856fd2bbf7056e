"""Every program in examples/ runs, as a user would run it, in its own process from a
directory outside the checkout, and prints what its docstring promises."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TESTED = {"embedding.py", "knowledge_base.py", "locks_across_processes.py",
          "server_redis_cli.sh"}


def run(tmp_path: Path, *command: str, timeout: float = 300) -> str:
    env = dict(os.environ)
    # The `octopus` command of this environment first on PATH, as after
    # `source .venv/bin/activate`.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    r = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0, f"{command} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    return r.stdout


def test_every_example_is_tested() -> None:
    programs = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh")}
    assert programs == TESTED
    # Every other file (a knowledge base, a config file) is read by a tested program or a
    # test, so none can rot unseen.
    readers = "\n".join(p.read_text(encoding="utf-8") for p in
                        [*(EXAMPLES / name for name in TESTED),
                         *EXAMPLES.parent.joinpath("tests").rglob("*.py")])
    data = [p for p in EXAMPLES.rglob("*") if p.is_file() and p.name not in TESTED
            and "__pycache__" not in p.parts]
    assert data
    for path in data:
        assert path.name in readers, f"examples/{path.relative_to(EXAMPLES)} is used by nothing"


def test_embedding(tmp_path: Path) -> None:
    out = run(tmp_path, sys.executable, str(EXAMPLES / "embedding.py")).splitlines()
    assert "found: hw.pci.device.0 0x100e" in out
    assert "names: ['hw.pci.device.0', 'hw.pci.device.1']" in out
    assert "compare-and-set refused: value is 2" in out
    assert ("event: ON_SET hw.pci.device.0 { class: 'C', device_id: 4110, vendor: 32902 }"
            in out)
    assert not [line for line in out if "hw.pci.device.1" in line and "event" in line]
    assert any(line.startswith("holding the printer lock, fencing token ") for line in out)


def test_knowledge_base(tmp_path: Path) -> None:
    out = run(tmp_path, sys.executable, str(EXAMPLES / "knowledge_base.py")).splitlines()
    assert out == ["on floor 1: printer1", "on floor 1: scanner1", "printer2 is on floor 2",
                   "hw.pci.device.0: driver e1000n"]


def test_locks_across_processes(tmp_path: Path) -> None:
    out = run(tmp_path, sys.executable, str(EXAMPLES / "locks_across_processes.py"))
    assert out == ("workers exited with [-9, 0, 0, 0]; counter = 100 (expected 100); "
                   "lock free after the crash: True\n")


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli not installed")
def test_server_redis_cli(tmp_path: Path) -> None:
    out = run(tmp_path, str(EXAMPLES / "server_redis_cli.sh")).splitlines()
    record0 = "hw.pci.device.0 { class: 'C', device_id: 4110, vendor: 32902 }"
    record1 = "hw.pci.device.1 { class: 'C', device_id: 33128, vendor: 4332 }"
    # redis-cli's SET answers OK (Redis's convention); octopus get prints record1.
    assert out.count(record0) == 2 and out.count(record1) == 1 and "OK" in out
    assert "hw.pci.device.0: found" in out
    assert "hw.pci.device.9: not found (exit status 1)" in out
    assert out[-1] == "records:1"

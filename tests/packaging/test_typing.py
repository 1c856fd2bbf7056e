"""The type check: `make test` runs `make typecheck` (mypy --strict over octopus/, with
the stubs of typings/ for the untyped libraries), and those stubs describe the installed
libraries. The type check itself is the make target; these tests keep it wired in and
keep the stubs honest (mypy trusts a stub; mypy.stubtest compares it with the library)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from octopus._prolog import find_swipl_home

ROOT = Path(__file__).resolve().parents[2]


def test_make_test_runs_the_strict_type_check() -> None:
    makefile = (ROOT / "Makefile").read_text()
    prerequisites = re.search(r"^test:(.*)$", makefile, re.M)
    assert prerequisites is not None and "typecheck" in prerequisites.group(1).split()
    recipe = re.search(r"^typecheck:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe is not None and "-m mypy" in recipe.group(1)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    assert config["files"] == ["octopus"]
    assert config["mypy_path"] == "typings"
    test_extras = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]["test"]
    assert any(re.fullmatch(r"mypy==[\d.]+", dep) for dep in test_extras), \
        "pin mypy: a new release may report what this one accepts"


def test_the_stubs_match_the_installed_libraries(tmp_path: Path) -> None:
    # In a subprocess: stubtest imports janus_swi, which starts SWI-Prolog.
    env = {**os.environ, "MYPYPATH": str(ROOT / "typings"),
           "SWI_HOME_DIR": find_swipl_home()}
    # The stubbed packages (stubtest checks their submodules too).
    stubs = sorted(p.parent.name for p in (ROOT / "typings").glob("*/__init__.pyi"))
    assert stubs == ["janus_swi", "ply"]
    # --ignore-missing-stub: a stub declares only what octopus uses; what it declares
    # must exist in the library with a compatible signature.
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", *stubs, "--ignore-missing-stub"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

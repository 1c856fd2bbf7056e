"""Run the plunit suites in tests/prolog/ with the provisioned swipl."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from octopus._prolog import find_swipl_home

HERE = Path(__file__).resolve().parent


def swipl() -> str:
    home = Path(find_swipl_home())
    found = sorted(home.glob("bin/*/swipl"))
    if not found:
        pytest.fail(f"no swipl binary under {home}")
    return str(found[0])


@pytest.mark.parametrize("suite", sorted(p.name for p in HERE.glob("test_*.pl")))
def test_plunit_suite(suite: str) -> None:
    result = subprocess.run(
        [swipl(), "-q", "--no-packs", "-g", "run_tests", "-t", "halt", str(HERE / suite)],
        capture_output=True, text=True, timeout=120, env={"HOME": "/nonexistent"})
    assert result.returncode == 0, result.stdout + result.stderr

"""The installed layout: what the wheel ships and that the package works from it.

The full check (build the wheel, install it into a fresh venv, run it from outside the
checkout) is scripts/wheel-smoke.sh, run by `make test`; these are the fast checks that
run with pytest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import octopus
from octopus import SetupError
from octopus.errors import SETUP_HINT

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_is_shipped() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "octopus").rglob("__init__.py")}
    assert found | {"octopus.prolog"} == listed


def test_every_prolog_file_and_py_typed_are_package_data() -> None:
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert PYPROJECT["tool"]["setuptools"]["package-dir"]["octopus.prolog"] == "prolog"
    assert data["octopus.prolog"] == ["*.pl"]
    assert list((ROOT / "prolog").glob("*.pl"))
    assert not [p for p in (ROOT / "prolog").iterdir() if p.suffix != ".pl"]
    assert data["octopus"] == ["py.typed"] and (ROOT / "octopus" / "py.typed").is_file()


def test_the_package_works_from_the_installed_layout(tmp_path: Path) -> None:
    # The layout a wheel installs: octopus/prolog/*.pl inside the package, no prolog/
    # beside it (the source checkout's layout). The engine must find its files there.
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "octopus", site / "octopus",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "prolog", site / "octopus" / "prolog")
    code = ("import octopus, sys; from pathlib import Path\n"
            "assert Path(octopus.__file__).is_relative_to(sys.argv[1]), octopus.__file__\n"
            "from octopus._prolog import runtime\n"
            "with octopus.Engine() as e:\n"
            "    e.set('x { a: 0x10 }'); print(e.get('_ { a: 16 }'))\n"
            "print(runtime().prolog_dir)\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    r = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["x { a: 16 }", str(site / "octopus" / "prolog")]


def test_a_package_without_its_prolog_files_says_so(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "octopus", site / "octopus",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code = "import octopus\ntry:\n    octopus.Engine()\nexcept octopus.SetupError as e:\n" \
           "    print(e)\n"
    env = dict(os.environ, PYTHONPATH=str(site))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("the Prolog files of octopus are missing")
    assert "reinstall" in r.stdout and "janus-swi" not in r.stdout


def test_setup_error_says_what_to_install() -> None:
    e = SetupError("no SWI-Prolog >= 9.1.12 found")
    assert e.reason == "no SWI-Prolog >= 9.1.12 found"
    assert str(e) == f"no SWI-Prolog >= 9.1.12 found\n{SETUP_HINT}"
    text = " ".join(SETUP_HINT.split())
    assert "SWI-Prolog >= 9.1.12" in text
    assert "pip install --force-reinstall --no-cache-dir --no-binary janus-swi janus-swi" in text
    assert "`make setup`" in text and "PATH" in text
    assert octopus.SetupError is SetupError and isinstance(e, octopus.OctopusError)


def test_the_octopus_command_is_in_the_environment() -> None:
    # The README says: after `make setup`, the command is .venv/bin/octopus (or `octopus`
    # after `source .venv/bin/activate`).
    command = Path(sys.prefix, "bin", "octopus")
    r = subprocess.run([str(command), "--version"], capture_output=True, text=True,
                       timeout=60, cwd="/")
    assert (r.returncode, r.stdout) == (0, f"octopus {octopus.__version__}\n")

"""The Dockerfile cannot be built where these tests run (no Docker engine; see
docs/install.md), so these read it: what it copies exists and is all the build needs,
what it runs is a valid `octopus` command line, and its base image is new enough."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from octopus.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "Dockerfile").read_text()
# Instructions with their continuation lines joined.
LINES = [line for line in re.sub(r"\\\n\s*", " ", TEXT).splitlines()
         if line.strip() and not line.lstrip().startswith("#")]


def instructions(name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in LINES if line.split(None, 1)[0] == name]


def test_base_image_is_swipl_new_enough_for_janus() -> None:
    (arg,) = instructions("ARG")
    version = arg.split("=", 1)[1]
    assert tuple(map(int, version.split("."))) >= (9, 1, 12)
    assert instructions("FROM") == ["swipl:${SWIPL_VERSION} AS build", "swipl:${SWIPL_VERSION}"]


def test_what_it_copies_exists_and_is_what_the_build_needs() -> None:
    copied = set()
    for args in instructions("COPY"):
        if args.startswith("--from="):
            continue
        *sources, _ = args.split()
        copied |= {s.rstrip("/") for s in sources}
    for source in copied:
        assert (ROOT / source).exists(), source
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["readme"] in copied
    package_dirs = pyproject["tool"]["setuptools"]["package-dir"]
    for package in pyproject["tool"]["setuptools"]["packages"]:
        top = package_dirs.get(package, package.replace(".", "/")).split("/")[0]
        assert top in copied, package
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not copied & ignored


def test_janus_is_built_against_the_image_swipl() -> None:
    (install,) = [r for r in instructions("RUN") if "pip install" in r]
    assert "--no-binary janus-swi" in install
    assert '".[server]"' in install


def test_what_it_runs_is_a_valid_command_line() -> None:
    (entrypoint,) = instructions("ENTRYPOINT")
    (cmd,) = instructions("CMD")
    assert json.loads(entrypoint) == ["octopus"]
    args = build_parser().parse_args(json.loads(cmd))
    assert (args.command, args.host, args.port, args.allow_remote) == (
        "serve", "0.0.0.0", 6380, True)
    assert args.requirepass is None        # the password comes from $OCTOPUS_PASSWORD
    (health,) = instructions("HEALTHCHECK")
    command = shlex.split(health.split(" CMD ", 1)[1].split(">")[0])
    assert command[0] == "octopus"
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.url) == ("info", "tcp://127.0.0.1:6380")
    assert "EXPOSE 6380" in LINES


def test_it_runs_as_an_unprivileged_user() -> None:
    assert instructions("USER") == ["octopus"]


@pytest.mark.parametrize("word", ["UNTESTED", "docs/install.md"])
def test_it_says_it_is_untested(word: str) -> None:
    assert word in TEXT

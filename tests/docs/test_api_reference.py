"""docs/api.md is generated from the code (scripts/api_reference.py) and must match it."""

from __future__ import annotations

import dataclasses
import enum
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import octopus

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "api_reference.py"
API = ROOT / "docs" / "api.md"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module         # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_api_md_is_up_to_date() -> None:
    current = API.read_text(encoding="utf-8") if API.exists() else ""
    assert current == generator().render(), \
        "docs/api.md is out of date with the code's signatures and docstrings: run `make docs`"


def test_every_public_name_has_an_entry() -> None:
    text = generator().render()
    for name in octopus.__all__:
        assert f"\n### {name}\n" in text, name


def test_the_output_does_not_depend_on_the_run() -> None:
    """Another process (another hash seed, other addresses) writes the same text."""
    out = subprocess.run([sys.executable, str(SCRIPT), "--stdout"], capture_output=True,
                         text=True, check=True, cwd=ROOT, env={"PYTHONHASHSEED": "12345",
                                                               "PATH": "/usr/bin:/bin"})
    assert out.stdout == generator().render()
    assert " at 0x" not in out.stdout


def test_check_mode_says_to_run_make_docs(tmp_path: Path) -> None:
    gen = generator()
    gen.OUTPUT = tmp_path / "api.md"
    gen.OUTPUT.write_text("stale\n", encoding="utf-8")
    gen.ROOT = tmp_path
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0


class Colour(enum.Flag):
    RED = 1
    BLUE = 2


@dataclasses.dataclass(frozen=True)
class Point:
    """A point."""

    y: int
    x: float | None = None


def test_signatures_and_defaults_are_stable_text() -> None:
    gen = generator()
    marker = object()

    def f(a: int, /, b: list[str], *args: object, c: Colour = Colour.RED | Colour.BLUE,
          d: object = marker, e: frozenset[int] = frozenset({3, 1, 2}), **kw: str) -> None:
        """Use :class:`~octopus.record.Record` and :meth:`Engine.get` with ``x``."""

    assert gen.signature(f) == (
        "(a: int, /, b: list[str], *args: object, c: Colour = Colour.RED | Colour.BLUE, "
        "d: object = <object object>, e: frozenset[int] = frozenset({1, 2, 3}), "
        "**kw: str) -> None")
    assert gen.docstring(f) == "Use `Record` and `Engine.get` with `x`."
    assert gen.signature(Point) == "(y: int, x: float | None = None) -> None"
    assert gen.members(Point, set()) == []          # not an octopus class: nothing listed
    gen.PACKAGE = __name__.split(".")[0]           # pretend these classes are ours
    assert [m.name for m in gen.members(Point, set())] == ["y", "x"]      # field order
    assert [m.name for m in gen.members(Colour, set())] == ["RED", "BLUE"]

"""Table-driven grammar tests fed by grammar/examples/."""

from __future__ import annotations

from pathlib import Path

import pytest

import octopus
from octopus.errors import ParseError
from octopus.query.parser import parse

EXAMPLES = Path(__file__).resolve().parents[2] / "grammar" / "examples"


def cases(name: str) -> list[tuple[str, str]]:
    rows = []
    for line in (EXAMPLES / name).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        source, _, expected = line.rpartition(" ⇒ ")
        if line.startswith("⇒ ") or line.startswith(" ⇒ "):
            source, expected = "", line.split("⇒ ", 1)[1]
        rows.append((source.replace("␤", "\n"), expected))
    return rows


@pytest.mark.parametrize(("source", "canonical"), cases("valid.txt"))
def test_valid_input_prints_canonically_and_round_trips(source: str, canonical: str) -> None:
    tree = parse(source)
    assert str(tree) == canonical
    again = parse(canonical)
    assert str(again) == canonical
    assert again.name == tree.name
    by_key = sorted(tree.constraints, key=lambda c: c.key)  # canonical order: stable by key
    assert list(again.constraints) == by_key


@pytest.mark.parametrize(("source", "where"), cases("invalid.txt"))
def test_invalid_input_is_refused_at_its_position(source: str, where: str) -> None:
    line, column = (int(n) for n in where.split(":"))
    with pytest.raises(ParseError) as info:
        parse(source)
    assert (info.value.line, info.value.column) == (line, column), info.value


@pytest.mark.parametrize(("source", "expected"), cases("records.txt"))
def test_records_as_stored(engine: octopus.Engine, source: str, expected: str) -> None:
    if expected.startswith("!"):
        with pytest.raises(getattr(octopus, expected[1:])):
            engine.set(source)
        assert engine.get_names("_") == []
    else:
        assert str(engine.set(source)) == expected
        assert str(engine.get(expected.split(" ", 1)[0])) == expected


def test_example_files_are_not_empty() -> None:
    assert len(cases("valid.txt")) > 30
    assert len(cases("invalid.txt")) > 30

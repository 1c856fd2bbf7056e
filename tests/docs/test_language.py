"""Every example of docs/language.md runs against a real engine and shows what it says.

The examples are ```` ```octopus ```` blocks (format: tests/docs/examples.py). The other
tests here check the runner itself: a wrong example must fail, never pass by being
skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .examples import OPS, Example, ExampleSyntaxError, extract, run

ROOT = Path(__file__).resolve().parents[2]
LANGUAGE = ROOT / "docs" / "language.md"


def examples_of(path: Path) -> list[Example]:
    return extract(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


EXAMPLES = [example for path in sorted((ROOT / "docs").glob("*.md"))
            for example in examples_of(path)]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example(example: Example) -> None:
    run(example)


def test_the_language_guide_is_all_examples_that_run() -> None:
    """Every fenced block of the guide is an executed example, and there are many."""
    text = LANGUAGE.read_text(encoding="utf-8")
    fences = [m.group(1).split()[0] if m.group(1).split() else ""
              for m in re.finditer(r"^```(.*)$", text, re.M)][::2]
    assert fences and all(info == "octopus" for info in fences), fences
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    indented = [line for line in prose.splitlines() if line.startswith("    ")]
    assert not indented, f"an indented code block is an example that never runs: {indented}"
    steps = sum(len(e.steps) for e in examples_of(LANGUAGE))
    assert len(examples_of(LANGUAGE)) >= 25 and steps >= 200


def test_every_op_is_used_by_the_guide() -> None:
    used = {s.op for e in examples_of(LANGUAGE) for s in e.steps}
    assert used == set(OPS)


def one(block: str) -> Example:
    (example,) = extract(f"```octopus\n{block}\n```\n", "doc.md")
    return example


@pytest.mark.parametrize("block", [
    "set x { a: 1 }  ⇒ x { a: 2 }",                 # wrong record
    "set x { a: 1 }  ⇒ !QueryError",                # no error raised
    "set x { a: _ }  ⇒ x { a: 1 }",                 # unexpected error
    "set x { a: _ }  ⇒ !ParseError",                # another error class
    "set x { a: 01 }  ⇒ !QueryError",               # a subclass is not enough
    "set x { a: 01 }  ⇒ !ParseError at 1:9",        # wrong position
    "set x { a: _ }\nrevision  ⇒ 0",                # a line without ⇒ must succeed
    "names _ { a: %d } with (1,)  ⇒ [x]",
    "set x\nevents  ⇒ [set x]",                     # nobody watched
])
def test_a_wrong_example_fails(block: str) -> None:
    with pytest.raises(AssertionError):
        run(one(block))


@pytest.mark.parametrize("block", [
    "fetch x  ⇒ x {}",                              # unknown op
    "set[eventually] x  ⇒ x {}",                    # unknown option
    "get[sequential] x  ⇒ x {}",                    # option of another op
    "set x  ⇒ ",                                    # nothing expected
    "set x",                                        # a block that checks nothing
    "names _ { a: %d } with (1,  ⇒ []",             # bad parameters
    "revision now  ⇒ 0",                            # an op without text given one
    "get  ⇒ !ParseError",                           # an op with text given none
])
def test_a_malformed_example_is_refused(block: str) -> None:
    with pytest.raises(ExampleSyntaxError):
        one(block)


def test_block_options_and_unclosed_blocks() -> None:
    for bad in ["```octopus\nengine max_query_length=x\nset x  ⇒ x {}\n```\n",
                "```octopus\nengine colour=4\nset x  ⇒ x {}\n```\n",
                "```octopus\nset x\nengine max_query_length=4\nset x  ⇒ x {}\n```\n",
                # words after the language: Python-Markdown would not see the fence
                "```octopus max_query_length=4\nget abcde  ⇒ !QueryError\n```\n",
                "```octopus\nset x  ⇒ x {}\n"]:
        with pytest.raises(ExampleSyntaxError):
            extract(bad, "doc.md")
    (example,) = extract("```octopus\nengine max_query_length=4\nget abcde  ⇒ !QueryError\n"
                         "```\n", "doc.md")
    assert example.engine_options == {"max_query_length": 4}
    run(example)
    assert extract("```python\nnot an example\n```\n", "doc.md") == []


def test_a_right_example_passes() -> None:
    run(one("set x { a: 1 }\nwatch _ { a: _ }  ⇒ _ { a: _ }\nset y { a: 2 }  ⇒ y { a: 2 }\n"
            "delete y\nevents  ⇒ [set y, del y]\nget x { a: %d } with (1)  ⇒ x { a: 1 }"))

"""No call leaks what it returns (docs/guarantees.md §Concurrency model).

janus-swi 1.5.3 converts a Prolog pair to a Python tuple with one reference too many on
each element, so every reply shaped as a pair leaked its record (5.7 KB per get of a
20-attribute record). octopus/adapter.py never lets a pair cross; these tests count the
Python memory still allocated after many calls of each kind.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import pytest

import octopus

CALLS = 3000
ALLOWED_PER_CALL = 16      # bytes: far below one leaked attribute (≥ 50 B)

BIG = "hw.x { " + ", ".join(f"k{i}: '{chr(97 + i % 26) * 200}'" for i in range(20)) + \
      ", t: ethernet, n: 7 }"


def growth_per_call(call: Callable[[], object]) -> float:
    """Python memory kept per call: the smaller growth of two equal runs of calls after a
    first one. A leak grows in every run; a buffer janus (re)allocates once, or a cache
    warmed by the first run, in one at most."""
    tracemalloc.start()
    try:
        marks = []
        for _ in range(3):
            for _ in range(CALLS):
                call()
            gc.collect()
            marks.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    return min(marks[1] - marks[0], marks[2] - marks[1]) / CALLS


@pytest.fixture(scope="module")
def store() -> octopus.Engine:
    engine = octopus.Engine()
    engine.set(BIG)
    engine.set("hw.y { n: 7, t: ethernet }")
    engine.add_facts("pair(a-b). pair(c-'d'). deep(_{k: x-[1, y-2]}).")
    yield engine
    engine.close()


def cycle(engine: octopus.Engine) -> None:
    engine.delete("tmp")
    engine.set("tmp { t: ethernet, s: 'x' }")


@pytest.mark.parametrize(("what", "call"), [
    ("get by name", lambda e: e.get("hw.x")),
    ("get by query (one match)", lambda e: e.get("_ { k0: _ }")),
    ("get by query (first of two)", lambda e: e.get("_ { n: 7 }")),
    ("get_all", lambda e: e.get_all("_ { t: ethernet }")),
    ("get_names", lambda e: e.get_names("_")),
    ("exists", lambda e: e.exists("_ { t: ethernet }")),
    ("delete and set", cycle),
    ("knowledge base pairs and dicts", lambda e: e.prolog("pair(P) ; deep(P)")),
])
def test_no_call_leaks_its_reply(store: octopus.Engine, what: str,
                                 call: Callable[[octopus.Engine], object]) -> None:
    if what == "delete and set":
        store.set("tmp { t: ethernet }")
    per_call = growth_per_call(lambda: call(store))
    assert per_call < ALLOWED_PER_CALL, f"{what}: {per_call:.0f} bytes kept per call"


def test_errors_from_prolog_leak_nothing(store: octopus.Engine) -> None:
    def bad() -> None:
        with pytest.raises(octopus.QueryError):
            store.get_names("_ { k0: r'(' }")
    per_call = growth_per_call(bad)
    assert per_call < ALLOWED_PER_CALL, f"{per_call:.0f} bytes kept per error"

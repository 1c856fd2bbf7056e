"""Integers and floats compare by their exact values on every access path.

Python compares an int with a float exactly (``2**53 + 1 != float(2**53)``); so do the
Python-side trigger index and the Prolog store's hash index. Prolog's ``=:=`` and ``<``
convert the integer to a float, which made the same constraint true through a key scan
and false through the equality index. The property: for any stored number and any
number in a query, every path answers what Python's comparison answers.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

import octopus
from octopus import Event, Mode

ANCHORS = [2**53, 2**63, 2**64, 10**20, 2**100, 10**300]
ints = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from(ANCHORS).flatmap(lambda a: st.integers(a - 3, a + 3)),
    st.sampled_from(ANCHORS).flatmap(lambda a: st.integers(-a - 3, -a + 3)),
)
floats = st.one_of(
    ints.map(float),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(2**50, 2**52).map(lambda i: i + 0.5),       # fractions near 2**53
)
numbers = st.one_of(ints, floats)

OPS: dict[str, Callable[[object, object], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "!=": operator.ne, "==": operator.eq,
}


def ph(x: int | float) -> str:
    return "%d" if isinstance(x, int) else "%f"


@pytest.fixture(scope="module")
def shared() -> Iterator[octopus.Engine]:
    with octopus.Engine() as e:
        yield e


@given(stored=numbers, probe=numbers)
def test_every_access_path_compares_exactly(shared: octopus.Engine, stored: int | float,
                                            probe: int | float) -> None:
    engine = shared
    p = ph(probe)
    equal = stored == probe
    hit = ["r"] if equal else []

    seen: list[Event] = []
    by_index = engine.watch(f"_ {{ v: {p} }}", seen.append, probe, on=Mode.ON_SET)
    by_scan = engine.watch(f"_ {{ v >= {p}, v <= {p} }}", seen.append, probe, probe,
                           on=Mode.ON_SET)
    received: list[Event] = []
    sub = engine.subscribe(f"_ {{ v: {p} }}", received.append, probe)
    try:
        engine.set(f"r {{ v: {ph(stored)} }}", stored)
        engine.flush()
        fired = sorted(e.trigger_id for e in seen)
        assert fired == (sorted([by_index.id, by_scan.id]) if equal else []), "triggers"
        assert engine.publish(f"m {{ v: {ph(stored)} }}", stored) == int(equal)

        assert engine.get_names(f"r {{ v: {p} }}", probe) == hit, "exact name"
        assert engine.get_names(f"_ {{ v: {p} }}", probe) == hit, "equality index"
        assert engine.get_names(f"_ {{ v >= {p}, v <= {p} }}", probe, probe) == hit, "key scan"
        assert engine.exists(f"_ {{ v: {p} }}", probe) is equal
        for op, compare in OPS.items():
            expected = ["r"] if compare(stored, probe) else []
            assert engine.get_names(f"_ {{ v {op} {p} }}", probe) == expected, op
    finally:
        engine.remove_trigger(by_index)
        engine.remove_trigger(by_scan)
        engine.unsubscribe(sub)
        engine.flush()


@pytest.mark.parametrize(("stored", "probe"), [
    (2**53 + 1, float(2**53)),
    (float(2**53), 2**53 + 1),
    (2**64 + 1, float(2**64)),
    (10**20, 1e20),                 # 1e20 is exactly 10**20
    (2**53 + 1, 9007199254740992.5 - 0.5),
    (-(2**63) - 1, float(-(2**63))),
])
def test_big_integers_near_floats(engine: octopus.Engine, stored: int | float,
                                  probe: int | float) -> None:
    engine.set(f"r {{ v: {ph(stored)} }}", stored)
    expected = ["r"] if stored == probe else []
    assert engine.get_names(f"_ {{ v: {ph(probe)} }}", probe) == expected
    assert engine.get_names(f"_ {{ v >= {ph(probe)}, v <= {ph(probe)} }}", probe,
                            probe) == expected
    assert engine.get_names(f"r {{ v == {ph(probe)} }}", probe) == expected


@pytest.mark.parametrize(("stored", "probe"), [
    (2**63 - 1, float(2**63)),      # SWI-Prolog 9.2.9's integer/1 gives 2^63-1 for 2.0^63
    (2**63, float(2**63)),
    (float(2**63), 2**63),
    (float(2**64), 2**64),
    (-(2**63) - 1, float(-(2**63))),
])
def test_integers_around_2_to_the_63(engine: octopus.Engine, stored: int | float,
                                     probe: int | float) -> None:
    engine.set(f"r {{ v: {ph(stored)} }}", stored)
    expected = ["r"] if stored == probe else []
    assert engine.get_names(f"_ {{ v: {ph(probe)} }}", probe) == expected      # the index
    assert engine.get_names(f"r {{ v: {ph(probe)} }}", probe) == expected      # by name
    assert engine.get_names(f"_ {{ v >= {ph(probe)}, v <= {ph(probe)} }}", probe,
                            probe) == expected

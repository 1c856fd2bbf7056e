"""The shortcuts of the delta evaluation (prolog/rules_delta.pl): a change runs only
the generators of the keys it changed, a key read only with its record known has no
index, and a generator inside a negation may decide a row without checking it. Each
must still find every row: a key read through a join, a record's existence read
through a join, a negation with several ways to hold, a relation with several
variants."""

from __future__ import annotations

import pytest

import octopus
from octopus import Atom, InvariantViolated, Mode, RowEvent

JOINS = """
hot(Dev, T) :- attr(Dev, temp, T), T > 90.
degraded(Svc) :- attr(Svc, provider, P), attr(P, device, Dev), hot(Dev, _).
orphan(Drv) :- attr(Drv, device, Dev), \\+ record(Dev).
"""


def _rows(engine: octopus.Engine, events: list[RowEvent]) -> list[tuple[Mode, tuple]]:
    engine.flush()
    return [(e.mode, e.row) for e in events if e.row is not None]


def test_a_key_read_through_a_join_fires(engine: octopus.Engine) -> None:
    e = engine
    e.rules(JOINS)
    e.set_many([("dev0", {"temp": 40}), ("drv0", {"device": Atom("dev0")}),
                ("svc0", {"provider": Atom("drv0")}), ("stats", {"hits": 1})])
    events: list[RowEvent] = []
    e.watch_relation("degraded", events.append, on=Mode.ON_SET | Mode.ON_DEL)
    e.set("stats { hits: 2 }")                  # no rule reads it
    e.set("dev0 { temp: 41, label: x }")       # read, still not hot
    e.set("dev0 { temp: 95 }")                 # the service's record did not change
    e.set("dev0 { temp: 96 }")                 # still degraded: nothing new
    e.set("drv0 { device: dev1 }")             # the join breaks in the middle
    e.set("dev1 { temp: 99 }")
    e.delete("svc0")
    assert _rows(e, events) == [(Mode.ON_SET, (Atom("svc0"),)),
                                (Mode.ON_DEL, (Atom("svc0"),)),
                                (Mode.ON_SET, (Atom("svc0"),)),
                                (Mode.ON_DEL, (Atom("svc0"),))]


def test_an_invariant_refuses_through_a_join(engine: octopus.Engine) -> None:
    e = engine
    e.rules(JOINS)
    e.set_many([("dev0", {"temp": 40}), ("drv0", {"device": Atom("dev0")}),
                ("svc0", {"provider": Atom("drv0")})])
    e.invariant("cool_services", "v(S) :- degraded(S).")
    revision = e.revision
    with pytest.raises(InvariantViolated, match="S = svc0"):
        e.set("dev0 { temp: 95 }")
    assert e.revision == revision
    assert e.get("dev0")["temp"] == 40
    e.set("drv0 { device: dev1 }")
    e.set("dev0 { temp: 95 }")                 # no service depends on dev0 now
    with pytest.raises(InvariantViolated):
        e.set("drv0 { device: dev0 }")
    e.set("drv2 { device: dev0 }")             # no service uses drv2
    with pytest.raises(InvariantViolated, match="S = svc1"):
        e.set("svc1 { provider: drv2 }")


def test_existence_read_through_a_join_fires(engine: octopus.Engine) -> None:
    e = engine
    e.rules(JOINS)
    e.set_many([("dev0", {}), ("drv0", {"device": Atom("dev0")})])
    events: list[RowEvent] = []
    e.watch_rule("orphan(D)", events.append)
    e.delete("dev0")
    e.set("dev0 { temp: 1 }")
    assert _rows(e, events) == [(Mode.ON_SET, (Atom("drv0"),)),
                                (Mode.ON_DEL, (Atom("drv0"),))]


def test_a_negation_that_holds_several_ways(engine: octopus.Engine) -> None:
    # owned(X) is true while some owner of X is not off: one owner going off must not
    # make the row disappear (the negation shares Y, not in the row, with the rest).
    e = engine
    e.rules("owned(X) :- attr(Y, owner, X), \\+ attr(Y, off, _).")
    e.set_many([("y1", {"owner": Atom("x")}), ("y2", {"owner": Atom("x")})])
    events: list[RowEvent] = []
    e.watch_rule("owned(X)", events.append, existing=True)
    e.set("y1 { owner: x, off: true }")
    e.set("y2 { owner: x, off: true }")
    e.set("y1 { owner: x }")
    assert _rows(e, events) == [(Mode.ON_SET, (Atom("x"),)),
                                (Mode.ON_DEL, (Atom("x"),)),
                                (Mode.ON_SET, (Atom("x"),))]


def test_a_negation_in_one_of_two_variants(engine: octopus.Engine) -> None:
    e = engine
    e.rules("""
        free(X) :- attr(X, class, _), \\+ attr(_, device, X).
        free(X) :- attr(X, spare, yes).
    """)
    e.set_many([("d0", {"class": Atom("net"), "spare": Atom("yes")}),
                ("d1", {"class": Atom("net")})])
    events: list[RowEvent] = []
    e.watch_rule("free(X)", events.append, existing=True)
    e.set("drv0 { device: d0 }")               # d0 stays free: it is a spare
    e.set("drv1 { device: d1 }")
    e.set("drv0 { device: d1 }")
    e.delete("drv1")
    e.set("d0 { class: net }")                 # no longer a spare, and not driven
    assert _rows(e, events) == [(Mode.ON_SET, (Atom("d0"),)),
                                (Mode.ON_SET, (Atom("d1"),)),
                                (Mode.ON_DEL, (Atom("d1"),))]


def _guarded_keys(engine: octopus.Engine) -> list[str]:
    """The keys whose change is first tested by a guard (prolog/rules_delta.pl,
    guard_clause/6) before any evaluation starts."""
    from typing import Any

    from octopus._prolog import runtime

    rules = engine._core._rules
    assert rules is not None
    reply: Any = runtime().janus.query_once(
        "atom_string(_R, R), findall(_K, (_G = guard_key(_K, _, _, _), "
        "catch(clause(_R:_G, _), _, fail)), _L0), msort(_L0, L)",
        {"R": rules.prolog.module})
    return [str(k) for k in reply["L"]]


def test_a_guard_tests_the_changed_record_first_and_finds_every_row(
        engine: octopus.Engine) -> None:
    # hot/2 starts by testing the changed record's temperature: a change that is cool
    # before and after it starts no evaluation; one that crosses the threshold either
    # way, or removes the key, or gives it a value that is no number, is still seen.
    e = engine
    e.rules(JOINS)
    e.set_many([("dev0", {"temp": 40}), ("drv0", {"device": Atom("dev0")})])
    events: list[RowEvent] = []
    e.watch_rule("hot(D, T)", events.append, on=Mode.ON_SET | Mode.ON_DEL)
    e.watch_rule("orphan(D)", events.append)
    assert _guarded_keys(e) == ["temp"]        # device is read through a join: no guard
    e.set("dev0 { temp: 41 }")                 # cool before and after
    e.set("dev0 { temp: 95 }")                 # appears: the guard passes after
    e.set("dev0 { temp: 97 }")
    e.set("dev0 { temp: 50 }")                 # disappears: the guard passes before
    e.set("dev0 { temp: 'hot' }")              # no number: no row, no error
    e.set("dev0 { temp: 99 }")
    e.set("dev0 { label: x }")                 # the key removed
    e.set("dev1 { temp: 91 }")                 # a new record
    e.delete("dev1")
    assert _rows(e, events) == [
        (Mode.ON_SET, (Atom("dev0"), 95)),
        (Mode.ON_DEL, (Atom("dev0"), 95)), (Mode.ON_SET, (Atom("dev0"), 97)),
        (Mode.ON_DEL, (Atom("dev0"), 97)),
        (Mode.ON_SET, (Atom("dev0"), 99)),
        (Mode.ON_DEL, (Atom("dev0"), 99)),
        (Mode.ON_SET, (Atom("dev1"), 91)),
        (Mode.ON_DEL, (Atom("dev1"), 91))]


def test_a_guarded_invariant_refuses(engine: octopus.Engine) -> None:
    e = engine
    e.set_many([("dev0", {"temp": 40, "name": "b"})])
    e.invariant("cool", "v(D, T) :- attr(D, temp, T), T > 120.")
    e.invariant("names", 'v(D) :- attr(D, name, N), N @< "a".')
    assert _guarded_keys(e) == ["name", "temp"]
    e.set("dev0 { temp: 119, name: 'b' }")
    with pytest.raises(InvariantViolated, match="T = 121"):
        e.set("dev0 { temp: 121, name: 'b' }")
    with pytest.raises(InvariantViolated, match="cool"):
        e.set("dev1 { temp: 200 }")            # a new record
    with pytest.raises(InvariantViolated, match="names"):
        e.set("dev0 { temp: 1, name: 'A' }")
    assert e.get("dev0").attributes == {"temp": 119, "name": "b"}
    assert not e.exists("dev1")

"""Invariants: a write that would make a violation appear is refused atomically."""

from __future__ import annotations

import logging

import pytest

import octopus
from octopus import (
    Atom,
    ConditionFailed,
    InvariantViolated,
    Mode,
    RuleError,
    TriggerNotFound,
)
from octopus.events import Event

ONE_DRIVER = ("violation(Dev) :- attr(D1, device, Dev), attr(D2, device, Dev), "
              "D1 @< D2.")
NO_DANGLING = "violation(Drv) :- attr(Drv, device, Dev), \\+ record(Dev)."


def test_a_violating_set_changes_nothing_and_fires_nothing(engine: octopus.Engine) -> None:
    engine.invariant("one_driver", ONE_DRIVER)
    events: list[Event] = []
    engine.watch("_", events.append)
    rows: list[octopus.RowEvent] = []
    engine.watch_rule("attr(D, device, Dev)", rows.append)
    engine.set("drv0 { device: d0 }")
    revision = engine.revision
    with pytest.raises(InvariantViolated) as raised:
        engine.set("drv1 { device: d0 }")
    assert isinstance(raised.value, ConditionFailed)
    assert raised.value.invariant == "one_driver"
    assert raised.value.row == "Dev = d0"
    assert "one_driver" in str(raised.value) and "Dev = d0" in str(raised.value)
    assert engine.revision == revision
    assert engine.get_names("_") == ["drv0"]
    assert engine.prolog("attr(drv1, device, D)") == []
    engine.set("drv1 { device: d1 }")                 # other writes go on
    engine.flush()
    assert [e.record.name for e in events if e.record] == ["drv0", "drv1"]
    assert [r.row for r in rows] == [("drv0", "d0"), ("drv1", "d1")]


def test_a_replace_may_move_a_row_away(engine: octopus.Engine) -> None:
    engine.invariant("one_driver", ONE_DRIVER)
    engine.set_many([("drv0", {"device": Atom("d0")}), ("drv1", {"device": Atom("d1")})])
    engine.set("drv0 { device: d2 }")
    engine.set("drv1 { device: d0 }")
    with pytest.raises(InvariantViolated):
        engine.set("drv1 { device: d2 }")


def test_a_violating_delete_is_refused(engine: octopus.Engine) -> None:
    engine.set_many([("d0", {}), ("drv0", {"device": Atom("d0")})])
    engine.invariant("no_dangling", NO_DANGLING)
    with pytest.raises(InvariantViolated, match="Drv = drv0"):
        engine.delete("d0")
    assert engine.get_names("_") == ["d0", "drv0"]
    engine.delete("drv0")
    engine.delete("d0")
    assert engine.get_names("_") == []


def test_a_batch_is_refused_whole(engine: octopus.Engine) -> None:
    engine.invariant("no_dangling", NO_DANGLING)
    revision = engine.revision
    with pytest.raises(InvariantViolated):
        engine.set_many([("d0", {}), ("drv0", {"device": Atom("d0")}),
                         ("drv1", {"device": Atom("nowhere")})])
    assert engine.get_names("_") == [] and engine.revision == revision
    # order matters within a batch: every record is checked as it is written
    with pytest.raises(InvariantViolated):
        engine.set_many([("drv0", {"device": Atom("d0")}), ("d0", {})])
    assert engine.set_many([("d0", {}), ("drv0", {"device": Atom("d0")})]) == 2


def test_compare_and_set_and_sequential_sets_are_checked(engine: octopus.Engine) -> None:
    engine.invariant("small", "violation(X, V) :- attr(X, v, V), V > 10.")
    engine.set("x { v: 1 }")
    with pytest.raises(InvariantViolated):
        engine.set("x { v: 11, v < 5 }")
    with pytest.raises(ConditionFailed):
        engine.set("x { v: 2, v > 5 }")               # its own condition fails first
    with pytest.raises(InvariantViolated, match="V = 12"):
        engine.set("s_ { v: 12 }", sequential=True)
    assert engine.set("s_ { v: 3 }", sequential=True).name == "s_0"


def test_an_invariant_already_violated_is_not_installed(engine: octopus.Engine) -> None:
    engine.set_many([("drv0", {"device": Atom("d0")}), ("drv1", {"device": Atom("d0")})])
    with pytest.raises(InvariantViolated, match="already violated by Dev = d0"):
        engine.invariant("one_driver", ONE_DRIVER)
    assert engine.invariants() == []
    engine.set("drv2 { device: d0 }")


def test_remove_lifts_an_invariant(engine: octopus.Engine) -> None:
    inv = engine.invariant("one_driver", ONE_DRIVER)
    assert engine.invariants() == [inv]
    with pytest.raises(RuleError, match="already installed"):
        engine.invariant("one_driver", NO_DANGLING)
    engine.set("drv0 { device: d0 }")
    inv.remove()
    engine.set("drv1 { device: d0 }")
    with pytest.raises(TriggerNotFound):
        inv.remove()
    engine.invariant("no_dangling", "violation(D) :- attr(D, device, X), \\+ record(X), "
                     "X \\== d0.")
    engine.remove_invariant("no_dangling")
    with pytest.raises(TriggerNotFound):
        engine.remove_invariant("no_dangling")
    assert engine.stats()["invariants"] == 0


def test_invariants_call_knowledge_base_rules(engine: octopus.Engine) -> None:
    engine.rules("""
        exclusive(net).
        serves(Drv, Dev) :- attr(Drv, device, Dev), record(Drv).
        shared(Dev) :- serves(A, Dev), serves(B, Dev), A @< B.
    """)
    engine.set("dev { class: net }")
    engine.invariant("exclusive", "bad(Dev, C) :- shared(Dev), attr(Dev, class, C), "
                     "exclusive(C).")
    engine.set("drv0 { device: dev }")
    with pytest.raises(InvariantViolated, match="C = net"):
        engine.set("drv1 { device: dev }")


def test_a_sessions_end_is_not_refused(engine: octopus.Engine,
                                       caplog: pytest.LogCaptureFixture) -> None:
    engine.invariant("no_dangling", NO_DANGLING)
    session = engine.session()
    session.set("svc { }", ephemeral=True)
    engine.set("client { device: svc }")
    with pytest.raises(InvariantViolated):
        session.delete("svc")
    events: list[Event] = []
    engine.watch("svc", events.append)
    with caplog.at_level(logging.WARNING, logger="octopus.rules"):
        session.close()                               # a dead client cannot be refused
    engine.flush()
    assert engine.get_names("_") == ["client"]
    assert [e.mode for e in events] == [Mode.ON_DEL]
    assert "no_dangling" in caplog.text and "Drv = client" in caplog.text


def test_an_invariant_over_its_limit_refuses_the_write(engine: octopus.Engine) -> None:
    engine.add_facts("spin(X) :- spin(X).\n")
    engine.rule_limits = octopus.RuleLimits(change_inferences=100_000)
    engine.invariant("slow", "violation(X) :- attr(X, trip, V), spin(V).")
    with pytest.raises(RuleError, match="could not be checked"):
        engine.set("x { trip: 1 }")
    assert engine.get_names("_") == []
    engine.set("y { calm: 1 }")                       # the engine keeps serving
    engine.remove_invariant("slow")
    engine.set("x { trip: 1 }")


@pytest.mark.parametrize(("text", "message"), [
    ("violation(X) :- attr(X, a, V), findall(Y, attr(Y, b, V), _).", "findall"),
    ("violation(X) :- attr(X, a, 1).\nother(X) :- record(X).", "every clause"),
    ("violation(X) :- attr(X, a, 1)", "syntax error|end of"),
    ("", "no clause"),
    (":- halt.", "no directives"),
    ("violation(X, Y) :- attr(X, a, 1).", "unsafe"),
])
def test_bad_invariants_are_refused(engine: octopus.Engine, text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        engine.invariant("bad", text)
    assert engine.invariants() == []
    engine.set("still { ok: true }")

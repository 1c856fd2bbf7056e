"""Derived watches: watch_rule and watch_relation."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import octopus
from octopus import Atom, Mode, RowEvent, RuleError, TriggerNotFound
from octopus.events import Event

RULES = """
unbound(Dev) :- attr(Dev, class, C), pci_class(C), \\+ driven(Dev).
driven(Dev) :- attr(Drv, device, Dev), record(Drv).
pci_class(storage).
pci_class(net).
orphan(Drv) :- attr(Drv, device, Dev), \\+ record(Dev).
"""


def rows(events: list[Any], mode: Mode = Mode.ON_SET) -> list[tuple[Any, ...]]:
    return [e.row for e in events if e.mode is mode]


@pytest.fixture
def kaluga_like(engine: octopus.Engine) -> octopus.Engine:
    engine.rules(RULES)
    return engine


def test_rows_appear_and_disappear_with_the_changes(kaluga_like: octopus.Engine) -> None:
    e = kaluga_like
    events: list[RowEvent] = []
    watch = e.watch_rule("unbound(Dev)", events.append)
    assert watch.names == ("Dev",)
    e.set("d0 { class: storage }")                                  # revision 1
    e.set("d1 { class: gpu }")                                      # 2: no driver known
    e.set("drv0 { device: d0 }")                                    # 3: d0 is driven
    e.set("d1 { class: net }")                                      # 4
    e.delete("drv0")                                                # 5
    e.set("d0 { class: storage, extra: 1 }")                        # 6: changes no row
    e.flush()
    assert [(x.mode, x.row, x.revision) for x in events] == [
        (Mode.ON_SET, (Atom("d0"),), 1),
        (Mode.ON_DEL, (Atom("d0"),), 3),
        (Mode.ON_SET, (Atom("d1"),), 4),
        (Mode.ON_SET, (Atom("d0"),), 5),
    ]
    assert events[0].bindings == {"Dev": "d0"}
    assert all(x.trigger_id == watch.id for x in events)


def test_existing_rows_come_first(kaluga_like: octopus.Engine) -> None:
    e = kaluga_like
    e.set_many([(f"d{i}", {"class": Atom("net")}) for i in range(5)])
    e.set("drv { device: d2 }")
    events: list[RowEvent] = []
    e.watch_rule("unbound(Dev)", events.append, existing=True)
    e.set("drv { device: d3 }")
    e.flush()
    assert [(x.mode, x.row[0], x.revision) for x in events if x.row] == [
        (Mode.ON_SET, "d0", 6), (Mode.ON_SET, "d1", 6), (Mode.ON_SET, "d3", 6),
        (Mode.ON_SET, "d4", 6),
        (Mode.ON_DEL, "d3", 7), (Mode.ON_SET, "d2", 7)]


def test_existing_has_no_gap_under_concurrent_writers(kaluga_like: octopus.Engine) -> None:
    e = kaluga_like
    stop = threading.Event()

    def write(k: int) -> None:
        s = e.session()
        i = 0
        while not stop.is_set():
            s.set("%n { class: net }", f"d{k}_{i % 50}")
            if i % 3 == 0:
                s.set("%n { device: %n }", f"drv{k}", f"d{k}_{(i * 7) % 50}")
            i += 1
        s.close()

    writers = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for w in writers:
        w.start()
    current: set[Any] = set()
    errors: list[str] = []

    def replay(ev: RowEvent) -> None:
        if ev.mode is Mode.ON_SET:
            if ev.row in current:
                errors.append(f"twice {ev.row}")
            current.add(ev.row)
        elif ev.mode is Mode.ON_DEL:
            if ev.row not in current:
                errors.append(f"never there {ev.row}")
            current.discard(ev.row)

    e.watch_rule("unbound(Dev)", replay, existing=True)
    stop.wait(0.3)
    stop.set()
    for w in writers:
        w.join()
    e.flush()
    assert not errors
    assert current == {(Atom(s["D"]),) for s in e.prolog("unbound(D)")}


def test_on_set_only_and_bindings_as_data(kaluga_like: octopus.Engine) -> None:
    e = kaluga_like
    events: list[RowEvent] = []
    e.watch_rule("attr(Dev, class, C), pci_class(C)", events.append, on=Mode.ON_SET,
                 C="net")
    e.set("a { class: net }")
    e.set("b { class: storage }")
    e.delete("a")
    e.flush()
    assert [(x.mode, x.bindings) for x in events] == [(Mode.ON_SET, {"Dev": "a"})]


def test_on_del_only_gets_only_disappearing_rows(kaluga_like: octopus.Engine) -> None:
    e = kaluga_like
    events: list[RowEvent] = []
    e.watch_rule("unbound(Dev)", events.append, on=Mode.ON_DEL)
    e.set("d0 { class: net }")
    e.set("drv { device: d0 }")
    e.delete("drv")
    e.flush()
    assert [(x.mode, x.row, x.revision) for x in events] == [(Mode.ON_DEL, (Atom("d0"),), 2)]


def test_a_handler_that_raises_is_logged_and_later_rows_still_come(
        kaluga_like: octopus.Engine, caplog: pytest.LogCaptureFixture) -> None:
    # The writer queues a row's fields; the dispatcher makes the RowEvent and names
    # the watch and mode in the log when the handler raises.
    e = kaluga_like
    events: list[RowEvent] = []

    def handler(event: RowEvent) -> None:
        events.append(event)
        if len(events) == 1:
            raise ValueError("boom")

    watch = e.watch_rule("unbound(Dev)", handler)
    with caplog.at_level(logging.ERROR, logger="octopus.events"):
        e.set("d0 { class: net }")
        e.set("d1 { class: net }")
        e.flush()
    assert [(type(x), x.mode, x.row) for x in events] == [
        (RowEvent, Mode.ON_SET, (Atom("d0"),)), (RowEvent, Mode.ON_SET, (Atom("d1"),))]
    assert f"handler of trigger {watch.id} raised on {Mode.ON_SET} event" in caplog.text


def test_watch_relation_takes_arguments_as_data(kaluga_like: octopus.Engine) -> None:
    e = kaluga_like
    events: list[RowEvent] = []
    e.watch_relation("unbound", events.append, "d1")
    hostile: list[RowEvent] = []
    e.watch_relation("unbound", hostile.append, "x), halt, (y")   # an identifier, no code
    every: list[RowEvent] = []
    e.watch_relation("unbound", every.append)
    e.set("d0 { class: net }")
    e.set("d1 { class: net }")
    e.flush()
    assert [x.bindings for x in events] == [{"Dev": "d1"}]
    assert hostile == []
    assert [x.row for x in every if x.row] == [("d0",), ("d1",)]


def test_watch_relation_needs_a_declared_relation(kaluga_like: octopus.Engine) -> None:
    e = kaluga_like
    e.add_facts("undeclared(X) :- record(X).")
    with pytest.raises(RuleError, match="not a relation declared"):
        e.watch_relation("undeclared", lambda ev: None)
    with pytest.raises(RuleError, match="not a relation declared"):
        e.watch_relation("unbound", lambda ev: None, "a", "b")
    with pytest.raises(RuleError, match="plain Prolog name"):
        e.watch_relation("unbound(X)", lambda ev: None)
    with pytest.raises(RuleError, match="not list"):
        e.watch_relation("unbound", lambda ev: None, ["a"])


def test_rules_declares_relations_with_their_argument_names(engine: octopus.Engine) -> None:
    declared = engine.rules("pair(A, B) :- attr(A, peer, B).\n"
                            "pair(X, Y) :- attr(Y, peer, X).\n"
                            "const(1, Z) :- record(Z).\n")
    assert declared == ["const/2", "pair/2"]
    events: list[RowEvent] = []
    engine.watch_relation("const", events.append)
    engine.set("r")
    engine.flush()
    assert events[0].names == ("A1", "Z") and events[0].row == (1, "r")


def test_remove_and_session_end(kaluga_like: octopus.Engine) -> None:
    e = kaluga_like
    events: list[RowEvent] = []
    w = e.watch_rule("unbound(D)", events.append)
    e.set("a { class: net }")
    w.remove()
    e.set("b { class: net }")
    e.flush()
    assert [x.mode for x in events] == [Mode.ON_SET, Mode.REMOVED]
    with pytest.raises(TriggerNotFound):
        w.remove()
    session = e.session()
    mine: list[RowEvent] = []
    session.watch_rule("unbound(D)", mine.append)
    with pytest.raises(TriggerNotFound):          # only its session may remove it
        e.remove_rule_watch(session.watch_rule("unbound(D)", mine.append))
    session.close()
    e.set("c { class: net }")
    e.flush()
    assert [x.mode for x in mine] == [Mode.REMOVED, Mode.REMOVED]
    assert e.stats()["rule_watches"] == 0


def test_events_interleave_with_trigger_events_in_revision_order(
        kaluga_like: octopus.Engine) -> None:
    e = kaluga_like
    seen: list[Event | RowEvent] = []
    e.watch_rule("unbound(D)", seen.append)
    e.watch("_ { device: _ }", seen.append)
    for i in range(20):
        e.set("%n { class: net }", f"d{i}")
        e.set("drv { device: %n }", f"d{i}")
    e.flush()
    revisions = [x.revision for x in seen]
    assert revisions == sorted(revisions)
    # d<i> appears, then the driver moves to it: a trigger event, d<i> disappears and
    # d<i-1> (left behind) appears again
    assert len(seen) == 20 + 20 + 20 + 19


@pytest.mark.parametrize(("goal", "message"), [
    ("nope(X)", "unknown procedure"),
    ("attr(X, a, V), findall(Y, attr(Y, b, V), _)", "findall/3 over records"),
    ("anc(X, Y)", "recursive"),
    ("attr(X, a, V), ( V > 1 -> true ; attr(X, b, _) )", "if-then-else over records"),
    ("attr(X, a, V), ( V > 1 -> W = big ; W = small )", None),
    ("attr(X, a, _), \\+ (attr(Y, b, X), \\+ record(Y))", "negation inside a negation"),
    ("V > 1, attr(X, a, V)", "unsafe rule"),
    ("attr(X, a, _), \\+ attr(_Y, b, _Z)", None),
    ("attr(X, a, _), \\+ attr(Y, b, Z)", "negation uses a variable"),
    ("attr(X, a, _), Y = Z", "unsafe rule"),
    ("attr(X, a, V), assertz(stolen(V))", "unknown procedure|not allowed"),
    ("attr(X, a, V), call(V)", "variable goal"),
    ("attr(X, a, V), V > random(10)", "changes by itself"),
    ("attr(X, a, V), !", "not allowed in a rule"),
])
def test_rules_outside_the_family_are_refused(engine: octopus.Engine, goal: str,
                                              message: str | None) -> None:
    engine.add_facts("anc(X, Y) :- attr(X, parent, Y).\n"
                     "anc(X, Y) :- attr(X, parent, Z), anc(Z, Y).\n")
    if message is None:         # a negation's own variables; if-then-else on values
        engine.watch_rule(goal, lambda ev: None)
        return
    with pytest.raises(RuleError, match=message):
        engine.watch_rule(goal, lambda ev: None)
    assert engine.stats()["rule_watches"] == 0
    engine.set("still { serving: true }")


def test_a_rule_that_loops_or_explodes_is_stopped(engine: octopus.Engine) -> None:
    engine.add_facts("spin(X) :- spin(X).\n")
    engine.set_many((f"r{i}", {"a": i}) for i in range(300))
    engine.rule_limits = octopus.RuleLimits(install_inferences=200_000)
    with pytest.raises(RuleError, match="inferences"):
        engine.watch_rule("attr(X, a, V), spin(V)", lambda ev: None, existing=True)
    with pytest.raises(RuleError, match="inferences"):
        engine.watch_rule("attr(A, a, _), attr(B, a, _), attr(C, a, _)", lambda ev: None,
                          existing=True)
    engine.set("r0 { a: 1 }")
    assert engine.prolog("attr(r0, a, V)") == [{"V": 1}]


def test_a_watch_over_its_limit_on_a_change_is_removed(engine: octopus.Engine,
                                                       caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    engine.add_facts("spin(X) :- spin(X).\n")
    events: list[RowEvent] = []
    engine.watch_rule("attr(X, trip, V), spin(V)", events.append)
    calm: list[RowEvent] = []
    engine.watch_rule("attr(X, trip, _)", calm.append)
    with caplog.at_level(logging.WARNING, logger="octopus.rules"):
        engine.set("x { trip: 1 }")               # the change goes on
    engine.set("y { trip: 2 }")
    engine.flush()
    assert [ev.mode for ev in events] == [Mode.REMOVED]
    assert events[0].revision == 1
    assert [ev.row for ev in calm] == [("x",), ("y",)]
    assert "inferences" in caplog.text
    assert engine.get_names("_") == ["x", "y"]


def test_a_rule_that_raises_on_a_change_removes_its_watch(engine: octopus.Engine) -> None:
    engine.add_facts("boom(X) :- X > 1, throw(oops).\n")
    events: list[RowEvent] = []
    engine.watch_rule("attr(X, v, V), boom(V)", events.append)
    engine.set("x { v: 5 }")
    engine.flush()
    assert [ev.mode for ev in events] == [Mode.REMOVED]
    assert engine.get_names("_") == ["x"]


def test_comparisons_with_non_numbers_are_false(engine: octopus.Engine) -> None:
    events: list[RowEvent] = []
    engine.watch_rule("attr(X, v, V), V > 1", events.append)
    engine.set_many([("a", {"v": 5}), ("b", {"v": Atom("high")}), ("c", {"v": "9"}),
                     ("d", {"v": True})])
    engine.flush()
    assert [ev.row for ev in events] == [("a", 5)]


def test_a_watch_sees_no_other_engine() -> None:
    with octopus.Engine() as one, octopus.Engine() as two:
        events: list[RowEvent] = []
        one.watch_rule("record(X)", events.append)
        two.set("elsewhere")
        one.set("here")
        one.flush()
        assert [ev.row for ev in events] == [("here",)]


def test_knowledge_base_facts_a_rule_calls_cannot_reach_the_store(
        engine: octopus.Engine) -> None:
    engine.add_facts(":- dynamic rec/3.\n"
                     "sneak(V) :- assertz(rec(planted, 1, _{v: V})).\n")
    events: list[RowEvent] = []
    engine.watch_rule("attr(X, v, V), sneak(V)", events.append)
    engine.set("x { v: 1 }")
    engine.flush()
    assert [ev.row for ev in events] == [("x", 1)]
    assert engine.get_names("_") == ["x"]                 # nothing planted in the store


def test_loading_the_same_rules_again_replaces_them(kaluga_like: octopus.Engine) -> None:
    e = kaluga_like
    e.set("d0 { class: net }")
    assert e.prolog("unbound(D)") == [{"D": "d0"}]
    e.rules(RULES)                                      # again: not every clause twice
    assert e.prolog("unbound(D)") == [{"D": "d0"}]
    assert len(e.prolog("pci_class(C)")) == 2


def test_negations_unfolded_from_one_keep_their_own_variables(engine: octopus.Engine) -> None:
    # \+ serves(_, D) unfolds into one negation per clause of serves/2; the instance
    # (and the assignment record) of each is its own, not shared with the other, so the
    # rule is safe and each negation looks for an instance of its own.
    engine.rules("serves(I, D) :- attr(I, device, D).\n"
                 "serves(I, D) :- attr(A, assigned, D), attr(A, instance, I), record(I).\n"
                 "unbound(D) :- attr(D, class, _), \\+ serves(_, D).\n")
    events: list[RowEvent] = []
    engine.watch_relation("unbound", events.append, existing=True)

    def delivered() -> set[object]:
        engine.flush()
        now: set[object] = set()
        for ev in events:
            assert ev.row is not None
            if ev.mode is Mode.ON_SET:
                now.add(ev.row[0])
            elif ev.mode is Mode.ON_DEL:
                now.discard(ev.row[0])
        assert now == {s["D"] for s in engine.prolog("unbound(D)")}
        return now

    engine.set("dev0 { class: net }")
    engine.set("dev1 { class: net }")
    assert delivered() == {"dev0", "dev1"}
    engine.set("drv { device: dev0 }")
    assert delivered() == {"dev1"}
    engine.set("as { assigned: dev1, instance: drv }")
    assert delivered() == set()
    engine.delete("drv")                                # serves neither now
    assert delivered() == {"dev0", "dev1"}
    engine.set("drv2")
    engine.set("as { assigned: dev1, instance: drv2 }")
    assert delivered() == {"dev0"}

"""The knowledge base's read-only view of live records: record/1 and attr/3."""

from __future__ import annotations

from pathlib import Path

import pytest

import octopus
from octopus import Atom, KnowledgeBaseError


def test_values_arrive_with_the_languages_types(engine: octopus.Engine) -> None:
    engine.set("hw.nic.0 { type: ethernet, label: 'ethernet', mtu: 1500, load: 0.5, "
               "up: true, down: false }")
    # identifiers are atoms, strings strings, numbers numbers, booleans @(true)/@(false)
    assert engine.prolog_once("attr('hw.nic.0', type, V), atom(V)") == {"V": "ethernet"}
    assert engine.prolog_once("attr('hw.nic.0', label, V), string(V)") == {"V": "ethernet"}
    assert engine.prolog_once("attr('hw.nic.0', mtu, V), integer(V)") == {"V": 1500}
    assert engine.prolog_once("attr('hw.nic.0', load, V), float(V)") == {"V": 0.5}
    assert engine.prolog_once("attr('hw.nic.0', up, V), V == @(true)") == {"V": True}
    assert engine.prolog_once("attr('hw.nic.0', down, @(false))") == {}
    # matching is unification: an identifier is not the string with the same text
    assert engine.prolog("attr(N, type, \"ethernet\")") == []
    assert engine.prolog("attr(N, label, ethernet)") == []
    assert engine.prolog("attr(N, mtu, 1500.0)") == []
    assert engine.prolog("attr(N, up, true)") == []


def test_record_and_attr_enumerate_and_look_up(engine: octopus.Engine) -> None:
    engine.set_many([("a", {"k": 1}), ("b", {"k": 2, "j": Atom("x")}), ("c", {})])
    assert sorted(s["N"] for s in engine.prolog("record(N)")) == ["a", "b", "c"]
    assert engine.prolog("record(a)") == [{}]
    assert engine.prolog("record(nope)") == []
    assert engine.prolog("record(\"a\")") == []          # a name is an atom
    assert sorted((s["N"], s["V"]) for s in engine.prolog("attr(N, k, V)")) == \
        [("a", 1), ("b", 2)]
    assert engine.prolog("attr(N, k, 2)") == [{"N": "b"}]
    assert sorted((s["K"], s["V"]) for s in engine.prolog("attr(b, K, V)")) == \
        [("j", "x"), ("k", 2)]
    assert sorted(s["N"] for s in engine.prolog("attr(N, K, _)")) == ["a", "b", "b"]
    assert engine.prolog("attr(N, nokey, V)") == []


def test_the_view_is_live(engine: octopus.Engine) -> None:
    assert engine.prolog("attr(x, a, V)") == []
    engine.set("x { a: 1 }")
    assert engine.prolog("attr(x, a, V)") == [{"V": 1}]
    engine.set("x { a: 2 }")
    assert engine.prolog("attr(x, a, V)") == [{"V": 2}]
    engine.delete("x")
    assert engine.prolog("record(x)") == []


@pytest.mark.parametrize("text", [
    "record(x).",
    "attr(x, a, 1).",
    "attr(X, a, 1) :- X = y.",
    ":- assertz(attr(x, a, 1)).",
    ":- retract((attr(_, _, _) :- _)).",
    ":- dynamic attr/3.",
    ":- assertz(record(x)).",
])
def test_the_view_cannot_be_defined_extended_or_taken_away(engine: octopus.Engine,
                                                           text: str) -> None:
    engine.set("real { a: 2 }")
    with pytest.raises(KnowledgeBaseError):
        engine.add_facts(text)
    assert engine.prolog("attr(N, a, V)") == [{"N": "real", "V": 2}]
    assert engine.prolog("record(N)") == [{"N": "real"}]


def test_defining_the_view_says_why(engine: octopus.Engine) -> None:
    with pytest.raises(KnowledgeBaseError, match="view of the engine's records"):
        engine.add_facts("ok(1).\nattr(x, a, 1).\n")
    with pytest.raises(KnowledgeBaseError, match="ok/1"):  # nothing was loaded
        engine.prolog("ok(X)")


def test_knowledge_base_code_cannot_write_the_store(engine: octopus.Engine) -> None:
    engine.set("x { a: 1 }")
    # a join on key a: the rules keep an index of it ('$rx'/3 in the store module)
    engine.watch_rule("attr(A, a, V), attr(B, a, V), A @< B", lambda event: None)
    engine.add_facts("""
        :- dynamic rec/3, '$rx'/3.
        meddle :- assertz(rec(y, 1, _{a: 1})), retractall(rec(x, _, _)),
                  assertz('$rx'(0, a, y)), retractall('$rx'(_, _, x)).
        :- meddle.
    """)
    engine.prolog("meddle")
    assert engine.get_names("_") == ["x"]
    assert engine.get_names("_ { a: 1 }") == ["x"]
    assert engine.prolog("record(N)") == [{"N": "x"}]
    assert engine.prolog("attr(N, a, 1)") == [{"N": "x"}]


def test_an_engine_sees_its_own_records_only() -> None:
    with octopus.Engine() as one, octopus.Engine() as two:
        one.set("mine { owner: one }")
        two.set("theirs { owner: two }")
        assert one.prolog("record(N)") == [{"N": "mine"}]
        assert two.prolog("record(N)") == [{"N": "theirs"}]
        assert one.prolog("attr(N, owner, O)") == [{"N": "mine", "O": "one"}]


def test_rules_join_records_and_knowledge_base_facts(engine: octopus.Engine) -> None:
    engine.add_facts("""
        driver_for(storage, ahcid).
        driver_for(net, e1000n).
        needs(Dev, Bin) :- attr(Dev, class, C), driver_for(C, Bin).
    """)
    engine.set_many([("d0", {"class": Atom("storage")}), ("d1", {"class": Atom("net")}),
                     ("d2", {"class": Atom("gpu")})])
    assert sorted((s["D"], s["B"]) for s in engine.prolog("needs(D, B)")) == \
        [("d0", "ahcid"), ("d1", "e1000n")]


def test_a_rule_cannot_get_around_the_sandbox(engine: octopus.Engine,
                                              tmp_path: Path) -> None:
    """Knowledge-base code the sandbox refuses to run through prolog() is not run by a
    rule inside a write either: watches, invariants and rules() refuse it."""
    marker = tmp_path / "ran"
    engine.add_facts("evil(X) :- shell(X).")
    with pytest.raises(KnowledgeBaseError, match="sandbox"):
        engine.rules("bad(D) :- attr(D, cmd, C), evil(C).")
    engine.rules("worse(X) :- shell(X).\nbad2(D) :- attr(D, cmd, C), worse(C).")
    with pytest.raises(KnowledgeBaseError, match="sandbox"):
        engine.watch_relation("bad2", lambda ev: None)
    with pytest.raises(KnowledgeBaseError, match="sandbox"):
        engine.watch_rule("attr(D, cmd, C), evil(C)", lambda ev: None)
    with pytest.raises(KnowledgeBaseError, match="sandbox"):
        engine.invariant("i", "violation(D) :- attr(D, cmd, C), evil(C).")
    engine.set("x { cmd: %s }", f"touch {marker}")
    engine.flush()
    assert not marker.exists()

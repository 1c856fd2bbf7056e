"""The knowledge base: loading, querying, isolation from the store, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import octopus
from octopus import KnowledgeBaseError
from octopus.errors import EngineClosed


def test_add_facts_and_query(engine: octopus.Engine) -> None:
    assert engine.add_facts("color(red). color(green).\n"
                            "likes(bob, C) :- color(C).") == 3
    assert engine.prolog("color(C)") == [{"C": "red"}, {"C": "green"}]
    assert engine.prolog("likes(P, C)", C="green") == [{"P": "bob"}]
    assert engine.prolog_once("color(C)") == {"C": "red"}
    assert engine.prolog_once("color(blue)") is None
    assert engine.prolog("color(_C)") == [{}, {}]
    assert engine.prolog("color(C)", limit=1) == [{"C": "red"}]


def test_solutions_are_plain_python(engine: octopus.Engine) -> None:
    s = engine.prolog_once(
        "A = 42, B = 1.5, C = \"text\", D = atom, E = [1, [2, x]], F = k-v, "
        "G = _{a: 1, b: [y]}, H = f(x, 'Y'), I = _Unbound, J = 123456789012345678901234567890")
    assert s == {"A": 42, "B": 1.5, "C": "text", "D": "atom", "E": [1, [2, "x"]],
                 "F": ("k", "v"), "G": {"a": 1, "b": ["y"]}, "H": "f(x,'Y')", "I": None,
                 "J": 123456789012345678901234567890}


def test_bindings_are_data_not_goal_text(engine: octopus.Engine) -> None:
    engine.add_facts("secret(1).")
    hostile = "x), retractall(secret(_)), (true"
    assert engine.prolog("atom_length(A, N)", A=hostile) == [{"N": len(hostile)}]
    assert engine.prolog("secret(X)") == [{"X": 1}]
    # a str binds as an atom, an int as an integer, a list as a list
    assert engine.prolog_once("atom(A), integer(B), is_list(C)", A="a", B=1, C=[1, "b"]) == {}


@pytest.mark.parametrize(("goal", "bindings", "fragment"), [
    ("color(", {}, "syntax error"),
    ("no_such_predicate(X)", {}, "Unknown procedure"),
    ("X is 1/0", {}, "zero_divisor"),
    ("atom_length(X, Y)", {}, "instantiated"),
    ("throw(my_ball)", {}, "my_ball"),
    ("true", {"X": 1}, "does not occur"),
    ("42", {}, "not a goal"),
])
def test_prolog_errors(engine: octopus.Engine, goal: str, bindings: dict[str, object],
                       fragment: str) -> None:
    with pytest.raises(KnowledgeBaseError, match=fragment):
        engine.prolog(goal, **bindings)


@pytest.mark.parametrize(("args", "kwargs"), [
    ((42,), {}),
    (("true",), {"lower": 1}),
    (("X = Y",), {"Y": object()}),
    (("X = Y",), {"Y": {1: 2}}),
    (("true",), {"limit": 0}),
    (("true",), {"limit": True}),
])
def test_bad_arguments(engine: octopus.Engine, args: tuple[object, ...],
                       kwargs: dict[str, object]) -> None:
    with pytest.raises(KnowledgeBaseError):
        engine.prolog(*args, **kwargs)  # type: ignore[arg-type]


def test_syntax_error_loads_nothing(engine: octopus.Engine, tmp_path: Path) -> None:
    kb = tmp_path / "bad.pl"
    kb.write_text("fact(1).\nfact(2).\n:- dynamic other/1.\nfact(3) oops.\nfact(4).\n")
    with pytest.raises(KnowledgeBaseError, match="line 4"):
        engine.consult(kb)
    assert engine.prolog("current_predicate(fact/1)") == []
    assert engine.prolog("current_predicate(other/1)") == []


def test_failing_directive_loads_nothing(engine: octopus.Engine) -> None:
    engine.add_facts("keep(0).")
    with pytest.raises(KnowledgeBaseError, match="directive failed"):
        engine.add_facts("keep(1). :- assertz(keep(2)). :- fail. keep(3).")
    assert engine.prolog("keep(X)") == [{"X": 0}]
    with pytest.raises(KnowledgeBaseError, match="zero_divisor"):
        engine.add_facts("keep(4). :- X is 1/0, atom(X).")
    assert engine.prolog("keep(X)") == [{"X": 0}]


STORE_LOOKALIKE = """
% Predicates named like the store's and the trigger table's internals.
:- dynamic rec/3, seq/2, trig/2.
rec(x, 99, _{a: 2}).
rec(evil, 1, _{}).
seq('s_', 0).
trig(1, anything).
record(x, y, z).
index(a, b, c).
store_set(a, b, c, d, e, f, g).
:- retractall(rec(_, _, _)).
:- retractall(seq(_, _)).
:- retractall(trig(_, _)).
:- assertz(rec(y, 2, _{})).
:- assertz(seq('s_', 100)).
"""


def test_store_internals_lookalikes_change_only_the_kb(engine: octopus.Engine,
                                                        tmp_path: Path) -> None:
    events: list[octopus.Event] = []
    engine.watch("_ { a: 1 }", events.append)
    engine.set("x { a: 1 }")
    engine.set("s_ { a: 1 }", sequential=True)
    engine.set("s_ { a: 1 }", sequential=True)
    before = engine.get_all("_")
    kb = tmp_path / "lookalike.pl"
    kb.write_text(STORE_LOOKALIKE)
    assert engine.consult(kb) == 7
    # the store, its attribute index and its sequence counter are untouched
    assert engine.get_all("_") == before
    assert engine.get_names("_ { a: 1 }") == ["s_0", "s_1", "x"]
    assert engine.get_names("_ { a: 2 }") == []
    assert engine.count() == 3
    assert engine.set("s_ { a: 1 }", sequential=True).name == "s_2"
    engine.set("z { a: 1 }")
    engine.flush()
    assert [e.record.name for e in events if e.record] == ["x", "s_0", "s_1", "s_2", "z"]
    # ... and the knowledge base has its own predicates of those names
    assert engine.prolog("rec(N, R, _)") == [{"N": "y", "R": 2}]
    assert engine.prolog("seq(B, N)") == [{"B": "s_", "N": 100}]
    assert engine.prolog("trig(I, Q)") == []
    assert engine.prolog("record(A, B, C)") == [{"A": "x", "B": "y", "C": "z"}]


@pytest.mark.parametrize("text", [
    "octopus_store:store_set(a, b, c, d, e, f, g).",
    "user:stolen(1).",
    ":- octopus_store:assertz(rec(a, 1, x)).",
    "p :- octopus_triggers:trigger_clear(m, _).",
    ":- assertz(octopus_match:regex_cached(a, b)).",
])
def test_other_modules_are_refused(engine: octopus.Engine, text: str) -> None:
    with pytest.raises(KnowledgeBaseError, match="module"):
        engine.add_facts(text)


def test_engines_do_not_share_facts() -> None:
    with octopus.Engine() as a, octopus.Engine() as b:
        a.add_facts("mine(a).")
        b.add_facts("mine(b).")
        assert a.prolog("mine(X)") == [{"X": "a"}]
        assert b.prolog("mine(X)") == [{"X": "b"}]
        assert a.kb.module != b.kb.module


def test_reconsult_replaces_the_file(engine: octopus.Engine, tmp_path: Path) -> None:
    kb = tmp_path / "f.pl"
    kb.write_text("v(1). v(2).")
    engine.add_facts("v(0).")
    engine.consult(kb)
    kb.write_text("v(3).")
    assert engine.consult(kb) == 1
    assert engine.prolog("v(X)") == [{"X": 0}, {"X": 3}]


def test_operators_and_grammar_rules(engine: octopus.Engine) -> None:
    engine.add_facts(":- op(700, xfx, ===>).\nred ===> stop.\n"
                     "greeting --> [hello], name.\nname --> [world].")
    assert engine.prolog("X ===> Y") == [{"X": "red", "Y": "stop"}]
    assert engine.prolog("phrase(greeting, [hello, world])") == [{}]


def test_missing_file(engine: octopus.Engine, tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="no such file"):
        engine.consult(tmp_path / "absent.pl")


def test_add_rows_with_progress(engine: octopus.Engine) -> None:
    seen: list[tuple[int, int]] = []
    rows = [(i, f"name {i}") for i in range(12000)]
    assert engine.kb.add_rows("name_of", rows, total=len(rows),
                              progress=lambda d, t: seen.append((d, t))) == 12000
    assert seen[-1] == (12000, 12000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert engine.prolog("name_of(7, N)") == [{"N": "name 7"}]
    with pytest.raises(KnowledgeBaseError):
        engine.kb.add_rows("Bad-name", [(1,)])
    with pytest.raises(KnowledgeBaseError):
        engine.kb.add_rows("ok", [object()])  # type: ignore[list-item]


def test_consult_reports_progress(engine: octopus.Engine, tmp_path: Path) -> None:
    kb = tmp_path / "big.pl"
    kb.write_text("".join(f"n({i}, 'x{i}').\n" for i in range(10000)))
    seen: list[tuple[int, int]] = []
    assert engine.consult(kb, progress=lambda d, t: seen.append((d, t))) == 10000
    size = kb.stat().st_size
    assert len(seen) > 1 and seen[-1] == (size, size)
    assert engine.prolog_once("aggregate_all(count, n(_, _), N)") == {"N": 10000}


def test_queries_from_other_threads(engine: octopus.Engine) -> None:
    engine.add_facts("num(N) :- between(1, 100, N).")
    results: list[int] = []

    def ask() -> None:
        results.append(len(engine.prolog("num(N)")))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [100] * 4


def test_closed_engine() -> None:
    e = octopus.Engine()
    kb = e.kb
    e.add_facts("a(1).")
    e.close()
    with pytest.raises(EngineClosed):
        e.prolog("a(X)")
    with pytest.raises(EngineClosed):
        kb.prolog("a(X)")


def test_a_goal_text_reads_again_after_an_operator_changes(engine: octopus.Engine) -> None:
    """Goal texts are remembered parsed: declaring an operator forgets them."""
    goal = "X = (a ~> b ~> c), X = (L ~> _)"
    engine.add_facts(":- op(700, xfy, ~>).")
    assert engine.prolog(goal) == [{"X": "~>(a,~>(b,c))", "L": "a"}]
    assert engine.prolog(goal) == [{"X": "~>(a,~>(b,c))", "L": "a"}]     # remembered
    engine.add_facts(":- op(700, yfx, ~>).")
    assert engine.prolog(goal) == [{"X": "~>(~>(a,b),c)", "L": "~>(a,b)"}]

"""A small family of rules (joins, negation, comparisons, disjunction, knowledge-base
facts), each as Prolog text and as a pure-Python oracle computing its relation from
scratch. The property tests hold the engine's derived watches and invariants to the
oracles."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from octopus import Atom

Records = Mapping[str, Mapping[str, Any]]
Row = tuple[Any, ...]

RULES = """
label(0, zero).
label(1, one).
p1(X) :- attr(X, a, V), V > 1.
p2(X, Y) :- attr(X, ref, Y), record(Y).
p3(X) :- record(X), \\+ attr(_, ref, X).
p4(X, V) :- attr(X, a, V), attr(Y, b, V), X \\== Y.
p5(X) :- attr(X, ref, Y), \\+ record(Y).
p6(X) :- attr(X, a, A), attr(X, b, B), A < B.
p7(Y) :- attr(_, ref, Y), \\+ (attr(Y, a, V), V >= 2).
q8(X) :- attr(X, a, 0).
q8(X) :- attr(X, c, x1).
p8(X) :- q8(X).
p9(X, L) :- attr(X, a, V), label(V, L).
p10(X) :- record(X), \\+ q8(X).
p11(X, Y) :- attr(X, ref, Y), attr(Y, ref, X), X @< Y.
p12(X) :- attr(X, b, B), ( B == x0 ; B == x2 ).
"""


def kind(value: Any) -> str:
    if type(value) is Atom:
        return "atom"
    return type(value).__name__


def canon(row: Row) -> tuple[tuple[str, Any], ...]:
    """A row with each value tagged by its type: Prolog tells 1 from 1.0 and from
    true, Python's equality does not."""
    return tuple((kind(v), v) for v in row)


def num(v: Any) -> bool:
    return type(v) in (int, float)


def same(a: Any, b: Any) -> bool:
    return kind(a) == kind(b) and a == b


def is_name(v: Any, records: Records) -> bool:
    return type(v) is Atom and v in records


def p1(r: Records) -> set[Row]:
    return {(Atom(x),) for x, a in r.items() if num(a.get("a")) and a["a"] > 1}


def p2(r: Records) -> set[Row]:
    return {(Atom(x), a["ref"]) for x, a in r.items() if "ref" in a and is_name(a["ref"], r)}


def p3(r: Records) -> set[Row]:
    refs = {a["ref"] for a in r.values() if type(a.get("ref")) is Atom}
    return {(Atom(x),) for x in r if x not in refs}


def p4(r: Records) -> set[Row]:
    return {(Atom(x), a["a"]) for x, a in r.items() if "a" in a
            for y, b in r.items() if y != x and "b" in b and same(a["a"], b["b"])}


def p5(r: Records) -> set[Row]:
    return {(Atom(x),) for x, a in r.items() if "ref" in a and not is_name(a["ref"], r)}


def p6(r: Records) -> set[Row]:
    return {(Atom(x),) for x, a in r.items()
            if num(a.get("a")) and num(a.get("b")) and a["a"] < a["b"]}


def p7(r: Records) -> set[Row]:
    rows = set()
    for a in r.values():
        if "ref" in a:
            y = a["ref"]
            blocked = is_name(y, r) and num(r[y].get("a")) and r[y]["a"] >= 2
            if not blocked:
                rows.add((y,))
    return rows


def q8(r: Records) -> set[str]:
    return {x for x, a in r.items()
            if ("a" in a and same(a["a"], 0)) or ("c" in a and same(a["c"], Atom("x1")))}


def p8(r: Records) -> set[Row]:
    return {(Atom(x),) for x in q8(r)}


def p9(r: Records) -> set[Row]:
    labels = {0: "zero", 1: "one"}
    return {(Atom(x), Atom(labels[a["a"]])) for x, a in r.items()
            if type(a.get("a")) is int and a["a"] in labels}


def p10(r: Records) -> set[Row]:
    q = q8(r)
    return {(Atom(x),) for x in r if x not in q}


def p11(r: Records) -> set[Row]:
    return {(Atom(x), a["ref"]) for x, a in r.items()
            if is_name(a.get("ref"), r) and same(r[a["ref"]].get("ref"), Atom(x))
            and x < a["ref"]}


def p12(r: Records) -> set[Row]:
    return {(Atom(x),) for x, a in r.items()
            if "b" in a and (same(a["b"], Atom("x0")) or same(a["b"], Atom("x2")))}


#: goal text -> oracle
RELATIONS: dict[str, Callable[[Records], set[Row]]] = {
    "p1(X)": p1, "p2(X, Y)": p2, "p3(X)": p3, "p4(X, V)": p4, "p5(X)": p5, "p6(X)": p6,
    "p7(Y)": p7, "p8(X)": p8, "p9(X, L)": p9, "p10(X)": p10, "p11(X, Y)": p11,
    "p12(X)": p12,
}

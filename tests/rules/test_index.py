"""The index prolog/rules_view.pl keeps in the store module for the attribute keys
installed rules look up by value or inside a join: none without rules (the lean store of
docs/architecture.md stays lean), built when the first rule needing a key is installed,
kept exact by every write inside its transaction, dropped with the last rule needing
the key; a key only read with its record known is not indexed."""

from __future__ import annotations

from typing import Any

import octopus
from octopus import Atom, RowEvent
from octopus._prolog import runtime

RULES = """
unbound(Dev) :- attr(Dev, class, C), pci_class(C), \\+ driven(Dev).
driven(Dev) :- attr(Drv, device, Dev), record(Drv).
pci_class(storage).
pci_class(net).
"""


def _index(engine: octopus.Engine) -> list[tuple[str, str]]:
    """The (key, name) entries of the rules' index in the engine's store module."""
    module = engine._core.store.module
    reply: Any = runtime().janus.query_once(
        "atom_string(_A, M), findall([_K, _N], (_G = '$rx'(_, _K, _N), call(_A:_G)), "
        "_L0), msort(_L0, L)", {"M": module})
    return [(str(k), str(n)) for k, n in reply["L"]]


def _keys(engine: octopus.Engine) -> list[str]:
    module = engine._core.store.module
    reply: Any = runtime().janus.query_once(
        "atom_string(_A, M), findall(_K, (_G = '$rx_key'(_K), call(_A:_G)), _L0), "
        "msort(_L0, L)",
        {"M": module})
    return [str(k) for k in reply["L"]]


def test_no_index_without_rules_and_exact_with_them(engine: octopus.Engine) -> None:
    e = engine
    e.set_many([("d0", {"class": Atom("storage")}), ("d1", {"class": Atom("net")}),
                ("x", {"other": 1})])
    e.rules(RULES)
    assert _keys(e) == [] and _index(e) == []           # loaded rules, nothing watched
    events: list[RowEvent] = []
    watch = e.watch_rule("unbound(Dev)", events.append, existing=True)
    # device is looked up by value (\+ driven(Dev): who has Dev as device?); class is
    # only read with its record known, or in the one pass of the installation
    assert _keys(e) == ["device"]
    assert _index(e) == []
    e.set("drv0 { device: d0 }")
    assert _index(e) == [("device", "drv0")]
    e.set("d1 { label: 'no class now' }")
    e.delete("d0")
    e.set_many([("d2", {"class": Atom("net")}), ("drv0", {"device": Atom("d2")})])
    assert _index(e) == [("device", "drv0")]
    e.delete("drv0")
    assert _index(e) == []
    e.set("drv0 { device: d2 }")
    e.flush()
    assert [(x.mode, x.row) for x in events] == [
        (octopus.Mode.ON_SET, (Atom("d0"),)), (octopus.Mode.ON_SET, (Atom("d1"),)),
        (octopus.Mode.ON_DEL, (Atom("d0"),)), (octopus.Mode.ON_DEL, (Atom("d1"),)),
        (octopus.Mode.ON_SET, (Atom("d2"),)), (octopus.Mode.ON_DEL, (Atom("d2"),)),
        (octopus.Mode.ON_SET, (Atom("d2"),)), (octopus.Mode.ON_DEL, (Atom("d2"),))]
    # the view reads through the index: the same answers as a scan
    assert sorted(s["N"] for s in e.prolog("attr(N, device, d2)")) == ["drv0"]
    assert sorted(s["N"] for s in e.prolog("attr(N, class, net)")) == ["d2"]
    e.remove_rule_watch(watch)
    assert _keys(e) == [] and _index(e) == []
    assert sorted(s["N"] for s in e.prolog("attr(N, device, d2)")) == ["drv0"]


def test_a_join_key_is_indexed_and_kept_exact(engine: octopus.Engine) -> None:
    e = engine
    e.set_many([("a", {"irq": 5}), ("b", {"irq": 6}), ("c", {"temp": 1})])
    rows: list[RowEvent] = []
    e.watch_rule("attr(A, irq, I), attr(B, irq, I), A @< B", rows.append)
    e.watch_rule("attr(X, temp, T), T > 90", rows.append)
    assert _keys(e) == ["irq"]                          # temp: never looked up by value
    assert _index(e) == [("irq", "a"), ("irq", "b")]
    e.set("b { irq: 5 }")
    e.set("c { temp: 95 }")
    e.set("a { other: 1 }")
    assert _index(e) == [("irq", "b")]
    e.flush()
    assert [(x.mode, x.row) for x in rows] == [
        (octopus.Mode.ON_SET, (Atom("a"), 5, Atom("b"))),
        (octopus.Mode.ON_SET, (Atom("c"), 95)),
        (octopus.Mode.ON_DEL, (Atom("a"), 5, Atom("b")))]


def test_a_refused_write_leaves_the_index_as_it_was(engine: octopus.Engine) -> None:
    e = engine
    e.invariant("one_per_class",
                "violation(A, B) :- attr(A, class, C), attr(B, class, C), A @< B.")
    e.set_many([("d0", {"class": Atom("net")}), ("d1", {"class": Atom("gpu")})])
    before = _index(e)
    assert before == [("class", "d0"), ("class", "d1")]
    try:
        e.set("d1 { class: net }")
    except octopus.InvariantViolated:
        pass
    else:
        raise AssertionError("the invariant did not refuse the write")
    assert _index(e) == before

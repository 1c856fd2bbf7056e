"""Rules on a durable engine (docs/durability.md): derived watches follow journaled
writes, and a write an invariant refuses is never journaled — not even for a moment
(asked before the journal, not written and cut off after)."""

from __future__ import annotations

from pathlib import Path

import pytest

import octopus
from octopus import InvariantViolated, Mode, RowEvent
from octopus.durable import files

from ..durable.test_faults import FailingOps

ONE_PORT = "violation(P) :- attr(A, port, P), attr(B, port, P), A @< B."
RULES = "unbound(Dev) :- attr(Dev, class, _), \\+ attr(_, device, Dev).\n"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> FailingOps:
    ops = FailingOps()          # the real file operations, counted
    monkeypatch.setattr(files, "ops", ops)
    return ops


def test_a_refused_write_is_not_journaled(tmp_path: Path, counted: FailingOps) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d, fsync="always") as e:
        e.invariant("one_port", ONE_PORT)
        e.set("a { port: 80 }")
        e.set("b { port: 81 }")
        stats = e.stats()
        writes, cuts = counted.calls.get("write", 0), counted.calls.get("ftruncate", 0)
        revision = e.revision
        with pytest.raises(InvariantViolated):
            e.set("c { port: 80 }")                         # a set
        with pytest.raises(InvariantViolated):
            e.set("b { port: 80 }")                         # a replace
        with pytest.raises(InvariantViolated):
            e.set("a { port: 81, port == 80 }")             # a compare-and-set
        with pytest.raises(InvariantViolated):
            e.set_many([("x", {"port": 90}), ("y", {"port": 90})])     # a batch
        e.invariant("keep_a", "violation(a) :- \\+ record(a).")
        with pytest.raises(InvariantViolated):
            e.delete("a")                                   # a delete
        assert counted.calls.get("write", 0) == writes      # nothing appended ...
        assert counted.calls.get("ftruncate", 0) == cuts    # ... and nothing cut off
        after = e.stats()
        assert after["journal_entries"] == stats["journal_entries"]
        assert after["journal_bytes"] == stats["journal_bytes"]
        assert after["persistence_status"] == "ok"
        assert e.revision == revision
        e.set("c { port: 82 }")                             # the journal goes on
        e.set_many([("x", {"port": 90}), ("y", {"port": 91})])
    with octopus.Engine(path=d) as e:
        assert {r.name: r["port"] for r in e.get_all("_")} == \
            {"a": 80, "b": 81, "c": 82, "x": 90, "y": 91}


def test_a_session_end_on_a_durable_engine_is_not_refused(tmp_path: Path) -> None:
    with octopus.Engine(path=tmp_path / "d") as e:
        e.set("a { port: 80 }")
        s = e.session()
        s.set("lease { holder: s }", ephemeral=True)
        e.invariant("lease_held", "violation(a) :- \\+ record(lease).")
        s.close()                                           # goes whatever it says
        assert not e.exists("lease")
        assert e.stats()["persistence_status"] == "ok"
    with octopus.Engine(path=tmp_path / "d") as e:
        assert [r.name for r in e.get_all("_")] == ["a"]


def test_derived_watches_follow_a_durable_engine(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.rules(RULES)
        events: list[RowEvent] = []
        e.watch_relation("unbound", events.append, existing=True)
        e.set("dev.0 { class: net }")
        e.set("seq.", sequential=True)                      # the planned path
        e.set("drv.0 { device: dev.0 }")
        e.set_many([("dev.1", {"class": octopus.Atom("net")})])
        e.delete("drv.0")
        e.flush()
        assert [(x.mode, x.row) for x in events] == [
            (Mode.ON_SET, ("dev.0",)), (Mode.ON_DEL, ("dev.0",)), (Mode.ON_SET, ("dev.1",)),
            (Mode.ON_SET, ("dev.0",))]
        assert [x.revision for x in events] == sorted(x.revision for x in events)
    with octopus.Engine(path=d) as e:                       # the rules came back with it
        assert sorted(s["D"] for s in e.prolog("unbound(D)")) == ["dev.0", "dev.1"]
        events = []
        e.watch_relation("unbound", events.append, existing=True)
        e.set("drv.1 { device: dev.1 }")
        e.flush()
        assert [(x.mode, x.row) for x in events] == [
            (Mode.ON_SET, ("dev.0",)), (Mode.ON_SET, ("dev.1",)), (Mode.ON_DEL, ("dev.1",))]

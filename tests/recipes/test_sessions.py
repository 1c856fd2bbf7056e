"""Sessions and ephemeral records, the ground the recipes stand on (docs/guarantees.md)."""

from __future__ import annotations

import threading

import pytest

import octopus
from octopus import EngineClosed, Mode, NotFound, Trigger
from octopus.recipes import Store

from .threads import Threads, eventually


def test_engine_and_session_are_stores(store: Store) -> None:
    assert isinstance(store, Store)
    with store.session() as s:
        assert isinstance(s, Store)


def test_ephemeral_record_goes_with_its_session_and_fires_on_del(store: Store) -> None:
    events: list[octopus.Event] = []
    store.watch("r'^eph'", events.append, on=Mode.ON_DEL)
    s = store.session()
    s.set("eph1 { a: 1 }", ephemeral=True)
    s.set("eph2 { a: 2 }")  # not ephemeral: stays
    assert store.get_names("r'^eph'") == ["eph1", "eph2"]
    s.close()
    assert store.get_names("r'^eph'") == ["eph2"]
    store.flush()
    assert [(e.mode, str(e.record)) for e in events] == [(Mode.ON_DEL, "eph1 { a: 1 }")]


def test_closing_a_session_removes_its_triggers_and_subscriptions(store: Store) -> None:
    got: list[octopus.Event] = []
    s = store.session()
    s.watch("x", got.append)
    one_shot = Trigger(got.append, on=Mode.ON_SET)
    s.exists("y", trigger=one_shot)
    s.subscribe("_ { topic: 1 }", got.append)
    s.close()
    store.flush()
    assert [e.mode for e in got] == [Mode.REMOVED] * 3
    got.clear()
    store.set("x { v: 1 }")
    store.set("y { v: 1 }")
    assert store.publish("m { topic: 1 }") == 0
    store.flush()
    assert got == []


def test_a_closed_session_refuses_calls_and_closing_twice_is_harmless(store: Store) -> None:
    s = store.session()
    s.close()
    s.close()
    with pytest.raises(EngineClosed):
        s.set("a { x: 1 }")
    with pytest.raises(EngineClosed):
        s.get("a")
    with pytest.raises(EngineClosed):
        s.lock("l").acquire()


def test_ephemeral_record_already_deleted_or_replaced(store: Store) -> None:
    s = store.session()
    s.set("gone { a: 1 }", ephemeral=True)
    s.set("kept { a: 1 }", ephemeral=True)
    store.delete("gone")
    store.set("kept { a: 2 }")  # replaced by a plain set: no longer the session's
    s.close()
    assert store.get("kept")["a"] == 2
    assert not store.exists("gone")


def test_ephemeral_record_taken_over_by_another_session(store: Store) -> None:
    s1, s2 = store.session(), store.session()
    s1.set("r { owner: 1 }", ephemeral=True)
    s2.set("r { owner: 2 }", ephemeral=True)
    s1.close()
    assert store.get("r")["owner"] == 2
    s2.close()
    assert not store.exists("r")


def test_sessions_made_from_sessions_and_engine_close_ends_them() -> None:
    engine = octopus.Engine()
    s = engine.session()
    inner = s.session()
    inner.set("e { a: 1 }", ephemeral=True)
    s.close()  # closing the parent session does not close its sibling
    assert engine.exists("e")
    engine.close()
    assert inner.closed
    with pytest.raises(EngineClosed):
        inner.get("e")


def test_wait_for_in_a_session_closed_meanwhile_raises_engine_closed(store: Store) -> None:
    s = store.session()
    threads = Threads()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            s.wait_for("never")
        except EngineClosed as e:
            outcome.append(e)

    started = threading.Event()
    store.watch("r'^never'", lambda e: None)  # a trigger of the store's own: unaffected
    threads.start(lambda: (started.set(), wait()))
    started.wait()
    eventually(lambda: len(_installed(store)) >= 2 or not _has_core(store), "wait_for's trigger")
    s.close()
    threads.join()
    assert len(outcome) == 1


def test_ephemeral_records_of_a_session_are_deleted_in_one_go(store: Store) -> None:
    """Every ephemeral record is gone by the time close() returns (no later trickle)."""
    s = store.session()
    for i in range(50):
        s.set("%n { i: %d }", f"many{i}", i, ephemeral=True)
    s.close()
    assert store.get_names("r'^many'") == []
    with pytest.raises(NotFound):
        store.get("_ { i: 3 }")


def _has_core(store: Store) -> bool:
    return hasattr(store, "_core")


def _installed(store: Store) -> list[object]:
    return list(store._core.registry) if _has_core(store) else []  # type: ignore[attr-defined]

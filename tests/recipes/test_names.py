"""Name service: register, lookup, wait, unregister, services; ephemeral through a session."""

from __future__ import annotations

import pytest

from octopus import EngineClosed, NotFound, QueryError, WaitTimeout
from octopus.recipes import Store

from .threads import Threads


def test_register_lookup_unregister_services(store: Store) -> None:
    names = store.names
    r = names.register("serial", iref=42, kind="uart", speed=1.5, up=True)
    assert str(r) == "serial { iref: 42, kind: 'uart', registered: true, speed: 1.5, up: true }"
    names.register("net.e1000", iref=7, kind="ethernet")
    assert names.lookup("serial")["iref"] == 42
    assert names.lookup("_ { kind: %s }", "ethernet").name == "net.e1000"
    assert names.lookup("_ { iref > 10 }").name == "serial"
    assert names.services() == ["net.e1000", "serial"]
    names.unregister("serial")
    with pytest.raises(NotFound):
        names.lookup("serial")
    with pytest.raises(NotFound):
        names.unregister("serial")
    assert names.services() == ["net.e1000"]


def test_plain_records_are_not_services(store: Store) -> None:
    store.set("printer { iref: 1 }")
    with pytest.raises(NotFound):
        store.names.lookup("printer")
    with pytest.raises(NotFound):
        store.names.unregister("printer")
    assert store.exists("printer")
    assert store.names.services() == []


def test_registration_through_a_session_ends_with_it(store: Store) -> None:
    with store.session() as s:
        s.names.register("fs", iref=3)
        assert store.names.lookup("fs")["iref"] == 3
    with pytest.raises(NotFound):
        store.names.lookup("fs")


def test_wait_returns_a_present_or_later_registration(store: Store) -> None:
    store.names.register("early", iref=1)
    assert store.names.wait("early", timeout=0).name == "early"
    threads = Threads()
    threads.start(lambda: store.names.wait("_ { kind: %s }", "late", timeout=30))
    store.set("late.decoy { kind: 'late' }")  # not a service: wait goes on
    with store.session() as s:
        s.names.register("late.svc", kind="late")
        threads.join()
    assert threads.results[0].name == "late.svc"


def test_wait_times_out_and_leaves_no_trigger(store: Store) -> None:
    with pytest.raises(WaitTimeout):
        store.names.wait("nobody", timeout=0.05)
    core = getattr(store, "_core", None)
    if core is not None:
        assert not len(core.registry)


def test_wait_in_a_session_closed_meanwhile(store: Store) -> None:
    s = store.session()
    threads = Threads()
    threads.start(s.names.wait, "never")
    core = getattr(store, "_core", None)
    if core is not None:
        from .threads import eventually

        eventually(lambda: len(core.registry) == 1, "wait installed")
    s.close()
    with pytest.raises(EngineClosed):
        threads.join()


@pytest.mark.parametrize("attrs", [{"registered": 1}, {"Bad": 1}, {"x": None}, {"x": [1]}])
def test_bad_registrations(store: Store, attrs: dict[str, object]) -> None:
    with pytest.raises(QueryError):
        store.names.register("svc", **attrs)
    with pytest.raises(QueryError):
        store.names.register("Not valid", iref=1)

"""Sessions: ephemeral records and the triggers of a session end with it."""

from __future__ import annotations

import octopus
from octopus import Event, Mode


def test_closing_a_session_deletes_its_ephemeral_records_firing_on_del(
        engine: octopus.Engine) -> None:
    got: list[Event] = []
    engine.watch("_ { owner: _ }", got.append, on=Mode.ON_DEL)
    s = engine.session()
    s.set("eph { owner: 's' }", ephemeral=True)
    s.set("durable { owner: 's' }")
    s.close()
    engine.flush()
    assert engine.get_names("_") == ["durable"]
    assert [e.record.name for e in got] == ["eph"]
    s.close()  # twice is fine


def test_a_session_s_triggers_end_with_it(engine: octopus.Engine) -> None:
    got: list[Event] = []
    with engine.session() as s:
        s.watch("x", got.append)
    engine.set("x")
    engine.flush()
    assert [e.mode for e in got] == [Mode.REMOVED]


def test_replacing_an_ephemeral_record_transfers_ownership(engine: octopus.Engine) -> None:
    a, b = engine.session(), engine.session()
    a.set("node { v: 1 }", ephemeral=True)
    b.set("node { v: 2 }")                   # replaced by a durable record
    a.close()
    assert engine.get("node")["v"] == 2
    b.set("node { v: 3 }", ephemeral=True)
    b.close()
    assert not engine.exists("node")


def test_ephemeral_records_of_the_engine_end_with_it() -> None:
    e = octopus.Engine()
    s = e.session()
    s.set("from_session", ephemeral=True)
    e.set("from_engine", ephemeral=True)
    e.close()
    assert s.closed


def test_closed_session_refuses_calls_but_engine_goes_on(engine: octopus.Engine) -> None:
    s = engine.session()
    s.close()
    try:
        s.set("x")
    except octopus.EngineClosed:
        pass
    else:
        raise AssertionError("closed session accepted a call")
    engine.set("x")
    assert engine.exists("x")


def test_sequential_ephemeral_lock_entries(engine: octopus.Engine) -> None:
    holders = [engine.session() for _ in range(3)]
    names = [s.set("lk_ { lock: 'l' }", sequential=True, ephemeral=True).name for s in holders]
    assert names == ["lk_0", "lk_1", "lk_2"]
    holders[0].close()
    assert engine.get_names("_ { lock: 'l' }") == ["lk_1", "lk_2"]


def test_only_the_installing_session_removes_a_trigger(engine: octopus.Engine) -> None:
    got: list[Event] = []
    with engine.session() as other:
        trigger = engine.watch("x", got.append)
        sub = engine.subscribe("m", got.append)
        for remove in (lambda: other.remove_trigger(trigger),
                       lambda: other.remove_trigger(trigger.id),
                       lambda: other.unsubscribe(sub)):
            try:
                remove()
            except octopus.TriggerNotFound:
                continue
            raise AssertionError("another session removed a trigger it did not install")
        # A subscription is not a trigger, nor the other way round, even for its owner.
        for remove in (lambda: engine.remove_trigger(sub.id),
                       lambda: engine.unsubscribe(trigger.id)):
            try:
                remove()
            except octopus.TriggerNotFound:
                continue
            raise AssertionError("removed through the wrong kind of call")
    engine.set("x")
    engine.publish("m")
    engine.remove_trigger(trigger)
    engine.unsubscribe(sub)
    engine.flush()
    assert [e.mode for e in got] == [Mode.ON_SET, Mode.ON_PUBLISH, Mode.REMOVED, Mode.REMOVED]

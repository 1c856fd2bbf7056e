"""Publish/subscribe: docs/guarantees.md §Publish/subscribe."""

from __future__ import annotations

import threading

import pytest

import octopus
from octopus import Event, Mode


def collect() -> tuple[list[Event], object]:
    got: list[Event] = []
    return got, got.append


def test_constraint_regex_and_name_subscriptions(engine: octopus.Engine) -> None:
    by_value, h1 = collect()
    by_regex, h2 = collect()
    by_name, h3 = collect()
    engine.subscribe("_ { weight: _, weight > 10 }", h1)
    engine.subscribe("_ { colour: r'^(red|blue)$' }", h2)
    engine.subscribe("alarm", h3)
    assert engine.publish("box { weight: 20, colour: 'red' }") == 2
    assert engine.publish("box { weight: 5, colour: 'green' }") == 0
    assert engine.publish("alarm { level: 3 }") == 1
    assert engine.publish("alarmx") == 0
    engine.flush()
    assert [e.record["weight"] for e in by_value] == [20]
    assert [e.record["colour"] for e in by_regex] == ["red"]
    assert [e.record.name for e in by_name] == ["alarm"]
    assert all(e.mode == Mode.ON_PUBLISH for e in by_value + by_regex + by_name)


def test_messages_are_never_stored_or_replayed(engine: octopus.Engine) -> None:
    assert engine.publish("msg { n: 1 }") == 0
    assert engine.get_names("_") == [] and engine.revision == 0
    got, h = collect()
    engine.subscribe("msg", h)
    engine.flush()
    assert got == []


def test_a_message_reaches_every_matching_subscription(engine: octopus.Engine) -> None:
    a, ha = collect()
    b, hb = collect()
    engine.subscribe("_ { t: 1 }", ha)
    engine.subscribe("m", hb)
    assert engine.publish("m { t: 1 }") == 2
    engine.flush()
    assert len(a) == len(b) == 1


def test_unsubscribe_delivers_removed_last(engine: octopus.Engine) -> None:
    got, h = collect()
    sub = engine.subscribe("m", h)
    engine.publish("m { i: 1 }")
    engine.unsubscribe(sub)
    assert engine.publish("m { i: 2 }") == 0
    engine.flush()
    assert [e.mode for e in got] == [Mode.ON_PUBLISH, Mode.REMOVED]
    with pytest.raises(octopus.TriggerNotFound):
        engine.unsubscribe(sub)


def test_subscriptions_and_triggers_do_not_mix(engine: octopus.Engine) -> None:
    got, h = collect()
    sub = engine.subscribe("m", h)
    t = engine.watch("m", h)
    engine.set("m")
    assert engine.publish("m") == 1
    with pytest.raises(octopus.TriggerNotFound):
        engine.remove_trigger(sub.id)
    with pytest.raises(octopus.TriggerNotFound):
        engine.unsubscribe(t.id)  # type: ignore[arg-type]
    engine.flush()
    assert sorted(e.mode.value for e in got) == [Mode.ON_SET.value, Mode.ON_PUBLISH.value]


def test_publish_order_per_subscription(engine: octopus.Engine) -> None:
    got, h = collect()
    engine.subscribe("_ { seq: _ }", h)

    def publisher(p: int) -> None:
        for i in range(200):
            engine.publish("m { p: %d, seq: %d }", p, i)

    threads = [threading.Thread(target=publisher, args=(p,)) for p in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.flush()
    assert len(got) == 600
    for p in range(3):
        assert [e.record["seq"] for e in got if e.record["p"] == p] == list(range(200))


@pytest.mark.parametrize("bad", ["_ { a: 1 }", "m { a: _ }", "m { a == 1 }", "m { a: r'x' }"])
def test_bad_messages(engine: octopus.Engine, bad: str) -> None:
    engine.subscribe("_", lambda e: None)
    with pytest.raises(octopus.QueryError):
        engine.publish(bad)


def test_session_close_ends_its_subscriptions(engine: octopus.Engine) -> None:
    got, h = collect()
    with engine.session() as s:
        s.subscribe("m", h)
        assert engine.publish("m") == 1
    assert engine.publish("m") == 0
    engine.flush()
    assert [e.mode for e in got] == [Mode.ON_PUBLISH, Mode.REMOVED]

"""The writer's side of delivery (docs/events.md §The writer's share): which triggers are
decided in Python without the full match in Prolog, and the dispatcher's queue."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

import octopus
from octopus import Event, Mode
from octopus.adapter import encode_attributes
from octopus.events import Dispatcher
from octopus.record import Atom, Record

QUERIES = [
    "_ { k: _ }", "dev { k: _ }", "other { k: _ }", "dev", "_", "_ { k: 1 }", "_ { k: 1.0 }",
    "_ { k: true }", "_ { k: false }", "_ { k: 0 }", "_ { k: 'a' }", "_ { k: a }",
    "_ { k: 1, j: _ }", "dev { k: 'a', j: 2 }", "_ { k: -5 }", "_ { k: 'é' }",
    "_ { j: _, k: _ }", "_ { k: 2.5 }", "_ { k > 0 }", "r'^d' { k: _ }",
]
VALUES: list[Any] = [1, 1.0, True, False, 0, "a", Atom("a"), 2.5, "é", -5, "1", None]


def records() -> list[Record]:
    out = []
    for name, k, j in itertools.product(("dev", "other"), VALUES, (None, 2, "x")):
        attrs = {key: v for key, v in (("k", k), ("j", j)) if v is not None}
        out.append(Record(name, attrs))
    return out


def test_python_decides_exactly_as_the_full_match_in_prolog(engine: octopus.Engine) -> None:
    for q in QUERIES:
        engine.watch(q, lambda event: None)
    core = engine._core
    ids = sorted(inst.id for inst in core.registry)
    for record in records():
        prolog, costly = core.store.trigger_match(ids, record.name,
                                                  encode_attributes(record.attributes))
        assert not costly
        got = [d[3] for d in core.registry.match(Mode.ON_SET, record, 1)]
        assert got == prolog, (record, got, prolog)


def test_many_candidates_take_the_bitmap_path_and_agree(engine: octopus.Engine) -> None:
    # More candidates than the one-by-one loop takes: decided, Prolog and ON_DEL-only
    # triggers interleaved by id.
    for i in range(300):
        q = ("_ { k: _ }", "_ { k: 1.0 }", "_ { k: 'a' }", "_ { k < 3 }")[i % 4]
        engine.watch(q, lambda event: None, on=Mode.ON_DEL if i % 5 == 0 else Mode.ON_SET)
    core = engine._core
    set_ids = sorted(inst.id for inst in core.registry if inst.mode & Mode.ON_SET)
    for record in records():
        prolog, _ = core.store.trigger_match(set_ids, record.name,
                                             encode_attributes(record.attributes))
        got = [d[3] for d in core.registry.match(Mode.ON_SET, record, 1)]
        assert got == prolog, record


def test_decided_triggers_skip_the_prolog_match(engine: octopus.Engine,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = engine._core.store
    calls: list[list[int]] = []
    real = store.trigger_match

    def counted(qids: list[int], name: str, pairs: Any) -> tuple[list[int], list[int]]:
        calls.append(qids)
        return real(qids, name, pairs)

    monkeypatch.setattr(store, "trigger_match", counted)
    got: list[Event] = []
    a = engine.watch("_ { vendor: _ }", got.append)
    b = engine.watch("hw { vendor: 5, id: a }", got.append)
    engine.set("hw { vendor: 5, id: a }")
    engine.set("hw { vendor: 6 }")
    engine.flush()
    assert [(e.trigger_id, e.record.attributes if e.record else None) for e in got] == [
        (a.id, {"id": Atom("a"), "vendor": 5}), (b.id, {"id": Atom("a"), "vendor": 5}),
        (a.id, {"vendor": 6})]
    assert calls == []
    c = engine.watch("_ { vendor > 1 }", got.append)
    engine.set("hw { vendor: 5.0, id: a }")         # 5 == 5.0: kinds differ, Prolog decides
    engine.flush()
    assert calls == [[b.id, c.id]]
    assert [e.trigger_id for e in got[3:]] == [a.id, b.id, c.id]


def test_one_shot_decided_in_python_is_removed_with_its_event(engine: octopus.Engine) -> None:
    got: list[Event] = []
    t = octopus.Trigger(got.append, on=Mode.ON_SET)
    engine.exists("_ { vendor: _ }", trigger=t)
    engine.set("hw { vendor: 1 }")
    engine.set("hw { vendor: 2 }")
    engine.flush()
    assert [(e.mode, e.trigger_id) for e in got] == [(Mode.ON_SET | Mode.REMOVED, t.id)]
    assert len(engine._core.registry) == 0


def test_dispatcher_keeps_each_threads_order_and_flush_waits_for_all() -> None:
    d = Dispatcher("test-dispatcher", max_pending=50)
    seen: dict[int, list[int]] = {}
    lock = threading.Lock()

    def handler(event: Any) -> None:
        with lock:
            seen.setdefault(event.trigger_id, []).append(event.revision)

    def writer(tid: int) -> None:
        for i in range(0, 3000, 3):
            d.put(handler, Event(Mode.ON_SET, None, tid, i))
            d.put_many([(handler, Event(Mode.ON_SET, None, tid, i + 1))])
            d.put_deliveries([(handler, Mode.ON_SET, None, tid, i + 2)])
            d.wait_for_room()
            assert d.pending <= 50 + 3 * 4      # bounded: each writer overshoots ≤ 3

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert d.flush(timeout=30)
    assert d.pending == 0
    assert seen == {t: list(range(3000)) for t in range(4)}
    d.stop()
    assert not d.thread.is_alive()


def test_dispatcher_makes_events_and_survives_handlers_that_raise() -> None:
    d = Dispatcher("test-dispatcher")
    got: list[Any] = []

    def bad(event: Any) -> None:
        raise SystemExit

    rec = Record("x", {"a": 1})
    d.put_deliveries([(bad, Mode.ON_SET, rec, 7, 3), (got.append, Mode.ON_DEL, rec, 8, 4)])
    assert d.flush(timeout=10)
    assert got == [Event(Mode.ON_DEL, rec, 8, 4)] and type(got[0]) is Event
    d.stop()


def test_dispatcher_wakes_for_each_put_after_sleeping_and_stops_asleep() -> None:
    d = Dispatcher("test-dispatcher")
    got: list[Any] = []
    for i in range(20):
        time.sleep(0.002)           # let it fall asleep between puts
        d.put_deliveries([(got.append, Mode.ON_SET, None, i, i)])
        assert d.flush(timeout=10)
        assert len(got) == i + 1
    time.sleep(0.01)
    started = time.monotonic()
    d.stop(timeout=10)
    assert not d.thread.is_alive() and time.monotonic() - started < 5


def test_flush_times_out_while_a_handler_blocks() -> None:
    d = Dispatcher("test-dispatcher")
    release = threading.Event()
    d.put(lambda event: release.wait(10), Event(Mode.ON_SET, None, 1, 1))
    assert d.flush(timeout=0.05) is False
    release.set()
    assert d.flush(timeout=10)
    d.stop()


def test_watch_installs_without_running_its_query(engine: octopus.Engine) -> None:
    # Running it would build the store's index of each key it names, which every later
    # write would maintain (10,000 watches on distinct keys: 64 indexes, ~2x a set).
    for i in range(20):
        engine.set(f"r{i} {{ key{i}: {i} }}")
    got: list[Event] = []
    for i in range(20):
        engine.watch(f"_ {{ key{i}: _ }}", got.append)
    assert engine._core.store.indexed_keys() == []
    engine.set("r3 { key3: 4 }")
    engine.flush()
    assert [e.record.name for e in got if e.record] == ["r3"]
    with pytest.raises(octopus.QueryError):
        engine.watch("_ { key: r'(' }", got.append)
    with pytest.raises(octopus.QueryError):
        engine.watch("_ { key: ", got.append)
    assert len(engine._core.registry) == 20

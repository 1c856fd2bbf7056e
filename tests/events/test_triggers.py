"""docs/guarantees.md §Triggers: their installation, delivery guarantees and the index."""

from __future__ import annotations

import logging
import threading
import time

import pytest

import octopus
from octopus import Event, Mode, NotFound, Trigger, TriggerNotFound
from octopus.query.compile import compile_query
from octopus.record import Record
from octopus.registry import QueryIndex


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def modes(self) -> list[Mode]:
        return [e.mode for e in self.events]

    @property
    def names(self) -> list[str | None]:
        return [e.record.name if e.record else None for e in self.events]


def test_one_shot_on_del_on_a_regex_query(engine: octopus.Engine) -> None:
    rec = Recorder()
    engine.set("obj1 { attr: 3 }")
    t = Trigger(rec, on=Mode.ON_DEL)
    assert engine.get("r'^obj.$' { attr: 3 }", trigger=t).name == "obj1"
    assert t.id is not None and t.installed
    engine.set("obj2 { attr: 3 }")                   # ON_SET: not watched
    engine.delete("obj1")
    engine.delete("obj2")                            # one-shot: already gone
    engine.flush()
    assert rec.modes == [Mode.ON_DEL | Mode.REMOVED]
    assert rec.names == ["obj1"] and rec.events[0].revision == 3
    with pytest.raises(TriggerNotFound):
        engine.remove_trigger(t)


def test_persistent_trigger_until_removed(engine: octopus.Engine) -> None:
    rec = Recorder()
    t = Trigger(rec, on=Mode.ON_SET | Mode.ON_DEL, persist=True)
    engine.exists("_ { weight: _ }", trigger=t)
    engine.set("a { weight: 1 }")
    engine.set("b { other: 1 }")
    engine.set("a { weight: 2 }")
    engine.delete("a")
    engine.remove_trigger(t)
    engine.set("c { weight: 3 }")
    engine.flush()
    assert rec.modes == [Mode.ON_SET, Mode.ON_SET, Mode.ON_DEL, Mode.REMOVED]
    assert [e.record["weight"] if e.record else None for e in rec.events] == [1, 2, 2, None]
    revisions = [e.revision for e in rec.events]
    assert revisions == sorted(revisions) and rec.events[-1].record is None
    with pytest.raises(TriggerNotFound):
        engine.remove_trigger(t)
    with pytest.raises(TriggerNotFound):
        engine.remove_trigger(12345)


def test_install_if_missing_waits_for_creation(engine: octopus.Engine) -> None:
    rec = Recorder()
    t = Trigger(rec, on=Mode.ON_SET, install_if="missing")
    with pytest.raises(NotFound):
        engine.get("service { iref: _ }", trigger=t)
    assert t.installed
    engine.set("service { iref: 42 }")
    engine.flush()
    assert rec.modes == [Mode.ON_SET | Mode.REMOVED] and rec.events[0].record["iref"] == 42

    engine.set("present")
    t2 = Trigger(rec, install_if="missing")
    engine.get("present", trigger=t2)
    assert not t2.installed


def test_install_if_found(engine: octopus.Engine) -> None:
    t = Trigger(Recorder(), install_if="found")
    assert engine.get_names("_", trigger=t) == [] and not t.installed
    engine.set("x")
    t2 = Trigger(Recorder(), install_if="found")
    assert engine.exists("x", trigger=t2) and t2.installed
    t3 = Trigger(Recorder(), install_if="found")
    with pytest.raises(NotFound):
        engine.delete("nothing", trigger=t3)
    assert not t3.installed


def test_always_installation_through_get_names(engine: octopus.Engine) -> None:
    rec = Recorder()
    t = Trigger(rec, on=Mode.ON_SET, persist=True, install_if="always")
    assert engine.get_names("r'^node' { up: true }", trigger=t) == []
    assert t.installed
    engine.set("node1 { up: true }")
    engine.set("node2 { up: false }")
    engine.set("node3 { up: true }")
    engine.flush()
    assert rec.names == ["node1", "node3"]


def test_the_installing_call_does_not_fire_its_trigger(engine: octopus.Engine) -> None:
    rec = Recorder()
    r = engine.set("x { a: 1 }", trigger=Trigger(rec, on=Mode.ON_SET | Mode.ON_DEL))
    engine.flush()
    assert rec.events == []
    engine.delete("x")
    engine.flush()
    assert rec.modes == [Mode.ON_DEL | Mode.REMOVED] and rec.events[0].record == r


def test_delete_with_trigger_watches_recreation(engine: octopus.Engine) -> None:
    rec = Recorder()
    engine.set("x { a: 1 }")
    engine.delete("x", trigger=Trigger(rec, on=Mode.ON_SET))
    engine.set("x { a: 2 }")
    engine.flush()
    assert rec.names == ["x"]


def test_set_trigger_on_failed_condition(engine: octopus.Engine) -> None:
    rec = Recorder()
    t = Trigger(rec, on=Mode.ON_SET, install_if="missing")
    with pytest.raises(octopus.ConditionFailed):
        engine.set("cfg { v: 2, v == 1 }", trigger=t)
    assert t.installed


def test_sequential_set_trigger_watches_the_final_name(engine: octopus.Engine) -> None:
    rec = Recorder()
    r = engine.set("job_ { state: 'new' }", sequential=True,
                   trigger=Trigger(rec, on=Mode.ON_DEL))
    engine.delete(r.name)
    engine.flush()
    assert rec.names == [r.name]


def test_trigger_objects_are_installed_once(engine: octopus.Engine) -> None:
    t = Trigger(Recorder())
    engine.exists("x", trigger=t)
    with pytest.raises(octopus.QueryError):
        engine.exists("y", trigger=t)


def test_one_trigger_passed_by_two_threads_at_once_is_installed_once() -> None:
    # The "already installed" check and the installation are one atomic step.
    for _ in range(200):
        with octopus.Engine() as engine:
            t = Trigger(Recorder(), persist=True)
            start = threading.Barrier(2)
            outcomes: list[str] = []

            def install(t: Trigger = t, start: threading.Barrier = start,
                        outcomes: list[str] = outcomes, engine: octopus.Engine = engine) -> None:
                start.wait()
                try:
                    engine.exists("x", trigger=t)
                    outcomes.append("installed")
                except octopus.QueryError:
                    outcomes.append("refused")

            threads = [threading.Thread(target=install) for _ in range(2)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert sorted(outcomes) == ["installed", "refused"]
            assert len(engine._core.registry) == 1


def test_a_trigger_not_installed_by_its_call_may_be_passed_again(
        engine: octopus.Engine) -> None:
    t = Trigger(Recorder(), install_if="found")
    assert not engine.exists("x", trigger=t) and not t.installed
    with pytest.raises(octopus.QueryError):
        engine.exists("_ { a: r'(' }", trigger=t)
    engine.set("x")
    assert engine.exists("x", trigger=t) and t.installed


def test_a_sequential_set_checks_its_trigger_before_the_change() -> None:
    # The trigger of a sequential set watches the final name; nothing about it may fail
    # after the record is stored (a text at the length limit once did).
    with octopus.Engine(max_query_length=40) as engine:
        rec = Recorder()
        text = "job_ { k: '" + "v" * 24 + "' }"
        assert len(text.encode()) <= 40
        r = engine.set(text, sequential=True, trigger=Trigger(rec))
        assert r.name == "job_0"
        engine.set("job_1 { k: %s }", r["k"])          # another name: not watched
        engine.set("job_0 { k: %s }", r["k"])
        engine.flush()
        assert [e.record.name for e in rec.events] == ["job_0"]
        with pytest.raises(octopus.QueryError):
            engine.set("job_ { k: '" + "v" * 40 + "' }", sequential=True, trigger=Trigger(rec))
        assert engine.get_names("_") == ["job_0", "job_1"] and engine.revision == 3


@pytest.mark.parametrize("kwargs", [
    {"on": Mode.REMOVED}, {"on": Mode.ON_PUBLISH}, {"on": 3}, {"install_if": "sometimes"}])
def test_bad_trigger_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(octopus.QueryError):
        Trigger(lambda e: None, **kwargs)  # type: ignore[arg-type]


def test_invalid_trigger_query_installs_nothing(engine: octopus.Engine) -> None:
    t = Trigger(Recorder())
    with pytest.raises(octopus.QueryError):
        engine.exists("_ { a: r'(' }", trigger=t)
    assert not t.installed and not len(engine._core.registry)


def test_numbers_and_types_match_triggers_like_queries(engine: octopus.Engine) -> None:
    rec = Recorder()
    engine.watch("_ { v: 1 }", rec)
    engine.watch("_ { flag: true }", rec)
    engine.set("a { v: 1.0 }")
    engine.set("b { v: true }")
    engine.set("c { flag: 1 }")
    engine.set("d { flag: true }")
    engine.flush()
    assert rec.names == ["a", "d"]


def test_handlers_may_call_the_engine(engine: octopus.Engine) -> None:
    rec = Recorder()
    seen: list[str] = []

    def handler(event: Event) -> None:
        assert event.record is not None
        seen.append(engine.get(event.record.name).name)
        engine.set("echo_ { of: %s }", event.record.name, sequential=True)
        t = engine.watch("never", rec)
        engine.remove_trigger(t)

    engine.watch("r'^src'", handler, on=Mode.ON_SET)
    engine.set("src1")
    engine.set("src2")
    engine.flush()
    engine.flush()
    assert seen == ["src1", "src2"]
    assert engine.get_names("r'^echo_'") == ["echo_0", "echo_1"]
    assert rec.modes == [Mode.REMOVED, Mode.REMOVED]


def test_handler_runs_on_the_dispatcher_thread_not_under_the_lock(engine: octopus.Engine) -> None:
    where: list[tuple[str, bool]] = []

    def handler(event: Event) -> None:
        where.append((threading.current_thread().name, engine._core.lock.locked()))

    engine.watch("x", handler)
    engine.set("x")
    engine.flush()
    assert where == [(f"octopus-events-{engine._core.number}", False)]


def test_raising_handler_is_logged_and_others_still_get_events(
        engine: octopus.Engine, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()

    def bad(event: Event) -> None:
        raise ValueError("boom")

    t = engine.watch("x", bad)
    engine.watch("x", rec)
    with caplog.at_level(logging.ERROR, logger="octopus.events"):
        engine.set("x")
        engine.set("x")
        engine.flush()
    assert len(rec.events) == 2
    assert f"trigger {t.id}" in caplog.text and "boom" in caplog.text


def test_a_handler_raising_systemexit_does_not_stop_the_dispatcher(
        engine: octopus.Engine, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()

    def leaving(event: Event) -> None:
        raise SystemExit(3) if event.record["n"] == 1 else KeyboardInterrupt

    engine.watch("_ { n: _ }", leaving)
    engine.watch("_ { n: _ }", rec)
    with caplog.at_level(logging.ERROR, logger="octopus.events"):
        for n in range(1, 4):
            engine.set("x { n: %d }", n)
        assert engine.flush(timeout=10)
    assert [e.record["n"] for e in rec.events] == [1, 2, 3]
    assert "SystemExit" in caplog.text and "KeyboardInterrupt" in caplog.text


def test_writers_wait_when_the_event_queue_is_full(engine: octopus.Engine) -> None:
    gate = threading.Event()
    seen: list[int] = []

    def blocked(event: Event) -> None:
        gate.wait(10)
        seen.append(event.record["n"])
        if event.record["n"] == 0:      # a handler may write even when the queue is full
            engine.set("from.handler { n: -1 }")

    engine.watch("_ { n: _ }", blocked)
    engine._core.dispatcher.max_pending = 5
    writer_done = threading.Event()

    def writer() -> None:
        for n in range(20):
            engine.set("w { n: %d }", n)
        writer_done.set()

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.3)
    # The writer is held back while handlers are behind: the queue stays near its bound.
    assert not writer_done.is_set()
    assert engine._core.dispatcher.pending <= 6
    gate.set()
    t.join(10)
    assert writer_done.is_set() and engine.flush(10)
    assert sorted(seen) == [-1, *range(20)]


def test_slow_handler_loses_nothing(engine: octopus.Engine) -> None:
    rec = Recorder()

    def slow(event: Event) -> None:
        time.sleep(0.01)

    engine.watch("_ { n: _ }", slow)
    engine.watch("_ { n: _ }", rec)
    for i in range(30):
        engine.set(f"r{i} {{ n: {i} }}")
    assert engine.flush(timeout=10)
    assert [e.record["n"] for e in rec.events] == list(range(30))


def test_flush_from_a_handler_returns(engine: octopus.Engine) -> None:
    done = threading.Event()

    def handler(event: Event) -> None:
        engine.flush()
        done.set()

    engine.watch("x", handler)
    engine.set("x")
    assert done.wait(5)


def test_four_writers_one_persistent_trigger(engine: octopus.Engine) -> None:
    rec = Recorder()
    engine.watch("r'^w' { i: _ }", rec, on=Mode.ON_SET | Mode.ON_DEL)
    engine.watch("noise", Recorder())

    def writer(w: int) -> None:
        for i in range(300):
            if i % 3 == 2:
                engine.delete(f"w{w}_{i - 1}")
            else:
                engine.set(f"w{w}_{i} {{ i: {i} }}")
            engine.set("unrelated { i: 0 }") if i % 50 == 0 else None

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.flush()
    assert len(rec.events) == 4 * 300
    revisions = [e.revision for e in rec.events]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
    assert sum(1 for e in rec.events if e.mode == Mode.ON_DEL) == 4 * 100


def test_watch_existing_has_no_gap_and_no_duplicate(engine: octopus.Engine) -> None:
    for i in range(50):
        engine.set(f"item{i} {{ v: 0 }}")
    stop = threading.Event()

    def writer() -> None:
        v = 1
        while not stop.is_set():
            engine.set(f"item{v % 60} {{ v: {v} }}")
            v += 1

    th = threading.Thread(target=writer)
    th.start()
    time.sleep(0.02)
    rec = Recorder()
    engine.watch_existing("r'^item' { v: _ }", rec, on=Mode.ON_SET)
    time.sleep(0.05)
    stop.set()
    th.join()
    engine.flush()
    last: dict[str, Record] = {}
    per_name_revs: dict[str, list[int]] = {}
    for e in rec.events:
        assert e.record is not None
        last[e.record.name] = e.record
        per_name_revs.setdefault(e.record.name, []).append(e.record.revision)
    for revs in per_name_revs.values():
        assert revs == sorted(revs) and len(set(revs)) == len(revs)
    final = {r.name: r for r in engine.get_all("r'^item'")}
    assert last == final
    assert all(last[n].revision == final[n].revision for n in final)


def test_watch_existing_starts_in_natural_order(engine: octopus.Engine) -> None:
    for n in ["d10", "d2", "d1"]:
        engine.set(f"{n} {{ k: 1 }}")
    rec = Recorder()
    engine.watch_existing("_ { k: 1 }", rec)
    engine.set("d0 { k: 1 }")
    engine.flush()
    assert rec.names == ["d1", "d2", "d10", "d0"]
    assert all(m == Mode.ON_SET for m in rec.modes)


def test_hundred_thousand_live_triggers(engine: octopus.Engine) -> None:
    rec = Recorder()
    triggers = [engine.watch(f"t{i}", rec) for i in range(100_000)]
    assert len({t.id for t in triggers}) == 100_000
    engine.set("t99999 { a: 1 }")
    engine.set("t5")
    engine.flush()
    assert rec.names == ["t99999", "t5"]
    for t in triggers[:1000]:
        engine.remove_trigger(t)
    engine.flush()
    assert len(engine._core.registry) == 99_000


def test_wait_for(engine: octopus.Engine) -> None:
    engine.set("ready { v: 1 }")
    assert engine.wait_for("ready")["v"] == 1
    threading.Timer(0.05, engine.set, args=("later { v: 2 }",)).start()
    assert engine.wait_for("later { v: 2 }", timeout=5)["v"] == 2
    with pytest.raises(octopus.WaitTimeout):
        engine.wait_for("never", timeout=0.05)
    with pytest.raises(TimeoutError):
        engine.wait_for("never", timeout=0.01)
    engine.flush()
    assert not len(engine._core.registry)


def test_wait_for_from_a_handler_is_refused(engine: octopus.Engine) -> None:
    errors: list[BaseException] = []

    def handler(event: Event) -> None:
        try:
            engine.wait_for("other", timeout=1)
        except octopus.OctopusError as e:
            errors.append(e)

    engine.watch("x", handler)
    engine.set("x")
    engine.flush()
    assert len(errors) == 1 and "deadlock" in str(errors[0])


def test_wait_for_ends_when_the_session_closes(engine: octopus.Engine) -> None:
    s = engine.session()
    threading.Timer(0.05, s.close).start()
    with pytest.raises(octopus.EngineClosed):
        s.wait_for("never", timeout=5)


def test_query_index_skips_non_matching_queries() -> None:
    index = QueryIndex()
    queries = {
        1: "x", 2: "_ { vendor: 32902 }", 3: "_ { vendor: 1 }", 4: "_ { class: _ }",
        5: "r'^hw'", 6: "_ { up: true }", 7: "_ { n > 3 }", 8: "_ { v: 1.0 }",
    }
    for qid, text in queries.items():
        index.add(qid, compile_query(text))
    cand = index.candidates("hw.0", {"vendor": 32902, "n": 5, "v": 1, "up": 1})
    assert set(cand) == {2, 5, 7, 8}
    assert set(index.candidates("x", {})) == {1, 5}
    for qid in queries:
        index.remove(qid)
    assert len(index) == 0 and not index.by_value and not index.by_key and not index.by_name

"""``octopus.connect``: the Session API over the network, checked against the engine.

Every test in the first part runs twice: on an in-process session and on a Client of a
real server process; the results must be the same."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import octopus
from octopus import (
    ConditionFailed,
    EngineClosed,
    Mode,
    NotFound,
    ParameterError,
    ParseError,
    QueryError,
    Trigger,
    TriggerNotFound,
    WaitTimeout,
)
from octopus.server import AuthenticationError, Client, connect

from .conftest import ServerProcess

_numbers = itertools.count()


@pytest.fixture(scope="module")
def engine() -> Iterator[octopus.Engine]:
    with octopus.Engine() as e:
        yield e


@pytest.fixture(params=["engine", "client"])
def store(request: pytest.FixtureRequest, engine: octopus.Engine,
          server: ServerProcess) -> Iterator[Any]:
    s = engine.session() if request.param == "engine" else connect(server.unix_url)
    yield s
    s.close()


@pytest.fixture
def ns() -> str:
    """A name prefix no other test uses (the server is shared by the module)."""
    return f"t{next(_numbers)}x"


def test_set_get_round_trip_keeps_types(store: Any, ns: str) -> None:
    r = store.set(f"{ns}a {{ i: 12345678901234567890, f: 1.5, s: 'it\\'s', at: eth, b: true }}")
    got = store.get(f"{ns}a")
    assert got == r and got.revision == r.revision > 0
    assert got["i"] == 12345678901234567890 and got["f"] == 1.5 and got["b"] is True
    assert isinstance(got["at"], octopus.Atom) and not isinstance(got["s"], octopus.Atom)
    assert str(got) == f"{ns}a {{ at: eth, b: true, f: 1.5, i: 12345678901234567890, s: 'it\\'s' }}"


def test_queries_parameters_and_order(store: Any, ns: str) -> None:
    for i in (10, 2, 1):
        store.set(f"{ns}obj{i} {{ n: %d, owner: %s }}", i, "ann")
    assert store.get_names(f"r'^{ns}obj'") == [f"{ns}obj1", f"{ns}obj2", f"{ns}obj10"]
    assert store.get(f"r'^{ns}' {{ n > %d }}", 1).name == f"{ns}obj2"
    assert [r["n"] for r in store.get_all(f"r'^{ns}' {{ owner: %s }}", "ann")] == [1, 2, 10]
    assert store.get("%n { n: _ }", f"{ns}obj2")["n"] == 2
    assert store.get(f"r'^{ns}' {{ n: %f }}", 10.0)["n"] == 10
    assert store.exists(f"{ns}obj1 {{ owner: %s }}", "ann")
    assert not store.exists(f"{ns}obj1 {{ owner: %s }}", "bob")
    assert store.get_names(f"{ns}nothing") == []


@pytest.mark.parametrize(("call", "error"), [
    (lambda s, ns: s.get(f"{ns}missing"), NotFound),
    (lambda s, ns: s.delete(f"{ns}missing"), NotFound),
    (lambda s, ns: s.get("x {"), ParseError),
    (lambda s, ns: s.get("_ { a: %d }", "1"), ParameterError),
    (lambda s, ns: s.get("_ { a: %d }"), ParameterError),
    (lambda s, ns: s.get("_ { a: %s }", 1), ParameterError),
    (lambda s, ns: s.set("_ { a: 1 }"), QueryError),
    (lambda s, ns: s.delete(f"r'^{ns}'"), QueryError),
    (lambda s, ns: s.set(f"{ns}c {{ v: 2, v == 1 }}"), ConditionFailed),
    (lambda s, ns: s.remove_trigger(999999), TriggerNotFound),
    (lambda s, ns: s.unsubscribe(999999), TriggerNotFound),
    (lambda s, ns: s.get(5), QueryError),
    (lambda s, ns: s.get("x" * 70000), QueryError),
    (lambda s, ns: s.set(f"{ns}d {{ a: 1, a: 2 }}"), QueryError),
])
def test_errors_are_the_same_types(store: Any, ns: str, call: Any, error: type) -> None:
    with pytest.raises(error):
        call(store, ns)


def test_parse_error_keeps_its_position(store: Any) -> None:
    with pytest.raises(ParseError) as info:
        store.get("abc { x: 1,, }")
    assert (info.value.line, info.value.column) == (1, 12)
    assert info.value.text == "," and info.value.reason.startswith("unexpected")  # also remote


def test_compare_and_set_sequential_and_delete(store: Any, ns: str) -> None:
    store.set(f"{ns}counter {{ value: 1 }}")
    assert store.set(f"{ns}counter {{ value: 2, value == 1 }}")["value"] == 2
    with pytest.raises(ConditionFailed):
        store.set(f"{ns}counter {{ value: 3, value == 1 }}")
    names = [store.set(f"{ns}lock_ {{ l: 1 }}", sequential=True).name for _ in range(3)]
    assert names == [f"{ns}lock_0", f"{ns}lock_1", f"{ns}lock_2"]
    with pytest.raises(NotFound):
        store.delete(f"{ns}counter {{ value: 1 }}")
    assert store.delete(f"{ns}counter")["value"] == 2
    assert not store.exists(f"{ns}counter")


def collect() -> tuple[list[octopus.Event], Any]:
    events: list[octopus.Event] = []
    return events, events.append


def test_trigger_install_if_and_one_shot(store: Any, ns: str) -> None:
    events, handler = collect()
    t = Trigger(handler, on=Mode.ON_SET, install_if="missing")
    with pytest.raises(NotFound):
        store.get(f"{ns}late", trigger=t)
    assert t.installed
    t2 = Trigger(handler, install_if="missing")
    store.set(f"{ns}other")
    assert store.exists(f"{ns}other", trigger=t2) and not t2.installed
    store.set(f"{ns}late {{ a: 1 }}")
    store.set(f"{ns}late {{ a: 2 }}")
    store.flush()
    assert [(e.mode, e.record["a"], e.trigger_id) for e in events] == \
        [(Mode.ON_SET | Mode.REMOVED, 1, t.id)]
    with pytest.raises(TriggerNotFound):
        store.remove_trigger(t)


def test_trigger_on_set_and_delete_calls(store: Any, ns: str) -> None:
    events, handler = collect()
    t = Trigger(handler, on=Mode.ON_SET | Mode.ON_DEL, persist=True)
    store.set(f"{ns}r {{ a: 1 }}", trigger=t)
    assert t.installed                        # it watches the record as stored: a == 1
    store.set(f"{ns}r {{ a: 2 }}")
    store.set(f"{ns}r {{ a: 1, b: 2 }}")
    store.delete(f"{ns}r")
    store.remove_trigger(t)
    store.flush()
    assert [e.mode for e in events] == [Mode.ON_SET, Mode.ON_DEL, Mode.REMOVED]
    assert events[-1].record is None
    with pytest.raises(QueryError):
        store.get(f"{ns}r2", trigger=t)       # a Trigger object is installed once


def test_watch_and_watch_existing(store: Any, ns: str) -> None:
    store.set(f"{ns}dev2 {{ k: 1 }}")
    store.set(f"{ns}dev1 {{ k: 1 }}")
    events, handler = collect()
    t = store.watch_existing(f"r'^{ns}dev' {{ k: %d }}", handler, 1)
    store.set(f"{ns}dev3 {{ k: 1 }}")
    store.set(f"{ns}dev4 {{ k: 2 }}")
    store.delete(f"{ns}dev1")
    store.flush()
    assert [(e.mode, e.record.name) for e in events] == [
        (Mode.ON_SET, f"{ns}dev1"), (Mode.ON_SET, f"{ns}dev2"), (Mode.ON_SET, f"{ns}dev3"),
        (Mode.ON_DEL, f"{ns}dev1")]
    store.remove_trigger(t.id)
    only_del, h2 = collect()
    store.watch(f"r'^{ns}dev'", h2, on=Mode.ON_DEL, persist=False)
    store.set(f"{ns}dev5")
    store.delete(f"{ns}dev5")
    store.delete(f"{ns}dev2")
    store.flush()
    assert [(e.mode, e.record.name) for e in only_del] == \
        [(Mode.ON_DEL | Mode.REMOVED, f"{ns}dev5")]


def test_handlers_may_call_the_store(store: Any, ns: str) -> None:
    done = threading.Event()

    def handler(event: octopus.Event) -> None:
        if event.mode & Mode.ON_SET:
            store.set(f"{ns}echo {{ of: %s }}", event.record.name)
            done.set()

    store.watch(f"{ns}ping", handler, on=Mode.ON_SET)
    store.set(f"{ns}ping")
    assert done.wait(10)
    assert store.get(f"{ns}echo")["of"] == f"{ns}ping"


def test_publish_subscribe(store: Any, ns: str) -> None:
    events, handler = collect()
    sub = store.subscribe("_ { topic: %s, n > 1 }", handler, ns)
    assert store.publish("m { topic: %s, n: 1 }", ns) == 0
    assert store.publish("m { topic: %s, n: 2 }", ns) == 1
    assert store.publish("m { topic: %s, n: 3 }", ns) == 1
    store.unsubscribe(sub)
    assert store.publish("m { topic: %s, n: 4 }", ns) == 0
    store.flush()
    assert [e.mode for e in events] == [Mode.ON_PUBLISH, Mode.ON_PUBLISH, Mode.REMOVED]
    assert [e.record["n"] for e in events[:2]] == [2, 3]
    assert not store.exists("m")                 # messages are never stored


def test_wait_for(store: Any, ns: str) -> None:
    store.set(f"{ns}here")
    assert store.wait_for(f"{ns}here").name == f"{ns}here"
    with pytest.raises(WaitTimeout):
        store.wait_for(f"{ns}never", timeout=0.1)
    with pytest.raises(TimeoutError):
        store.wait_for(f"{ns}never", timeout=0.05)
    threading.Timer(0.2, lambda: store.set(f"{ns}later {{ v: 7 }}")).start()
    assert store.wait_for(f"{ns}later", timeout=10)["v"] == 7


def test_sessions_own_their_ephemeral_records(store: Any, ns: str) -> None:
    events, handler = collect()
    store.watch(f"r'^{ns}eph'", handler, on=Mode.ON_DEL)
    with store.session() as s:
        s.set(f"{ns}eph {{ a: 1 }}", ephemeral=True)
        s.set(f"{ns}keep {{ a: 1 }}")
        sub_events, sub_handler = collect()
        s.watch(f"{ns}keep", sub_handler)
        assert store.exists(f"{ns}eph")
    assert not store.exists(f"{ns}eph")      # gone when close() returns
    assert store.exists(f"{ns}keep")
    store.flush()
    assert [(e.mode, e.record.name) for e in events] == [(Mode.ON_DEL, f"{ns}eph")]
    assert [e.mode for e in sub_events] == [Mode.REMOVED]
    with pytest.raises(EngineClosed):
        s.get(f"{ns}keep")
    assert s.closed


def test_revision_grows(store: Any, ns: str) -> None:
    before = store.revision
    r = store.set(f"{ns}rev")
    assert store.revision >= r.revision > before


# --- the network side only -------------------------------------------------------------------


def test_tcp_and_concurrent_threads(server: ServerProcess, ns: str) -> None:
    with connect(server.tcp_url) as c:
        errors: list[BaseException] = []

        def work(k: int) -> None:
            try:
                for i in range(50):
                    assert c.set(f"{ns}w{k}_{i} {{ k: %d }}", k).name == f"{ns}w{k}_{i}"
                    assert c.get(f"{ns}w{k}_{i}")["k"] == k
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(c.get_names(f"r'^{ns}w'")) == 400


def test_lost_connection_fails_pending_calls_and_ends_triggers(tmp_path: Any) -> None:
    srv = ServerProcess(tmp_path)
    try:
        c = connect(srv.unix_url)
        events, handler = collect()
        c.watch("x", handler)
        waiting: list[BaseException] = []

        def waiter() -> None:
            try:
                c.wait_for("never")
            except BaseException as e:
                waiting.append(e)

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.3)
        srv.proc.kill()
        t.join(10)
        assert not t.is_alive()
        assert len(waiting) == 1 and isinstance(waiting[0], EngineClosed)
        assert "lost" in str(waiting[0])
        with pytest.raises(EngineClosed, match="lost"):
            c.get("x")
        c.flush()
        assert [e.mode for e in events] == [Mode.REMOVED]
        c.close()
    finally:
        srv.stop()


def test_connect_errors(tmp_path: Any) -> None:
    with pytest.raises(EngineClosed, match="cannot connect"):
        connect(f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(QueryError):
        connect("http://example.com")
    with pytest.raises(QueryError):
        connect("tcp://127.0.0.1:notaport")


def test_password(tmp_path: Any) -> None:
    srv = ServerProcess(tmp_path, "--requirepass", "s3cret")
    try:
        with pytest.raises(AuthenticationError):
            connect(srv.unix_url)
        with pytest.raises(AuthenticationError):
            connect(srv.unix_url, password="wrong")
        with connect(srv.unix_url, password="s3cret") as c:
            assert c.set("ok").name == "ok"
    finally:
        srv.stop()


def test_client_is_a_session_twin() -> None:
    """Every public method of Session exists on Client with the same parameters."""
    import inspect

    for name, member in inspect.getmembers(octopus.Session):
        # set_many and the knowledge base (kb, consult, prolog, rules, watching a
        # rule's text...) stay in-process: the server never runs Prolog sent over the
        # wire; a session's id and name are the server's.
        if name.startswith("_") or name in ("set_many", "kb", "consult", "add_facts",
                                            "prolog", "prolog_once", "prolog_iter", "rules",
                                            "watch_rule", "explain_rule", "id", "name"):
            continue
        assert hasattr(Client, name), name
        if inspect.isfunction(member):
            want = list(inspect.signature(member).parameters)
            got = list(inspect.signature(getattr(Client, name)).parameters)
            assert got == want, name

"""Explanations: engine.explain_wait, lock.why(), barrier.why() and the other recipes,
in-process and through the network client (the same typed values)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

import octopus
from octopus import QueryError
from octopus.explain import (
    MAX_LIMIT,
    BarrierExplanation,
    Holding,
    LockExplanation,
    SessionInfo,
    WaitExplanation,
)
from octopus.recipes.barrier import explain_barrier
from octopus.server.client import connect
from octopus.server.testing import serve_in_thread


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_explain_wait_names_the_record_and_what_it_fails(engine: octopus.Engine) -> None:
    s = engine.session()
    s.name = "worker"
    s.set("svc.a { port: 80, up: false, kind: web }", ephemeral=True)
    x = engine.explain_wait("svc.a { up: true, port > 10, kind: r'^db' }")
    assert isinstance(x, WaitExplanation)
    assert x.blocked and x.matching == ()
    assert x.record is not None and x.record.name == "svc.a"
    assert x.unmet == ("up == true", "kind: r'^db'")
    assert "svc.a exists but fails" in str(x)
    missing = engine.explain_wait("%n", "svc.b")
    assert missing.blocked and missing.record is None and missing.unmet == ("missing",)
    found = engine.explain_wait("_ { port: %d }", 80)
    assert not found.blocked
    assert found.matching == (Holding(s.get("svc.a"), SessionInfo(s.id, "worker")),)
    assert found.record is None and found.unmet == ()
    engine.set("svc.p { port: 80 }")                    # persistent: nobody keeps it
    assert engine.explain_wait("svc.p").matching[0].session is None


def test_explain_wait_shows_who_waits(engine: octopus.Engine) -> None:
    waiter = engine.session()
    waiter.name = "w"
    done = threading.Event()
    t = threading.Thread(target=lambda: (waiter.wait_for("ready { up: true }", timeout=10),
                                         done.set()))
    t.start()
    until(lambda: engine.explain_wait("ready { up: true }").waiters != ())
    x = engine.explain_wait("ready { up: true }")
    assert x.waiters == (SessionInfo(waiter.id, "w"),)
    assert engine.explain_wait("ready { up: false }").waiters == ()   # another query
    engine.set("ready { up: true }")
    t.join(10)
    assert done.is_set()
    assert engine.explain_wait("ready { up: true }").waiters == ()    # the wait is over


def test_explain_wait_is_bounded_and_checks_its_input(engine: octopus.Engine) -> None:
    engine.set_many([(f"r.{i}", {"k": 1}) for i in range(30)])
    x = engine.explain_wait("_ { k: 1 }", limit=7)
    assert len(x.matching) == 7 and x.truncated
    assert [h.record.name for h in x.matching] == [f"r.{i}" for i in range(7)]
    assert not engine.explain_wait("_ { k: 1 }").truncated
    for bad in (0, -1, MAX_LIMIT + 1, True, 2.0, "5"):
        with pytest.raises(QueryError):
            engine.explain_wait("_", limit=bad)  # type: ignore[arg-type]
    with pytest.raises(octopus.ParseError):
        engine.explain_wait("_ { k: }")
    with pytest.raises(QueryError):
        engine.session().name = "x" * 201
    with pytest.raises(QueryError):
        engine.session().name = 5  # type: ignore[assignment]


def test_a_session_name_goes_with_its_session(engine: octopus.Engine) -> None:
    s = engine.session()
    s.name = "gone soon"
    sid = s.id
    s.close()
    assert engine._core.session_name(sid) is None
    with pytest.raises(octopus.EngineClosed):
        s.name = "again"


def _lock_story(a: octopus.Session | octopus.Client, b: octopus.Session | octopus.Client,
                observer: octopus.Session | octopus.Client, sid_a: SessionInfo,
                sid_b: SessionInfo) -> None:
    la, lb = a.lock("explained", "alice"), b.lock("explained", "bob")
    free = la.why()
    assert isinstance(free, LockExplanation)
    assert free.holders == () and free.waiting == () and not free.blocked
    assert str(free) == "lock explained: free"
    assert la.acquire()
    t = threading.Thread(target=lb.acquire)
    t.start()
    until(lambda: len(la.why().waiting) == 1)
    mine, theirs, outside = la.why(), lb.why(), observer.lock("explained").why()
    for x in (mine, theirs, outside):
        assert [h.record.name for h in x.holders] == ["explained_0"]
        assert x.holders[0].session == sid_a
        assert x.holders[0].record["owner"] == "alice"
        assert [(w.entry.record.name, w.behind.name) for w in x.waiting] == \
            [("explained_1", "explained_0")]
        assert x.waiting[0].entry.session == sid_b
    assert mine.held and not mine.blocked and mine.entry == 0
    assert theirs.blocked and not theirs.held and theirs.entry == 1
    assert outside.blocked and outside.entry is None
    assert "explained_1 [bob]" in str(outside) and "waits for explained_0" in str(outside)
    la.release()
    t.join(10)
    after = lb.why()
    assert after.held and [h.record.name for h in after.holders] == ["explained_1"]
    lb.release()


def test_lock_why_in_process(engine: octopus.Engine) -> None:
    a, b = engine.session(), engine.session()
    a.name, b.name = "A", "B"
    _lock_story(a, b, engine, SessionInfo(a.id, "A"), SessionInfo(b.id, "B"))


@pytest.fixture
def served(engine: octopus.Engine) -> Iterator[str]:
    with serve_in_thread(engine) as url:
        yield url


def test_lock_why_over_the_network(engine: octopus.Engine, served: str) -> None:
    with connect(served, name="alice") as a, connect(served) as b, connect(served) as o:
        x = a.explain_wait("_")
        assert isinstance(x, WaitExplanation)
        def info(c: octopus.Client) -> SessionInfo:
            c.set("%n", "probe." + str(id(c)), ephemeral=True)
            holder = c.explain_wait("%n", "probe." + str(id(c))).matching[0]
            c.delete("%n", "probe." + str(id(c)))
            assert holder.session is not None
            return holder.session
        ia, ib = info(a), info(b)
        assert ia.name is not None and ia.name.startswith("connection ") and \
            ia.name.endswith("(alice)")
        assert ib.name is not None and ib.name.startswith("connection ")
        _lock_story(a, b, o, ia, ib)


def test_explain_wait_over_the_network_equals_in_process(engine: octopus.Engine,
                                                         served: str) -> None:
    engine.set("svc.a { port: 80, up: false, label: 'x' }")
    with connect(served) as c:
        for q, params in (("svc.a { up: true, port > 10 }", ()), ("_ { port: %d }", (80,)),
                          ("nothing", ())):
            assert c.explain_wait(q, *params) == engine.explain_wait(q, *params)
        assert c.explain_wait("_", limit=1).truncated is False
        with pytest.raises(QueryError):
            c.explain_wait("_", limit=0)
        with pytest.raises(octopus.ParseError):
            c.explain_wait("_ { k: }")


def test_barrier_why(engine: octopus.Engine) -> None:
    a, b, c = engine.session(), engine.session(), engine.session()
    ba, bb, bc = a.barrier("meet", 3), b.barrier("meet", 3), c.barrier("meet", 3)
    x = ba.why()
    assert isinstance(x, BarrierExplanation)
    assert x.entered == () and x.missing == 3 and not x.blocked and x.rounds == ()
    ta = threading.Thread(target=ba.enter)
    ta.start()
    until(lambda: len(bb.why().entered) == 1)
    x = ba.why()
    assert x.missing == 2 and x.blocked and x.entry == 0 and not x.inside
    assert x.entered[0].session == SessionInfo(a.id)
    assert "2 missing" in str(x)
    tb = threading.Thread(target=bb.enter)
    tb.start()
    until(lambda: bc.why().missing == 1)
    assert bc.why().blocked and bc.why().entry is None    # two wait for the third
    assert explain_barrier(engine, "meet").n is None     # no round yet: n unknown
    bc.enter()
    ta.join(10)
    tb.join(10)
    x = bc.why()
    assert x.inside and x.blocked and x.entered == ()
    assert [len(r.remaining) for r in x.rounds] == [3]
    assert explain_barrier(engine, "meet").n == 3       # from the round's marker
    assert not ba.leave(timeout=0.01)
    x = bb.why()
    assert [h.record.name for h in x.rounds[0].remaining] == ["meet_1", "meet_2"]
    assert bb.leave(timeout=0) is False
    assert bc.leave(timeout=10)
    assert explain_barrier(engine, "meet").rounds == ()


def test_semaphore_rwlock_and_election_why(engine: octopus.Engine) -> None:
    a, b = engine.session(), engine.session()
    sa, sb = a.semaphore("pool", 1), b.semaphore("pool", 1)
    assert not sa.why().blocked and sa.why().free == 1
    assert sa.acquire()
    t = threading.Thread(target=sb.acquire)
    t.start()
    until(lambda: len(sa.why().queue) == 1)
    x = sb.why()
    assert x.blocked and x.free == 0 and x.held == 0
    assert [h.session for h in x.holders] == [SessionInfo(a.id)]
    assert [h.session for h in x.queue] == [SessionInfo(b.id)]
    sa.release()
    t.join(10)
    assert sb.why().held == 1 and sb.why().queue == ()
    sb.release()

    ra, rb, w = a.rwlock("rw"), b.rwlock("rw"), engine.rwlock("rw")
    ra.read.acquire()
    rb.read.acquire()
    assert not engine.rwlock("rw").read.why().blocked     # readers share
    tw = threading.Thread(target=w.write.acquire)
    tw.start()
    until(lambda: len(ra.why().waiting) == 1)
    x = ra.why()
    assert len(x.holders) == 2 and x.waiting[0].behind.name == "rw_1"
    assert engine.rwlock("rw").read.why().blocked          # FIFO: behind the writer
    ra.read.release()
    rb.read.release()
    tw.join(10)
    assert w.why().held
    w.write.release()

    el = a.election("boss", "me")
    assert el.why().holders == ()
    other = b.election("boss", "you")
    t = threading.Thread(target=other.run, args=(lambda: None,))
    t.start()
    t.join(10)
    assert el.why().kind == "election"

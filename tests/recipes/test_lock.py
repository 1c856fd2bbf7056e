"""Lock: mutual exclusion, FIFO, withdrawal, fencing tokens, holders that die."""

from __future__ import annotations

import threading

import pytest

from octopus import EngineClosed, LockError, Mode, QueryError
from octopus.recipes import Lock, Store

from .threads import Threads, eventually


def test_entries_are_sequential_ephemeral_records(store: Store) -> None:
    with store.session() as s:
        a, b = s.lock("res"), s.lock("res", "worker-b")
        assert a.acquire()
        assert not b.acquire(blocking=False)
        assert store.get_all("_ { lock: 'res' }")[0].name == "res_0"
        assert str(store.get("res_0")) == "res_0 { lock: 'res' }"
        threads = Threads()
        threads.start(b.acquire)
        eventually(lambda: len(a.contenders()) == 2, "b queued")
        assert a.contenders() == ["res_0", "worker-b"]
        assert store.get("res_2")["owner"] == "worker-b"
        a.release()
        threads.join()
        assert b.held and b.token == 2
    assert store.get_names("_ { lock: 'res' }") == []


@pytest.mark.parametrize("shared", [False, True], ids=["own-objects", "shared-object"])
def test_mutual_exclusion_with_eight_threads(store: Store, shared: bool) -> None:
    common = store.lock("mx")
    inside, peak, rounds = [0], [0], 8
    guard = threading.Lock()

    def worker() -> None:
        lock = common if shared else store.lock("mx")
        for _ in range(rounds):
            with lock:
                with guard:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                store.get_names("_ { lock: 'mx' }")  # some work in the critical section
                with guard:
                    inside[0] -= 1

    threads = Threads()
    for _ in range(8):
        threads.start(worker)
    threads.join()
    assert peak[0] == 1
    assert store.get_names("_ { lock: 'mx' }") == []


def test_fifo_order_and_increasing_tokens_with_six_waiters(store: Store) -> None:
    holder = store.lock("fifo")
    assert holder.acquire()
    granted: list[tuple[int, int]] = []
    threads = Threads()

    def contender(i: int, lock: Lock) -> None:
        assert lock.acquire()
        granted.append((i, lock.token))  # type: ignore[arg-type]
        lock.release()

    for i in range(6):
        threads.start(contender, i, store.lock("fifo", f"c{i}"))
        eventually(lambda i=i: len(holder.contenders()) == i + 2, f"contender {i} queued")
    assert holder.contenders()[1:] == [f"c{i}" for i in range(6)]
    first_token = holder.token
    holder.release()
    threads.join()
    assert [i for i, _ in granted] == list(range(6))
    tokens = [first_token] + [t for _, t in granted]
    assert tokens == sorted(set(tokens))  # strictly increasing


def test_tokens_increase_across_sessions_and_reuse(store: Store) -> None:
    tokens = []
    for _ in range(3):
        with store.session() as s:
            lock = s.lock("tok")
            for _ in range(2):
                with lock:
                    tokens.append(lock.token)
    assert tokens == sorted(set(tokens))


def test_timed_out_waiter_withdraws_and_the_next_moves_up(store: Store) -> None:
    a, b, c = store.lock("wd"), store.lock("wd", "b"), store.lock("wd", "c")
    assert a.acquire()
    assert not b.acquire(timeout=0.05)
    assert a.contenders() == ["wd_0"]  # b left nothing behind
    threads = Threads()
    # Long enough for c to queue behind b on a loaded machine before b gives up.
    b_result = threads.start(lambda: b.acquire(timeout=1.5))
    eventually(lambda: "b" in a.contenders(), "b queued")
    threads.start(c.acquire)
    eventually(lambda: a.contenders()[1:] == ["b", "c"], "c queued behind b")
    b_result.join()  # b times out in the middle of the queue
    assert a.contenders()[1:] == ["c"]
    a.release()
    threads.join()
    assert threads.results == {0: False, 1: True}
    assert c.held and not b.held
    c.release()


def test_non_blocking_acquire(store: Store) -> None:
    a, b = store.lock("nb"), store.lock("nb")
    assert a.acquire(blocking=False)
    assert not b.acquire(blocking=False)
    a.release()
    assert b.acquire(blocking=False)
    b.release()


def test_cancel_makes_a_waiting_acquire_return_false(store: Store) -> None:
    a, b = store.lock("cx"), store.lock("cx", "b")
    a.acquire()
    threads = Threads()
    threads.start(b.acquire)
    eventually(lambda: "b" in a.contenders(), "b queued")
    b.cancel()
    threads.join()
    assert threads.results[0] is False
    assert a.contenders() == ["cx_0"]
    a.release()
    assert b.acquire()  # a cancel affects only the acquire pending at the time
    b.release()


def test_cancelled_with_statement_raises_instead_of_running_unlocked(store: Store) -> None:
    a, b = store.lock("cw"), store.lock("cw", "b")
    a.acquire()
    ran: list[bool] = []

    def enter() -> None:
        with b:
            ran.append(True)

    threads = Threads()
    threads.start(enter)
    eventually(lambda: "b" in a.contenders(), "b queued")
    b.cancel()
    with pytest.raises(LockError, match="cancelled"):
        threads.join()              # re-raises what the thread hit
    assert ran == []
    assert a.contenders() == ["cw_0"]
    a.release()


def test_holder_session_closing_lets_the_next_waiter_in(store: Store) -> None:
    s = store.session()
    dead = s.lock("hs")
    assert dead.acquire()
    waiter = store.lock("hs", "next")
    threads = Threads()
    threads.start(waiter.acquire)
    eventually(lambda: "next" in waiter.contenders(), "waiter queued")
    s.close()  # no release
    threads.join()
    assert waiter.held and waiter.token is not None
    assert waiter.token > dead.token  # type: ignore[operator]
    with pytest.raises(LockError, match="lost"):
        dead.release()  # the lock went on without it
    waiter.release()


def test_waiting_session_closed_makes_acquire_raise(store: Store) -> None:
    holder = store.lock("wc")
    holder.acquire()
    s = store.session()
    waiter = s.lock("wc", "w")
    threads = Threads()
    threads.start(waiter.acquire)
    eventually(lambda: "w" in holder.contenders(), "waiter queued")
    s.close()
    with pytest.raises(EngineClosed):
        threads.join()
    assert holder.contenders() == ["wc_0"]
    holder.release()


def test_release_by_a_non_holder_raises(store: Store) -> None:
    a, b = store.lock("nh"), store.lock("nh")
    with pytest.raises(LockError):
        a.release()  # never acquired
    a.acquire()
    with pytest.raises(LockError):
        b.release()  # a holds it, not b
    a.release()
    with pytest.raises(LockError):
        a.release()  # released twice


def test_a_waiter_behind_a_dead_middle_waiter_keeps_fifo(store: Store) -> None:
    head = store.lock("mid")
    head.acquire()
    s = store.session()
    threads = Threads()
    middle = s.lock("mid", "middle")
    threads.start(middle.acquire)
    eventually(lambda: head.contenders()[1:] == ["middle"], "middle queued")
    tail = store.lock("mid", "tail")
    threads.start(tail.acquire)
    eventually(lambda: head.contenders()[1:] == ["middle", "tail"], "tail queued")
    s.close()
    eventually(lambda: head.contenders()[1:] == ["tail"], "middle gone")
    assert not tail.held  # still behind the holder
    head.release()
    with pytest.raises(EngineClosed):
        threads.join()  # the middle waiter's acquire ends with its session
    assert tail.held
    tail.release()


def test_each_waiter_watches_only_its_predecessor(store: Store) -> None:
    """No herd: one trigger per waiter, on the entry just before its own."""
    core = getattr(store, "_core", None)
    if core is None:
        pytest.skip("trigger table only visible in-process")
    head = store.lock("herd")
    head.acquire()
    threads = Threads()

    def take_and_pass_on(lock: Lock) -> None:
        assert lock.acquire()
        lock.release()

    for i in range(5):
        threads.start(take_and_pass_on, store.lock("herd", f"w{i}"))
        eventually(lambda i=i: len(head.contenders()) == i + 2, "queued")
    eventually(lambda: len(core.registry) == 5, "five triggers")
    watched = sorted(inst.query.exact_name for inst in core.registry)
    assert watched == sorted(f"herd_{k}" for k in range(5))
    head.release()
    threads.join()


def test_bad_arguments_are_typed_errors(store: Store) -> None:
    with pytest.raises(QueryError):
        store.lock("Not a name")
    with pytest.raises(LockError):
        store.lock("ok", identifier=5)  # type: ignore[arg-type]
    lock = store.lock("ok")
    with pytest.raises(LockError):
        lock.acquire(timeout="soon")  # type: ignore[arg-type]
    assert lock.acquire(timeout=-1)  # a negative timeout is "do not wait"
    lock.release()
    for forever in (float("inf"), 1e300):  # too long to wait for: no timeout
        assert lock.acquire(timeout=forever)
        lock.release()
    with pytest.raises(LockError):
        lock.acquire(timeout=float("nan"))
    with pytest.raises(LockError):
        store.barrier("ok", 2).enter(timeout="1")  # type: ignore[arg-type]
    with pytest.raises(LockError):
        store.semaphore("ok", 2).acquire(timeout=[1])  # type: ignore[arg-type]
    assert store.get_names("r'^ok'") == []


def test_lock_from_a_handler_without_blocking(store: Store) -> None:
    """Handlers may use recipes as long as they do not block."""
    results: list[bool] = []
    lock = store.lock("hl")

    def handler(event: object) -> None:
        results.append(lock.acquire(blocking=False))
        lock.release()

    store.watch("go", handler, on=Mode.ON_SET)
    store.set("go { x: 1 }")
    store.flush()
    assert results == [True]


"""Semaphore: bounded concurrency, permits in arrival order, nothing left behind."""

from __future__ import annotations

import threading

import pytest

from octopus import LockError
from octopus.recipes import Store

from .threads import PATIENCE, Threads, eventually


@pytest.mark.parametrize("value", [1, 3, 5])
def test_peak_concurrency_equals_value_under_eight_threads(store: Store, value: int) -> None:
    holding, peak, grants = [0], [0], [0]
    full = threading.Condition()
    reached = threading.Event()  # `value` permits were held at once

    def worker() -> None:
        sem = store.semaphore("pool", value)
        for _ in range(4):
            with sem:
                with full:
                    holding[0] += 1
                    grants[0] += 1
                    peak[0] = max(peak[0], holding[0])
                    if holding[0] == value:
                        reached.set()
                    full.notify_all()
                    if grants[0] <= value:  # the first `value` holders wait for each other
                        assert full.wait_for(reached.is_set, PATIENCE)
                    assert holding[0] <= value
                store.exists("_ { semaphore: 'pool' }")  # some work while holding
                with full:
                    holding[0] -= 1

    threads = Threads()
    for _ in range(8):
        threads.start(worker)
    threads.join()
    assert peak[0] == value
    assert store.get_names("r'^pool'") == []


def test_permits_are_granted_in_arrival_order(store: Store) -> None:
    sem = store.semaphore("fifo", 2)
    assert sem.acquire() and sem.acquire()
    order: list[int] = []
    threads = Threads()

    def waiter(i: int) -> None:
        mine = store.semaphore("fifo", 2)
        assert mine.acquire()
        order.append(i)
        mine.release()

    for i in range(5):
        threads.start(waiter, i)
        eventually(lambda i=i: len(store.get_names("_ { lock: 'fifo.queue' }")) == i + 1,
                   f"waiter {i} queued")
    sem.release()
    sem.release()
    threads.join()
    assert order == list(range(5))


def test_timeout_and_non_blocking_leave_nothing_behind(store: Store) -> None:
    sem = store.semaphore("t", 1)
    assert sem.acquire(blocking=False)
    other = store.semaphore("t", 1)
    assert not other.acquire(blocking=False)
    assert not other.acquire(timeout=0.05)
    assert sem.holders() == ["t_0"]
    assert store.get_names("r'^t\\.queue'") == []
    sem.release()
    assert other.acquire(timeout=5)
    other.release()


def test_one_object_holds_several_permits_and_release_beyond_raises(store: Store) -> None:
    sem = store.semaphore("multi", 3)
    for _ in range(3):
        assert sem.acquire()
    assert sem.held == 3 and len(sem.holders()) == 3
    for _ in range(3):
        sem.release()
    with pytest.raises(LockError):
        sem.release()
    with pytest.raises(LockError):
        store.semaphore("multi", 3).release()


def test_a_session_that_ends_returns_its_permits(store: Store) -> None:
    s = store.session()
    theirs = s.semaphore("se", 2)
    assert theirs.acquire() and theirs.acquire()
    ours = store.semaphore("se", 2)
    threads = Threads()
    threads.start(ours.acquire)
    eventually(lambda: store.exists("_ { lock: 'se.queue' }"), "waiter queued")
    s.close()
    threads.join()
    assert threads.results[0] is True
    with pytest.raises(LockError, match="lost"):
        theirs.release()
    ours.release()


def test_bad_values(store: Store) -> None:
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(LockError):
            store.semaphore("bad", bad)  # type: ignore[arg-type]

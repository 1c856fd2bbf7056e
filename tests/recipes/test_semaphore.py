"""Semaphore: bounded concurrency, permits in arrival order, nothing left behind."""

from __future__ import annotations

import threading

import pytest

from octopus import LimitExceeded, LockError
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


def test_one_object_holds_several_permits_and_release_beyond_posts(store: Store) -> None:
    sem = store.semaphore("multi", 3)
    for _ in range(3):
        assert sem.acquire()
    assert sem.held == 3 and len(sem.holders()) == 3 and sem.available() == 0
    for _ in range(3):
        sem.release()
    assert sem.held == 0 and sem.holders() == [] and sem.available() == 3
    # a release without a held permit posts one (threading.Semaphore, oct_sem_post)
    sem.release()
    store.semaphore("multi", 3).release()
    assert sem.posted() == 2 and sem.available() == 5
    taken = [store.semaphore("multi", 3) for _ in range(5)]
    assert all(t.acquire(blocking=False) for t in taken)
    assert sem.available() == 0 and sem.posted() == 0 and len(sem.holders()) == 3
    assert not store.semaphore("multi", 3).acquire(blocking=False)
    for t in taken:
        t.release()
    assert sem.available() == 5 and len(sem.holders()) == 0


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
    for bad in (-1, 1.5, True, "2", None):
        with pytest.raises(LockError):
            store.semaphore("bad", bad)  # type: ignore[arg-type]


def test_producer_and_consumer_across_sessions(store: Store) -> None:
    """value=0: a signalling device. Posts outlive their poster's session; a permit taken
    from a post is consumed (the consumer's session ending does not give it back)."""
    consumed: list[int] = []
    with store.session() as consumer_session:
        consumer = consumer_session.semaphore("items", 0)
        assert not consumer.acquire(blocking=False)
        threads = Threads()

        def consume(n: int) -> None:
            for i in range(n):
                assert consumer.acquire(timeout=PATIENCE)
                consumed.append(i)

        threads.start(consume, 3)
        with store.session() as producer_session:
            producer = producer_session.semaphore("items", 0)
            eventually(lambda: store.exists("_ { lock: 'items.queue' }"), "consumer waiting")
            for _ in range(5):
                producer.release()
            assert producer.held == 0
        threads.join()
        assert consumed == [0, 1, 2] and consumer.held == 3
    # the producer's session is gone, its two remaining posts are not
    sem = store.semaphore("items", 0)
    assert sem.posted() == 2 and sem.holders() == []
    assert sem.acquire(blocking=False) and sem.acquire(blocking=False)
    assert not sem.acquire(blocking=False)
    assert store.get_names("r'^items'") == []


def test_posts_are_bounded_and_a_refused_release_changes_nothing(store: Store) -> None:
    sem = store.semaphore("capped", 1, max_posts=3)
    for _ in range(3):
        sem.release()
    with pytest.raises(LimitExceeded, match="max_posts"):
        sem.release()
    assert sem.posted() == 3 and sem.available() == 4
    # a permit taken from a post and given back while the posts are full stays held
    taker = store.semaphore("capped", 1, max_posts=3)
    assert taker.acquire(blocking=False) and taker.acquire(blocking=False)
    assert taker.held == 2 and sem.posted() == 2
    store.semaphore("capped", 1).release()      # the default cap is far away
    taker.release()                             # the lease goes back: no post needed
    assert taker.held == 1 and sem.posted() == 3
    with pytest.raises(LimitExceeded):
        taker.release()
    assert taker.held == 1 and sem.posted() == 3
    with pytest.raises(LockError, match="max_posts"):
        store.semaphore("capped", 1, max_posts=-1)


def test_leases_return_with_their_session_and_posts_stay(store: Store) -> None:
    with store.session() as s:
        mine = s.semaphore("mixed", 1)
        assert mine.acquire()                       # the lease of value 1
        mine.release()
        mine.release()                              # a post beyond it
        assert mine.acquire() and mine.acquire()    # the lease, then the post
        assert mine.held == 2
    sem = store.semaphore("mixed", 1)
    # the lease came back when the session ended; the taken post did not
    assert sem.available() == 1 and sem.posted() == 0


def test_the_count_is_kept_under_contention(store: Store) -> None:
    """4 producers post 10 permits each while 4 consumers take 10 each (value 2, two
    of them held throughout): every permit is taken once, and the count ends as it
    began."""
    holder = store.semaphore("count", 2)
    assert holder.acquire() and holder.acquire()
    threads = Threads()

    def produce() -> None:
        sem = store.semaphore("count", 2)
        for _ in range(10):
            sem.release()

    def consume() -> int:
        sem = store.semaphore("count", 2)
        for _ in range(10):
            assert sem.acquire(timeout=PATIENCE)
        return sem.held

    for _ in range(4):
        threads.start(produce)
        threads.start(consume)
    threads.join(PATIENCE * 3)
    assert sorted(r for r in threads.results.values() if r is not None) == [10] * 4
    assert holder.available() == 0 and holder.posted() == 0
    holder.release()
    holder.release()
    assert holder.available() == 2
    assert store.get_names("r'^count'") == []

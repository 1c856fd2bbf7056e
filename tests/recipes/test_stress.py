"""Longer runs of the recipes under load (``pytest -m slow``; skipped by ``make test``)."""

from __future__ import annotations

import random
import threading

import pytest

from octopus.recipes import Store

from .threads import Threads

pytestmark = pytest.mark.slow


def test_lock_sixteen_threads_many_rounds_with_timeouts(store: Store) -> None:
    inside, tokens = [0], []
    guard = threading.Lock()

    def worker(i: int) -> None:
        rng = random.Random(i)
        lock = store.lock("stress", f"w{i}")
        for _ in range(200):
            if not lock.acquire(timeout=rng.choice([None, 0.0, 0.001, 0.01])):
                continue
            with guard:
                inside[0] += 1
                assert inside[0] == 1
                tokens.append(lock.token)
            with guard:
                inside[0] -= 1
            lock.release()

    threads = Threads()
    for i in range(16):
        threads.start(worker, i)
    threads.join(300)
    assert tokens == sorted(set(tokens))
    assert store.get_names("_ { lock: 'stress' }") == []


def test_barrier_sixteen_parties_sixty_rounds(store: Store) -> None:
    n, rounds = 16, 60
    entered = [0] * rounds
    guard = threading.Lock()

    def party() -> None:
        barrier = store.barrier("big", n)
        for r in range(rounds):
            with guard:
                entered[r] += 1
            assert barrier.enter()
            with guard:
                assert entered[r] == n
            assert barrier.leave()

    threads = Threads()
    for _ in range(n):
        threads.start(party)
    threads.join(300)
    assert store.get_names("_ { barrier: 'big' }") == []


def test_semaphore_sessions_dying_while_holding(store: Store) -> None:
    holding = [0]
    guard = threading.Lock()

    def worker(i: int) -> None:
        for k in range(50):
            s = store.session()
            sem = s.semaphore("dying", 3)
            assert sem.acquire()
            with guard:
                holding[0] += 1
                assert holding[0] <= 3
            with guard:
                holding[0] -= 1
            if (i + k) % 2:
                s.close()  # dies holding its permit
            else:
                sem.release()
                s.close()

    threads = Threads()
    for i in range(8):
        threads.start(worker, i)
    threads.join(300)
    assert store.get_names("r'^dying'") == []

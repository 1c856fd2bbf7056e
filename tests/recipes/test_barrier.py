"""Barrier: nobody passes early, rounds repeat, nothing is left behind, stale markers fool
nobody."""

from __future__ import annotations

import random
import threading
import time

import pytest

from octopus import LockError, Mode
from octopus.recipes import Barrier, Store

from .threads import Threads, eventually


def _records(store: Store, name: str) -> list[str]:
    """Every record a barrier named ``name`` may write (entries, markers, its gate)."""
    return store.get_names("_ { barrier: %s }", name) + \
        store.get_names("_ { lock: %s }", name + ".gate")


@pytest.mark.parametrize("n", [3, 5, 8])
def test_parties_entering_at_different_times_for_several_rounds(store: Store, n: int) -> None:
    rounds = 3
    entered = [0] * rounds
    leaving = [0] * rounds
    guard = threading.Lock()
    rng = random.Random(n)
    delays = [[rng.uniform(0, 0.02) for _ in range(rounds)] for _ in range(n)]

    def party(i: int) -> None:
        barrier = store.barrier("b", n)
        for r in range(rounds):
            time.sleep(delays[i][r])  # arrive at different times
            with guard:
                entered[r] += 1
            assert barrier.enter()
            with guard:
                assert entered[r] == n, "passed enter() before all had entered"
            time.sleep(delays[i][r] / 2)
            with guard:
                leaving[r] += 1
            assert barrier.leave()
            with guard:
                assert leaving[r] == n, "passed leave() before all had come to leave"

    threads = Threads()
    for i in range(n):
        threads.start(party, i)
    threads.join()
    assert _records(store, "b") == []


def test_nothing_remains_after_a_round(store: Store) -> None:
    threads = Threads()
    for _ in range(3):
        threads.start(lambda: store.barrier("clean", 3).__enter__().leave())
    threads.join()
    assert _records(store, "clean") == []
    assert store.get_names("r'^clean'") == []


def test_more_parties_than_n_go_through_n_at_a_time(store: Store) -> None:
    n, parties = 3, 9
    passed: list[int] = []
    guard = threading.Lock()

    def party() -> None:
        barrier = store.barrier("many", n)
        assert barrier.enter()
        with guard:
            passed.append(barrier._round["upto"])  # type: ignore[index]
        assert barrier.leave()

    threads = Threads()
    for _ in range(parties):
        threads.start(party)
    threads.join()
    # three rounds of exactly three parties each
    assert sorted(passed.count(u) for u in set(passed)) == [n] * (parties // n)
    assert _records(store, "many") == []


def test_a_stale_marker_from_an_earlier_round_lets_nobody_through(store: Store) -> None:
    markers: list[str] = []
    store.watch("_ { barrier: 'st', upto: _ }", lambda e: markers.append(str(e.record)),
                on=Mode.ON_SET)
    threads = Threads()
    for _ in range(2):
        threads.start(lambda: store.barrier("st", 2).__enter__().leave())
    threads.join()
    store.flush()
    assert markers == ["st.round_1 { barrier: 'st', first: 0, upto: 1 }"]
    assert _records(store, "st") == []
    # The original's bug: a release record outliving its round let the next one through.
    store.set(markers[0])
    lonely = store.barrier("st", 2)
    assert not lonely.enter(timeout=0.1)  # the old marker does not cover the new entry
    assert store.get_names("r'^st_'") == []  # and the timed-out party withdrew
    threads = Threads()
    for _ in range(2):
        threads.start(lambda: store.barrier("st", 2).__enter__().leave())
    threads.join()
    assert _records(store, "st") == []  # the next round's leave swept the stale marker


def test_enter_timeout_withdraws_and_the_barrier_still_works(store: Store) -> None:
    assert not store.barrier("to", 2).enter(timeout=0.05)
    assert _records(store, "to") == []
    threads = Threads()
    for _ in range(2):
        threads.start(lambda: store.barrier("to", 2).enter())
    threads.join()
    assert threads.results == {0: True, 1: True}


def test_leave_timeout_has_left_and_the_last_leaver_cleans_up(store: Store) -> None:
    a, b = store.barrier("lt", 2), store.barrier("lt", 2)
    threads = Threads()
    threads.start(a.enter)
    assert b.enter()
    threads.join()
    assert not a.leave(timeout=0.05)  # b has not left yet
    assert b.leave(timeout=5)
    assert _records(store, "lt") == []


def test_a_party_whose_session_ends_counts_as_gone(store: Store) -> None:
    s = store.session()
    parties = [store.barrier("se", 3), store.barrier("se", 3), s.barrier("se", 3)]
    threads = Threads()
    for p in parties:
        threads.start(p.enter)
    threads.join()
    s.close()  # the third party dies inside the barrier, without leave()
    threads = Threads()
    for p in parties[:2]:
        threads.start(p.leave)
    threads.join()
    assert threads.results == {0: True, 1: True}
    assert _records(store, "se") == []


def test_a_party_whose_session_ends_before_the_round_needs_a_replacement(store: Store) -> None:
    s = store.session()
    threads = Threads()
    threads.start(s.barrier("rep", 2).enter)
    eventually(lambda: len(store.get_names("_ { barrier: 'rep' }")) == 1, "first entry")
    s.close()
    with pytest.raises(Exception):  # noqa: B017 - EngineClosed from the dead party's wait
        threads.join()
    threads = Threads()
    for _ in range(2):
        threads.start(lambda: store.barrier("rep", 2).enter(timeout=10))
    threads.join()
    assert threads.results == {0: True, 1: True}


def test_context_manager_and_misuse(store: Store) -> None:
    with pytest.raises(LockError):
        store.barrier("cm", 0)
    with pytest.raises(LockError):
        store.barrier("cm", 1).leave()
    one = store.barrier("cm", 1)
    with one, pytest.raises(LockError):
        one.enter()
    assert _records(store, "cm") == []
    assert isinstance(one, Barrier)


@pytest.mark.parametrize("rounds", [4, pytest.param(40, marks=pytest.mark.slow)])
def test_parties_that_time_out_and_retry_never_make_a_short_round(store: Store,
                                                                   rounds: int) -> None:
    """Withdrawals race with the opening of rounds; each round still admits exactly n."""
    n = 4
    admitted: list[int] = []
    guard = threading.Lock()

    def party(i: int) -> None:
        rng = random.Random(i)
        barrier = store.barrier("retry", n)
        for _ in range(rounds):
            while not barrier.enter(timeout=rng.choice([0.0, 0.001, 0.005, 0.02])):
                pass  # withdrew: try again
            with guard:
                admitted.append(barrier._round["upto"])  # type: ignore[index]
            assert barrier.leave()

    threads = Threads()
    for i in range(n):
        threads.start(party, i)
    threads.join(120)
    assert sorted(admitted.count(u) for u in set(admitted)) == [n] * rounds
    assert _records(store, "retry") == []

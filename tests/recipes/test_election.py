"""Election: one leader at a time; the next takes over when the leader's session ends."""

from __future__ import annotations

import threading

from octopus.recipes import Store

from .threads import PATIENCE, Threads, eventually


def test_exactly_one_leader_at_a_time(store: Store) -> None:
    leaders, peak, led = [0], [0], []
    guard = threading.Lock()

    def candidate(i: int) -> None:
        with store.session() as s:
            election = s.election("chief", f"c{i}")

            def lead() -> str:
                with guard:
                    leaders[0] += 1
                    peak[0] = max(peak[0], leaders[0])
                assert election.leader() == f"c{i}" and election.leading
                store.get_names("_ { election: 'chief' }")  # some work while leading
                with guard:
                    leaders[0] -= 1
                    led.append(i)
                return f"done {i}"

            assert election.run(lead) == f"done {i}"

    threads = Threads()
    for i in range(6):
        threads.start(candidate, i)
    threads.join()
    assert peak[0] == 1
    assert sorted(led) == list(range(6))
    assert store.get_names("_ { election: 'chief' }") == []


def test_the_next_takes_over_when_the_leaders_session_ends(store: Store) -> None:
    s1, s2 = store.session(), store.session()
    first, second = s1.election("e", "first"), s2.election("e", "second")
    leading = threading.Event()
    stop = threading.Event()
    took_over = threading.Event()
    threads = Threads()
    threads.start(first.run, lambda: (leading.set(), stop.wait(PATIENCE)))
    assert leading.wait(PATIENCE)
    threads.start(second.run, took_over.set)
    eventually(lambda: first.contenders() == ["first", "second"], "second in line")
    assert second.leader() == "first" and not took_over.is_set()
    term = first.token
    s1.close()  # the leader's session ends while its function still runs
    assert took_over.wait(PATIENCE)
    assert second.token is None or second.token > term  # type: ignore[operator]
    stop.set()
    threads.join()  # the old leader's run ends quietly: its office was already gone
    s2.close()


def test_cancel_ends_a_pending_run_without_calling(store: Store) -> None:
    leader, hopeful = store.election("c", "a"), store.election("c", "b")
    release = threading.Event()
    threads = Threads()
    threads.start(leader.run, lambda: release.wait(PATIENCE))
    eventually(lambda: leader.leader() == "a", "a leads")
    called: list[bool] = []
    threads.start(hopeful.run, lambda: called.append(True))
    eventually(lambda: hopeful.contenders() == ["a", "b"], "b in line")
    hopeful.cancel()
    eventually(lambda: hopeful.contenders() == ["a"], "b withdrew")
    release.set()
    threads.join()
    assert called == [] and threads.results[1] is None
    assert leader.leader() is None

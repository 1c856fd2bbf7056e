"""Races across nodes: compare-and-set has exactly one winner, sequential names are never
given twice, lock grants never overlap and their tokens only grow."""

from __future__ import annotations

import itertools
import threading

import octopus
from octopus.cluster.launch import OctopusNode


def test_cas_races_across_nodes_have_exactly_one_winner(nodes: list[OctopusNode]) -> None:
    clients = [octopus.connect(n.url) for n in nodes for _ in range(2)]
    clients[0].set("race { v: 0 }")
    for round_ in range(8):
        start = threading.Barrier(len(clients))
        wins: list[int] = []
        lost: list[int] = []

        def contend(i: int, c: octopus.Client, round_: int = round_,
                    start: threading.Barrier = start, wins: list[int] = wins,
                    lost: list[int] = lost) -> None:
            start.wait()
            try:
                c.set("race { v: %d, by: %d, v == %d }", round_ + 1, i, round_)
                wins.append(i)
            except octopus.ConditionFailed:
                lost.append(i)

        threads = [threading.Thread(target=contend, args=(i, c))
                   for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1, (round_, wins)
        assert len(lost) == len(clients) - 1
        for c in clients:
            c.sync()
            record = c.get("race")
            assert record["v"] == round_ + 1 and record["by"] == wins[0]
    for c in clients:
        c.close()


def test_sequential_sets_from_three_nodes_never_give_a_name_twice(
        nodes: list[OctopusNode]) -> None:
    clients = [octopus.connect(n.url) for n in nodes for _ in range(3)]
    names: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(clients))

    def add(c: octopus.Client) -> None:
        start.wait()
        for _ in range(15):
            name = c.set("job_ { state: 'new' }", sequential=True).name
            with lock:
                names.append(name)

    threads = [threading.Thread(target=add, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names) == len(set(names)) == 15 * len(clients)
    numbers = sorted(int(n.removeprefix("job_")) for n in names)
    assert numbers == list(range(len(names)))                # dense: no number skipped
    for c in clients:
        c.sync()
        assert len(c.get_names("r'^job_'")) == len(names)
        c.close()


def test_lock_grants_across_nodes_never_overlap(nodes: list[OctopusNode]) -> None:
    """Contenders on every node take one lock in turns; a shared log of (token, holder,
    enter, exit) shows strictly increasing tokens and no two holders at once."""
    log: list[tuple[int, int, int, int]] = []      # token, holder, enter seq, exit seq
    clock = iter(range(1 << 30))
    guard = threading.Lock()
    inside: list[int] = []
    overlaps: list[tuple[int, int]] = []

    def contender(i: int, url: str) -> None:
        with octopus.connect(url) as c:
            for _ in range(4):
                lock = c.lock("res", identifier=f"c{i}")
                assert lock.acquire(timeout=60)
                with guard:
                    if inside:
                        overlaps.append((inside[0], i))
                    inside.append(i)
                    enter = next(clock)
                token = lock.token
                assert token is not None
                with guard:
                    inside.remove(i)
                    log.append((token, i, enter, next(clock)))
                lock.release()

    threads = [threading.Thread(target=contender, args=(i, nodes[i % 3].url))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps
    assert len(log) == 24
    by_enter = sorted(log, key=lambda e: e[2])
    tokens = [e[0] for e in by_enter]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    for before, after in itertools.pairwise(by_enter):
        assert before[3] < after[2]          # the previous holder left before the next came

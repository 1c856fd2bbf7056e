"""Linearizability: concurrent get (after sync, or GET ... LINEARIZABLE), set and
compare-and-set on a few records from clients on every node, checked by the search in
tests/cluster/linearizability.py. A small history runs in ``make test``; a longer one
behind ``-m slow``. The checker itself is tested first, on histories known to be (and
known not to be) linearizable, so that a pass means something."""

from __future__ import annotations

import math
import random
import threading
import time

import pytest

import octopus
from octopus.cluster.launch import OctopusNode
from octopus.server.client_base import _Request, decode_record

from .linearizability import FAIL, MISSING, OK, Op, check, check_key

INF = math.inf


# --- the checker ----------------------------------------------------------------------------


def test_a_sequential_history_is_linearizable() -> None:
    ops = [Op(0, "set", "k", 0, 1, OK, value=1), Op(0, "get", "k", 2, 3, 1),
           Op(0, "cas", "k", 4, 5, OK, value=2, expected=1), Op(0, "get", "k", 6, 7, 2),
           Op(0, "cas", "k", 8, 9, FAIL, value=3, expected=1)]
    assert check(ops)[0]


def test_a_stale_read_after_a_completed_write_is_not() -> None:
    ops = [Op(0, "set", "k", 0, 1, OK, value=1), Op(1, "get", "k", 2, 3, MISSING)]
    assert not check(ops)[0]


def test_overlapping_operations_may_be_ordered_either_way() -> None:
    ops = [Op(0, "set", "k", 0, 10, OK, value=1), Op(1, "get", "k", 1, 2, MISSING),
           Op(2, "get", "k", 3, 4, 1), Op(3, "get", "k", 11, 12, 1)]
    assert check(ops)[0]
    # ... but once a read saw the new value, a later read may not see the old one
    ops.append(Op(4, "get", "k", 5, 6, MISSING))
    assert not check(ops)[0]


def test_two_cas_winners_from_one_value_are_not_linearizable() -> None:
    ops = [Op(0, "set", "k", 0, 1, OK, value=0),
           Op(1, "cas", "k", 2, 5, OK, value=1, expected=0),
           Op(2, "cas", "k", 2, 5, OK, value=2, expected=0)]
    assert not check(ops)[0]
    ops[2] = Op(2, "cas", "k", 2, 5, FAIL, value=2, expected=0)
    assert check(ops)[0]


def test_an_operation_with_unknown_outcome_may_or_may_not_have_happened() -> None:
    lost = Op(0, "set", "k", 0, INF, None, value=1)
    assert check([lost, Op(1, "get", "k", 5, 6, 1)])[0]
    assert check([lost, Op(1, "get", "k", 5, 6, MISSING)])[0]
    assert not check([lost, Op(1, "get", "k", 5, 6, 1), Op(1, "get", "k", 7, 8, MISSING)])[0]


def test_keys_are_checked_apart() -> None:
    ok, answers = check([Op(0, "set", "a", 0, 1, OK, value=1), Op(0, "get", "b", 2, 3, 7)])
    assert not ok and answers["a"][0] and not answers["b"][0]


def test_the_search_is_bounded() -> None:
    ops = [Op(i, "set", "k", 0, 100, OK, value=i) for i in range(12)]
    with pytest.raises(RuntimeError):
        check_key([*ops, Op(99, "get", "k", 101, 102, -1)], max_states=1000)


# --- a cluster's history ------------------------------------------------------------------


def _record_history(nodes: list[OctopusNode], clients_per_node: int, ops_per_client: int,
                    keys: int, seed: int) -> list[Op]:
    history: list[Op] = []
    guard = threading.Lock()
    values = iter(range(1, 1 << 30))
    start = threading.Barrier(len(nodes) * clients_per_node)

    def run(cid: int, url: str) -> None:
        rng = random.Random(seed * 1000 + cid)
        with octopus.connect(url) as c:
            start.wait()
            for _ in range(ops_per_client):
                key = f"lin{rng.randrange(keys)}"
                kind = rng.choice(("get", "get", "set", "cas"))
                with guard:
                    value = next(values)
                called = time.monotonic()
                if kind == "get":
                    try:
                        if rng.random() < 0.5:
                            c.sync()
                            result = c.get("%n", key)["v"]
                        else:
                            result = c._call(_Request(["GET", key, "LINEARIZABLE"],
                                                      decode_record))["v"]
                    except octopus.NotFound:
                        result = MISSING
                    op = Op(cid, "get", key, called, time.monotonic(), result)
                elif kind == "set":
                    c.set("%n { v: %d }", key, value)
                    op = Op(cid, "set", key, called, time.monotonic(), OK, value=value)
                else:
                    expected = rng.choice([h.value for h in history[-20:]
                                           if h.key == key and h.value] or [0])
                    try:
                        c.set("%n { v: %d, v == %d }", key, value, expected)
                        result = OK
                    except octopus.ConditionFailed:
                        result = FAIL
                    op = Op(cid, "cas", key, called, time.monotonic(), result, value=value,
                            expected=expected)
                with guard:
                    history.append(op)

    threads = [threading.Thread(target=run, args=(i, nodes[i % len(nodes)].url))
               for i in range(len(nodes) * clients_per_node)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return history


def _check_cluster(nodes: list[OctopusNode], clients_per_node: int, ops_per_client: int,
                   keys: int) -> None:
    history = _record_history(nodes, clients_per_node, ops_per_client, keys, seed=7)
    assert len(history) == len(nodes) * clients_per_node * ops_per_client
    kinds = {op.kind for op in history}
    assert kinds == {"get", "set", "cas"}
    assert any(op.kind == "cas" and op.result == OK for op in history)
    ok, answers = check(history)
    assert ok, answers


def test_a_small_history_from_every_node_is_linearizable(nodes: list[OctopusNode]) -> None:
    _check_cluster(nodes, clients_per_node=2, ops_per_client=20, keys=3)


@pytest.mark.slow
def test_a_long_history_from_every_node_is_linearizable(nodes: list[OctopusNode]) -> None:
    _check_cluster(nodes, clients_per_node=4, ops_per_client=400, keys=4)

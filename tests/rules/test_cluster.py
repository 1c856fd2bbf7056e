"""Rules on replicas of a cluster (docs/rules.md, Clusters): derived watches follow the
changes every replica applies; invariants are refused on a replica."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import octopus
from octopus import Mode, RowEvent, RuleError
from octopus.cluster.launch import EtcdCluster


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with EtcdCluster(size=1) as cluster:
        yield cluster


def test_a_replica_keeps_derived_watches_current(etcd: EtcdCluster) -> None:
    prefix = "/rules-watch/"
    with octopus.Engine(etcd=etcd.url, prefix=prefix) as one, \
            octopus.Engine(etcd=etcd.url, prefix=prefix) as two:
        two.rules("orphan(Drv) :- attr(Drv, device, Dev), \\+ record(Dev).")
        events: list[RowEvent] = []
        two.watch_relation("orphan", events.append, existing=True)
        one.set("dev { }")
        one.set("drv { device: dev }")
        one.delete("dev")                  # written on one, applied by two
        one.set("dev { }")
        two.sync()
        two.flush()
        assert [(e.mode, e.row) for e in events] == [
            (Mode.ON_SET, ("drv",)), (Mode.ON_DEL, ("drv",))]
        assert [e.revision for e in events] == sorted(e.revision for e in events)


def test_invariants_are_refused_on_a_replica(etcd: EtcdCluster) -> None:
    with octopus.Engine(etcd=etcd.url, prefix="/rules-inv/") as replica:
        with pytest.raises(RuleError, match="replica"):
            replica.invariant("x", "violation(X) :- record(X).")
        assert replica.invariants() == []

"""Losing etcd members: one down, the service goes on; two down (no quorum), writes fail
with the typed Unavailable while reads go on from the replicas and say how stale they
may be; both back, writes resume and nothing acknowledged is lost. Restarting a node and
compacting etcd's history: the node catches up from its revision, or resyncs from a full
read and says so."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

import octopus
from octopus.cluster.etcd import Etcd
from octopus.cluster.launch import EtcdCluster, OctopusNode
from octopus.server.client_base import _check, _Request

from .conftest import start_nodes


@pytest.fixture
def etcd() -> Iterator[EtcdCluster]:
    """A cluster of its own for each test: these tests kill members."""
    with EtcdCluster() as cluster:
        yield cluster


def _status(client: octopus.Client) -> dict[str, Any]:
    reply = client._call(_Request(["CLUSTER", "STATUS"], _check))
    return {k.decode(): (v.decode() if isinstance(v, bytes) else v) for k, v in reply.items()}


def _retry_write(client: octopus.Client, text: str, *params: object,
                 within: float = 15.0) -> octopus.Record:
    deadline = time.monotonic() + within
    while True:
        try:
            return client.set(text, *params)
        except octopus.Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _retry_sync(client: octopus.Client, within: float = 15.0) -> int:
    """SYNC until it succeeds: an Unavailable SYNC (its etcd member died under it) is
    safe to repeat."""
    deadline = time.monotonic() + within
    while True:
        try:
            return client.sync()
        except octopus.Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_one_member_down_service_goes_on(etcd: EtcdCluster, prefix: str) -> None:
    nodes = start_nodes(etcd, 3, prefix)
    try:
        clients = [octopus.connect(n.url) for n in nodes]
        clients[0].set("before { n: 0 }")
        etcd.kill(0)                   # whichever it was: the leader, or a node's endpoint
        written = [_retry_write(clients[i % 3], "%n { n: %d }", f"after.{i}", i)
                   for i in range(12)]
        for c in clients:
            c.sync()
            assert c.get("before")["n"] == 0
            assert len(c.get_names("r'^after\\.'")) == 12
        assert [r["n"] for r in written] == list(range(12))
        with clients[1].lock("l1") as lock:
            assert lock.held
        for c in clients:
            c.close()
    finally:
        for n in nodes:
            n.stop()


def test_no_quorum_writes_fail_typed_reads_go_on_nothing_acknowledged_lost(
        etcd: EtcdCluster, prefix: str) -> None:
    nodes = start_nodes(etcd, 2, prefix)
    try:
        a, b = (octopus.connect(n.url) for n in nodes)
        acknowledged = [a.set("%n { n: %d }", f"ack.{i}", i) for i in range(20)]
        b.sync()
        etcd.kill(1)
        etcd.kill(2)
        failures = 0
        fast = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                acknowledged.append(a.set("during { n: 1 }"))
            except octopus.Unavailable as e:
                failures += 1
                took = time.monotonic() - started
                if "no etcd quorum reachable" in str(e):
                    assert took < 1.0          # failing fast once the node knows
                    fast = True
                    break
        assert failures >= 1 and fast
        with pytest.raises(octopus.Unavailable):
            b.set("during { n: 2 }")
        with pytest.raises(octopus.Unavailable):
            b.sync()
        assert b.get("ack.19")["n"] == 19                 # reads go on
        assert len(b.get_names("r'^ack\\.'")) == 20
        assert b.staleness() > 1.0                        # and say they may be stale
        assert not _status(b)["healthy"]
        etcd.restart(1)
        etcd.restart(2)
        etcd.wait_healthy(60)
        resumed = _retry_write(b, "resumed { n: 3 }", within=30)
        for c in (a, b):
            # Each node finds the quorum again on its own: a's first etcd call after the
            # restart may still go to a member that is not answering yet.
            _retry_sync(c, within=30)
            for record in acknowledged:
                assert c.get("%n", record.name).revision >= record.revision
            assert c.get("resumed") == resumed
            assert c.staleness() < 2.0
        a.close()
        b.close()
    finally:
        for n in nodes:
            n.stop()


def test_a_node_catches_up_from_its_revision_when_its_member_dies(
        etcd: EtcdCluster, prefix: str) -> None:
    nodes = start_nodes(etcd, 2, prefix)
    try:
        a, c = (octopus.connect(n.url) for n in nodes)
        a.set("x { n: 0 }")
        watched = _status(c)["endpoint"]
        member = etcd.endpoints.index(watched)
        events: list[octopus.Event] = []
        c.watch("r'^cu\\.'", events.append)
        nodes[1].kill(signal.SIGSTOP)          # the node sleeps through its member's death
        etcd.kill(member)
        written = [_retry_write(a, "%n { n: %d }", f"cu.{i}", i) for i in range(10)]
        nodes[1].kill(signal.SIGCONT)
        c.sync()
        assert len(c.get_names("r'^cu\\.'")) == 10
        deadline = time.monotonic() + 10
        while len(events) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e.record for e in events] == written          # every change, once, in order
        log = nodes[1].log_text()
        assert "resuming from revision" in log and "resynced" not in log
        a.close()
        c.close()
    finally:
        for n in nodes:
            n.stop()


def test_after_a_compaction_a_node_resyncs_from_a_full_read(
        etcd: EtcdCluster, prefix: str) -> None:
    nodes = start_nodes(etcd, 2, prefix)
    try:
        a, c = (octopus.connect(n.url) for n in nodes)
        for i in range(5):
            a.set("%n { n: %d }", f"rs.{i}", i)
        c.sync()
        deleted: list[octopus.Event] = []
        c.watch("r'^rs\\.'", deleted.append, on=octopus.Mode.ON_DEL)
        member = etcd.endpoints.index(_status(c)["endpoint"])
        nodes[1].kill(signal.SIGSTOP)
        etcd.kill(member)                       # its watch must be made anew ...
        for i in range(5, 10):
            _retry_write(a, "%n { n: %d }", f"rs.{i}", i)
        a.delete("rs.0")
        a.delete("rs.1")
        survivors = [e for i, e in enumerate(etcd.endpoints) if i != member]
        client = Etcd(survivors)
        revision = int(client.range(b"x", count_only=True)["header"]["revision"])
        client.compact(revision)                # ... from a revision etcd no longer has
        client.close()
        nodes[1].kill(signal.SIGCONT)
        _retry_sync(c)      # its first etcd call may go to the killed member
        names = c.get_names("r'^rs\\.'")
        assert names == [f"rs.{i}" for i in range(2, 10)]
        deadline = time.monotonic() + 10
        while len(deleted) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(e.record.name for e in deleted) == ["rs.0", "rs.1"]  # ON_DEL still
        log = nodes[1].log_text()
        assert "resynced from a full read" in log and "compacted" in log
        assert _status(c)["resyncs"] == 1
        a.close()
        c.close()
    finally:
        for n in nodes:
            n.stop()


def test_a_restarted_node_reads_the_cluster_again(etcd: EtcdCluster, prefix: str) -> None:
    nodes = start_nodes(etcd, 2, prefix)
    try:
        with octopus.connect(nodes[0].url) as a:
            for i in range(20):
                a.set("%n { n: %d }", f"rn.{i}", i)
            nodes[1].kill(signal.SIGKILL)
            a.set("rn.late { n: 99 }")
            again = OctopusNode(etcd.url, prefix=prefix, lease_ttl=2).start()
            nodes.append(again)
            with octopus.connect(again.url) as c:
                assert len(c.get_names("r'^rn\\.'")) == 21
                assert c.get("rn.late") == a.get("rn.late")
    finally:
        for n in nodes:
            n.stop()

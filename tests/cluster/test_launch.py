"""The launcher of real clusters (octopus/cluster/launch.py) on a busy machine: a port
picked free and then taken by another process before the server binds it."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import octopus
import octopus.cluster.launch as launch
from octopus.cluster.launch import EtcdCluster, OctopusNode


@pytest.fixture
def squatter(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[socket.socket]]:
    """Another process's listener on the first port free_ports hands out (once)."""
    held: list[socket.socket] = []
    pick = launch.free_ports

    def taken_between(n: int) -> list[int]:
        ports = pick(n)
        if not held:
            s = socket.socket()
            s.bind(("127.0.0.1", ports[0]))
            s.listen()
            held.append(s)
        return ports

    monkeypatch.setattr(launch, "free_ports", taken_between)
    yield held
    for s in held:
        s.close()


def test_etcd_starts_over_on_other_ports_when_one_was_taken(
        squatter: list[socket.socket]) -> None:
    with EtcdCluster() as cluster:
        taken = squatter[0].getsockname()[1]
        assert taken not in cluster.client_ports + cluster.peer_ports
        assert all(p is not None and p.poll() is None for p in cluster.procs)
        node = OctopusNode(cluster.url, prefix="/launch/").start()
        try:
            with octopus.connect(node.url) as client:
                client.set("%n { v: 1 }", "a")
                assert client.get("%n", "a")["v"] == 1
        finally:
            node.stop()


def test_a_node_is_ready_when_it_serves_not_when_its_port_answers(etcd: EtcdCluster) -> None:
    # Something else listens on the port the node is told to use: the node cannot bind
    # it and exits, and that is an error, not a node "ready" on someone else's port.
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        node = OctopusNode(etcd.url, prefix="/launch-taken/", port=other.getsockname()[1])
        try:
            with pytest.raises(RuntimeError, match="before serving") as failed:
                node.start(timeout=60)
            assert "is in use" in str(failed.value)
        finally:
            node.stop()

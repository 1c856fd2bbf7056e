"""Real clusters on loopback for the cluster tests: a 3-member etcd cluster (Debian's
etcd-server; these tests fail, never skip, without it) and Octopus nodes, each
``octopus serve --etcd ...`` in its own process."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from octopus.cluster.launch import EtcdCluster, OctopusNode

_prefixes = itertools.count(1)

#: The lease TTL of the test nodes: short, so that expiries happen within a test.
TTL = 2


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with EtcdCluster() as cluster:
        yield cluster


def start_nodes(etcd: EtcdCluster, n: int, prefix: str, ttl: int = TTL) -> list[OctopusNode]:
    nodes = [OctopusNode(etcd.url, prefix=prefix, lease_ttl=ttl) for _ in range(n)]
    try:
        for node in nodes:
            node.spawn()
        for node in nodes:
            node.wait_ready()
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


@pytest.fixture
def prefix() -> str:
    """A prefix of its own for each test: tests sharing an etcd cluster never meet."""
    return f"/t{os.getpid()}-{next(_prefixes)}/"


@pytest.fixture
def nodes(etcd: EtcdCluster, prefix: str) -> Iterator[list[OctopusNode]]:
    """Three Octopus nodes over the module's etcd cluster."""
    started = start_nodes(etcd, 3, prefix)
    yield started
    for node in started:
        node.stop()

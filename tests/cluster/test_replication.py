"""Replication across real nodes: every node sees every change, at etcd's revision, with
triggers and subscriptions firing on every node exactly once and in revision order."""

from __future__ import annotations

import threading
import time

import pytest

import octopus
from octopus import Atom, Mode
from octopus.cluster.etcd import Etcd
from octopus.cluster.launch import EtcdCluster, OctopusNode


def _wait(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_write_on_a_read_on_b_and_c_and_a_trigger_on_c_fires(nodes: list[OctopusNode]) -> None:
    a, b, c = (octopus.connect(n.url) for n in nodes)
    events: list[octopus.Event] = []
    c.watch("_ { port: _ }", events.append)
    record = a.set("hw.nic.0 { port: 80, name: 'eth0', kind: nic, up: true, load: 0.5 }")
    for client in (b, c):
        client.sync()
        got = client.get("hw.nic.0")
        assert got == record and got.revision == record.revision
        assert got["kind"] == Atom("nic") and type(got["kind"]) is Atom
        assert got["up"] is True and got["load"] == 0.5 and got["port"] == 80
    _wait(lambda: events)
    c.flush()
    assert [(e.mode, e.record) for e in events] == [(Mode.ON_SET, record)]
    a.delete("hw.nic.0")
    _wait(lambda: len(events) == 2)
    assert events[1].mode == Mode.ON_DEL and events[1].record == record
    for client in (a, b, c):
        client.close()


def test_the_octopus_revision_is_the_etcd_revision(etcd: EtcdCluster, prefix: str,
                                                   nodes: list[OctopusNode]) -> None:
    with octopus.connect(nodes[0].url) as a:
        record = a.set("r { x: 1 }")
        reply = Etcd(etcd.endpoints).range((prefix + "r/r").encode())
        assert int(reply["kvs"][0]["mod_revision"]) == record.revision
        assert a.revision >= record.revision


def test_reads_its_own_writes_on_the_node_it_talks_to(nodes: list[OctopusNode]) -> None:
    clients = [octopus.connect(n.url) for n in nodes]
    for i in range(30):
        writer = clients[i % 3]
        record = writer.set("ryw { n: %d }", i)
        assert writer.get("ryw") == record                 # no sync: its own write
        assert writer.get("ryw")["n"] == i
    for c in clients:
        c.close()


def test_sync_and_linearizable_get(nodes: list[OctopusNode]) -> None:
    a, b = octopus.connect(nodes[0].url), octopus.connect(nodes[1].url)
    for i in range(10):
        a.set("lin { n: %d }", i)
        revision = b.sync()
        assert revision >= a.get("lin").revision
        assert b.get("lin")["n"] == i
        raw = b._call(octopus.server.client_base._Request(  # GET ... LINEARIZABLE on the wire
            ["GET", "lin", "LINEARIZABLE"], octopus.server.client_base.decode_record))
        assert raw["n"] == i
    assert 0.0 <= b.staleness() < 5.0
    a.close()
    b.close()


def test_triggers_fire_once_per_node_in_revision_order(nodes: list[OctopusNode]) -> None:
    clients = [octopus.connect(n.url) for n in nodes]
    seen: list[list[int]] = [[] for _ in nodes]
    for c, log in zip(clients, seen, strict=True):
        c.watch("r'^ord\\.'", lambda ev, log=log: log.append(ev.revision), on=Mode.ON_SET)
    writers = [octopus.connect(n.url) for n in nodes]

    def write(w: octopus.Client, k: int) -> None:
        for i in range(15):
            w.set("%n { i: %d }", f"ord.{k}.{i}", i)

    threads = [threading.Thread(target=write, args=(w, k)) for k, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _wait(lambda: all(len(log) == 45 for log in seen))
    time.sleep(0.3)
    for c in clients:
        c.flush()
    assert all(len(log) == 45 for log in seen)          # exactly once, no more
    assert seen[0] == sorted(seen[0]) and len(set(seen[0])) == 45
    assert seen[0] == seen[1] == seen[2]                   # one order everywhere
    for c in clients + writers:
        c.close()


def test_publish_reaches_subscribers_on_every_node_once(nodes: list[OctopusNode]) -> None:
    clients = [octopus.connect(n.url) for n in nodes]
    got: list[list[octopus.Record]] = [[] for _ in nodes]
    for c, box in zip(clients, got, strict=True):
        c.subscribe("_ { temp: _ }", lambda ev, box=box: box.append(ev.record))
    counts = [clients[i % 3].publish("%n { temp: %d }", f"sensor.{i}", 20 + i) for i in range(6)]
    assert counts == [1] * 6                 # this node's subscriber (as Redis Cluster counts)
    _wait(lambda: all(len(box) == 6 for box in got))
    time.sleep(0.2)
    assert all([r.name for r in box] == [f"sensor.{i}" for i in range(6)] for box in got)
    for c in clients:
        c.sync()
        assert c.get_names("r'^sensor'") == []  # messages are never stored
        c.close()


def test_an_embedded_engine_joins_the_same_cluster(etcd: EtcdCluster, prefix: str,
                                                   nodes: list[OctopusNode]) -> None:
    with octopus.connect(nodes[0].url) as client, \
            octopus.Engine(etcd=etcd.endpoints, prefix=prefix, lease_ttl=2) as engine:
        client.set("from.server { x: 1 }")
        engine.sync()
        assert engine.get("from.server")["x"] == 1
        engine.set("from.engine { y: 2 }")
        client.sync()
        assert client.get("from.engine")["y"] == 2
        engine.set_many([(f"bulk.{i}", {"i": i}) for i in range(300)], batch=1000)
        client.sync()
        assert len(client.get_names("r'^bulk\\.'")) == 300
        with engine.session() as s:
            s.set("eph.engine { z: 3 }", ephemeral=True)
            client.sync()
            assert client.exists("eph.engine")
        client.sync()
        assert not client.exists("eph.engine")           # gone with the session's lease


def test_conditional_writes_and_their_failures(nodes: list[OctopusNode]) -> None:
    a, b = octopus.connect(nodes[0].url), octopus.connect(nodes[1].url)
    a.set("cas { v: 1 }")
    b.sync()
    assert b.set("cas { v: 2, v == 1 }")["v"] == 2
    with pytest.raises(octopus.ConditionFailed):
        a.set("cas { v: 3, v == 1 }")         # a may not have applied b's write yet: retried
    assert a.get("cas")["v"] == 2
    with pytest.raises(octopus.NotFound):
        a.delete("cas { v == 1 }")
    assert b.delete("cas { v == 2 }")["v"] == 2
    with pytest.raises(octopus.NotFound):
        a.delete("cas")
    with pytest.raises(octopus.ParseError):
        a.set("cas { v: ")                        # bad input is refused before etcd
    a.close()
    b.close()


def test_a_trigger_installed_by_a_write_sees_every_later_change(
        nodes: list[OctopusNode]) -> None:
    a, b = octopus.connect(nodes[0].url), octopus.connect(nodes[1].url)
    events: list[octopus.Event] = []
    trigger = octopus.Trigger(events.append, on=Mode.ON_SET | Mode.ON_DEL, persist=True)
    first = a.set("tw { n: 0 }", trigger=trigger)
    assert trigger.installed
    for i in range(1, 6):
        b.set("tw { n: 0, m: %d }", i)          # the trigger's query is the set's text
    b.delete("tw")
    _wait(lambda: len(events) == 6)
    assert [e.record["m"] for e in events] == [1, 2, 3, 4, 5, 5]
    assert [e.mode for e in events] == [Mode.ON_SET] * 5 + [Mode.ON_DEL]
    assert all(e.revision > first.revision for e in events)
    a.close()
    b.close()

"""The replica's write path (octopus/cluster/replica.py): a node applies its own
transaction from etcd's reply when it is the next revision, and groups concurrent plain
sets into one transaction — and either way every change is applied once per node, in
etcd's revision order, and every write reads back on its node at once."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest

import octopus
from octopus import Mode
from octopus.cluster.etcd import Etcd, unb64
from octopus.cluster.launch import EtcdCluster
from octopus.cluster.replica import Replica
from octopus.record import natural_key


def _replica(engine: octopus.Engine) -> Replica:
    replica = engine._core.replicated
    assert isinstance(replica, Replica)
    return replica


def test_an_own_write_is_applied_from_its_reply_once(etcd: EtcdCluster, prefix: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with octopus.Engine(etcd=etcd.url, prefix=prefix) as engine:
        events: list[octopus.Event] = []
        engine.watch("_ { n: _ }", events.append)
        replica = _replica(engine)
        # The watch brings each change 50 ms late: a write must not wait for it, and
        # the watch's copy of a change applied from its reply must be skipped.
        watch_apply = replica._apply

        def late(batch: list[dict[str, Any]]) -> None:
            time.sleep(0.05)
            watch_apply(batch)

        monkeypatch.setattr(replica, "_apply", late)
        before = replica.own_applied
        written = []
        for i in range(20):
            record = engine.set("%n { n: %d }", f"own.{i % 3}", i)
            assert engine.get("%n", record.name) == record        # read-your-writes
            written.append(record)
        assert engine.delete("own.0")["n"] == 18
        assert not engine.exists("own.0")
        # Nothing else writes under this prefix, so each write was the next revision
        # (a lease of another test expiring in between would make one wait).
        assert replica.own_applied - before >= 19
        engine.sync()
        engine.flush()
        sets = [e for e in events if e.mode == Mode.ON_SET]
        assert [e.record for e in sets] == written            # once each, in order
        assert [e.mode for e in events].count(Mode.ON_DEL) == 1
        assert replica.applied == engine.revision


def test_concurrent_sets_are_grouped_and_every_node_applies_each_once(
        etcd: EtcdCluster, prefix: str) -> None:
    threads, each = 12, 25
    with octopus.Engine(etcd=etcd.url, prefix=prefix) as writer, \
            octopus.Engine(etcd=etcd.url, prefix=prefix) as other:
        seen: list[octopus.Event] = []
        other.watch("_ { t: _ }", seen.append)
        results: list[list[octopus.Record]] = [[] for _ in range(threads)]
        errors: list[BaseException] = []
        start = threading.Barrier(threads)

        def write(t: int) -> None:
            try:
                start.wait()
                for i in range(each):
                    # Half the threads share names: a group holds each key once.
                    name = f"g.{t % 6}" if t % 2 else f"g.{t}.{i}"
                    record = writer.set("%n { t: %d, i: %d }", name, t, i)
                    assert writer.get("%n", name).revision >= record.revision
                    results[t].append(record)
            except BaseException as e:
                errors.append(e)

        pool = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
        for p in pool:
            p.start()
        for p in pool:
            p.join(120)
        assert not errors, errors[:3]
        replica = _replica(writer)
        assert replica.grouped == threads * each
        assert replica.groups < replica.grouped               # some sets went together
        revisions = Counter(r.revision for rs in results for r in rs)
        assert max(revisions.values()) > 1                    # one revision, several sets
        other.sync()
        other.flush()
        # Every set reached the other node once, in revision order.
        assert len(seen) == threads * each
        assert [e.revision for e in seen] == sorted(e.revision for e in seen)
        assert Counter(e.revision for e in seen) == revisions
        # Both replicas agree with etcd, record by record.
        kvs = Etcd(etcd.endpoints).range((prefix + "r/").encode(),
                                         (prefix + "r0").encode())["kvs"]
        assert len(kvs) == len(writer.get_names("_")) == len(other.get_names("_"))
        for engine in (writer, other):
            for name in writer.get_names("_"):
                assert engine.get("%n", name) == writer.get("%n", name)


def test_a_group_fails_as_a_whole_and_no_writer_hangs(etcd: EtcdCluster, prefix: str) -> None:
    with octopus.Engine(etcd=etcd.url, prefix=prefix) as engine:
        replica = _replica(engine)
        replica.timeout = 1.0                        # each write's deadline
        engine.set("before { v: 0 }")
        outcomes: list[object] = []

        def write(t: int) -> None:
            try:
                outcomes.append(engine.set("%n { v: %d }", f"during.{t}", t))
            except BaseException as e:
                outcomes.append(e)

        for i in range(etcd.size):
            etcd.kill(i, signal.SIGSTOP)             # etcd answers nothing, refuses nothing
        try:
            pool = [threading.Thread(target=write, args=(t,)) for t in range(8)]
            for p in pool:
                p.start()
            for p in pool:
                p.join(30)
            assert not any(p.is_alive() for p in pool)
        finally:
            for i in range(etcd.size):
                etcd.kill(i, signal.SIGCONT)
        # The one in flight: outcome unknown; the ones queued behind it: not sent.
        assert len(outcomes) == 8
        assert all(isinstance(o, octopus.Unavailable) for o in outcomes), outcomes
        etcd.wait_healthy(60)
        replica.timeout = 5.0
        deadline = time.monotonic() + 30
        while True:
            try:
                engine.sync()
                break
            except octopus.Unavailable:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        kvs = Etcd(etcd.endpoints).range((prefix + "r/").encode(),
                                         (prefix + "r0").encode())["kvs"]
        assert engine.get_names("_") == sorted(
            (unb64(kv["key"]).decode()[len(prefix) + 2:] for kv in kvs), key=natural_key)
        assert engine.set("after { v: 1 }")["v"] == 1


def test_writes_waiting_for_etcd_do_not_hold_the_servers_engine_threads(
        etcd: EtcdCluster, prefix: str, tmp_path: Any) -> None:
    """A node's commands that wait for etcd run on the replica's I/O threads: with etcd
    frozen, more hung writes than the server has engine threads leave reads on other
    connections answering at once (on the engine threads, they took every thread and a
    read waited for the writes' timeout)."""
    from octopus.cluster.server import ReplicaConnection
    from octopus.server.server import ServerConfig, run

    workers, writers = 4, 10
    with octopus.Engine(etcd=etcd.url, prefix=prefix) as engine:
        replica = _replica(engine)
        engine.set("here { v: 1 }")
        path = str(tmp_path / "s.sock")
        ready = threading.Event()
        box: list[Any] = []

        def serve() -> None:
            run(engine, unix=path, config=ServerConfig(workers=workers), use_uvloop=False,
                connection_class=ReplicaConnection,
                ready=lambda server: (box.append(server), ready.set()))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        assert ready.wait(30)
        url = f"unix://{path}"
        reader = octopus.connect(url)
        clients = [octopus.connect(url) for _ in range(writers)]
        outcomes: list[object] = []
        replica.timeout = 4.0

        def write(i: int) -> None:
            try:
                outcomes.append(clients[i].set("%n { v: %d }", f"w.{i}", i))
            except BaseException as e:
                outcomes.append(e)

        for i in range(etcd.size):
            etcd.kill(i, signal.SIGSTOP)
        try:
            pool = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
            for p in pool:
                p.start()
            time.sleep(0.5)                  # every write is in, waiting for etcd
            assert len(outcomes) == 0
            started = time.monotonic()
            assert reader.get("here")["v"] == 1
            assert time.monotonic() - started < 1.0
            for p in pool:
                p.join(30)
        finally:
            for i in range(etcd.size):
                etcd.kill(i, signal.SIGCONT)
        assert len(outcomes) == writers
        assert all(isinstance(o, octopus.Unavailable) for o in outcomes), outcomes
        for c in [reader, *clients]:
            c.close()
        box[0].stop_soon()
        thread.join(30)
        etcd.wait_healthy(60)

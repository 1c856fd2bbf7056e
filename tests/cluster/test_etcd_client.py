"""The etcd client (octopus/cluster/etcd.py) and the value codec, against a real etcd:
typed errors, large (chunked) replies, endpoints that fail, values that do not decode."""

from __future__ import annotations

import socket
import threading

import pytest

import octopus
from octopus import Atom
from octopus.cluster.codec import decode_value, encode_value
from octopus.cluster.etcd import (
    Compacted,
    Etcd,
    LeaseNotFound,
    NotWritten,
    OutcomeUnknown,
    prefix_end,
)
from octopus.cluster.launch import EtcdCluster
from octopus.cluster.replica import Replica
from octopus.core import Core


def test_values_round_trip_with_their_types() -> None:
    attrs = {"a": 1, "b": 1.0, "c": "text", "d": Atom("ident"), "e": True, "f": -(10 ** 300),
             "g": "ünïcödé"}
    decoded, marker, name = decode_value(encode_value(attrs, marker="m.1", name="msg"))
    assert decoded == attrs and list(decoded) == sorted(attrs)
    assert type(decoded["b"]) is float and type(decoded["d"]) is Atom
    assert type(decoded["e"]) is bool and type(decoded["c"]) is str
    assert (marker, name) == ("m.1", "msg")


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"a": 1}', b'{"a": {"Bad": 1}}',
                                 b'{"a": {"k": {"x": 1}}}', b'{"a": {"k": ["Not a name"]}}',
                                 b'{"a": {"k": null}}', b'{"a": {"k": 1}, "n": "Bad name"}',
                                 b'{"a": {"k": "\\ud800"}}'])
def test_foreign_values_are_refused_whole(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_value(raw)


def test_prefix_end() -> None:
    assert prefix_end(b"/octopus/") == b"/octopus0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"


def test_bad_endpoints_are_refused() -> None:
    for bad in ("https://127.0.0.1:2379", "127.0.0.1:2379", "", "http://host:notaport"):
        with pytest.raises(octopus.QueryError):
            Etcd(bad)
    with pytest.raises(octopus.QueryError):
        octopus.Engine(etcd="ftp://x")


def test_nobody_listening_is_unavailable_and_a_write_was_not_made() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]           # closed again: nothing listens there
    etcd = Etcd(f"http://127.0.0.1:{port}", timeout=0.5)
    with pytest.raises(octopus.Unavailable):
        etcd.range(b"x")
    with pytest.raises(NotWritten):
        etcd.put(b"x", b"y")
    with pytest.raises(octopus.Unavailable):
        octopus.Engine(etcd=f"http://127.0.0.1:{port}")


def test_a_write_whose_answer_is_lost_has_an_unknown_outcome() -> None:
    """A server that reads the request and closes without answering."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    etcd = Etcd(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=2.0)
    with pytest.raises(OutcomeUnknown, match="outcome is unknown"):
        etcd.put(b"x", b"y")
    thread.join()
    server.close()


def test_large_replies_leases_and_compaction(etcd: EtcdCluster) -> None:
    client = Etcd(etcd.endpoints)
    for i in range(300):                       # a reply far over Go's 4 KiB: chunked
        client.put(b"/big/%05d" % i, b"v" * 100)
    reply = client.range(b"/big/", prefix_end(b"/big/"))
    assert len(reply["kvs"]) == 300
    lease, ttl = client.lease_grant(5)
    assert ttl >= 5 and client.lease_keepalive(lease) > 0
    assert client.lease_revoke(lease) > 0
    assert client.lease_keepalive(lease) == 0
    with pytest.raises(LeaseNotFound):
        client.put(b"/big/x", b"y", lease=lease)
    revision = int(client.range(b"x", count_only=True)["header"]["revision"])
    client.compact(revision)
    with pytest.raises(Compacted):
        client.range(b"/big/", prefix_end(b"/big/"), revision=revision - 5)
    with pytest.raises(Compacted):
        for _ in client.watch(b"/big/", prefix_end(b"/big/"), revision - 5):
            pass
    client.close()


def test_replica_parameters_are_checked(etcd: EtcdCluster) -> None:
    core = Core(1000)
    try:
        with pytest.raises(octopus.QueryError):
            Replica(core, etcd.url, lease_ttl=1)
        with pytest.raises(octopus.QueryError):
            Replica(core, etcd.url, prefix="")
        with pytest.raises(octopus.QueryError):
            octopus.Engine(etcd=etcd.url, lease_ttl=True)   # type: ignore[arg-type]
    finally:
        core.close()


def test_a_foreign_key_under_the_prefix_is_skipped_not_fatal(etcd: EtcdCluster,
                                                             prefix: str) -> None:
    client = Etcd(etcd.endpoints)
    client.put((prefix + "r/bad").encode(), b"garbage")
    client.put((prefix + "r/Not A Name").encode(), b'{"a": {}}')
    with octopus.Engine(etcd=etcd.url, prefix=prefix) as engine:
        assert engine.get_names("_") == []
        client.put((prefix + "r/bad2").encode(), b"garbage")   # through the watch too
        engine.set("good { x: 1 }")
        assert engine.get_names("_") == ["good"]
    client.close()

"""Derived watches over the wire: RWATCH watches a relation the server's rules declared,
its arguments sent as tagged data (never Prolog text); the client's watch_relation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import octopus
from octopus import Atom, Mode, RowEvent, RuleError, TriggerNotFound
from octopus.server.async_client import connect_async
from octopus.server.client import connect
from octopus.server.client_base import _Requests
from octopus.server.commands import MAX_RULE_WATCHES
from octopus.server.resp import Push, encode_command, reply_parser
from octopus.server.testing import serve_in_thread
from tests.server.proxy import Proxy

RULES = """
unbound(Dev) :- attr(Dev, class, C), pci_class(C), \\+ driven(Dev).
driven(Dev) :- attr(Drv, device, Dev), record(Drv).
pci_class(storage).
pci_class(net).
sized(Dev, N) :- attr(Dev, size, N), N > 10.
"""


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def served(engine: octopus.Engine) -> Iterator[str]:
    engine.rules(RULES)
    with serve_in_thread(engine) as url:
        yield url


def test_a_client_watches_a_relation_like_a_session(engine: octopus.Engine,
                                                    served: str) -> None:
    engine.set("d0 { class: net }")
    remote: list[RowEvent] = []
    local: list[RowEvent] = []
    with connect(served) as c:
        watch = c.watch_relation("unbound", remote.append, existing=True)
        engine.watch_relation("unbound", local.append, existing=True)
        assert watch.id is not None and watch.names == ("Dev",) and watch.installed
        engine.set("d1 { class: storage }")
        engine.set("drv { device: d0 }")
        engine.delete("d1")
        engine.flush()
        c.flush()
        got = [(e.mode, e.row, e.names, e.revision) for e in remote]
        assert got == [(e.mode, e.row, e.names, e.revision) for e in local]
        assert [(e.mode, e.row) for e in remote] == [
            (Mode.ON_SET, ("d0",)), (Mode.ON_SET, ("d1",)), (Mode.ON_DEL, ("d0",)),
            (Mode.ON_DEL, ("d1",))]
        assert isinstance(remote[0].row[0], Atom)            # typed, as in-process
        watch.remove()
        c.flush()
        assert remote[-1].mode is Mode.REMOVED and not watch.installed
        with pytest.raises(TriggerNotFound):
            c.remove_rule_watch(watch)


def test_arguments_are_data(engine: octopus.Engine, served: str) -> None:
    with connect(served) as c:
        only: list[RowEvent] = []
        hostile: list[RowEvent] = []
        big: list[RowEvent] = []
        c.watch_relation("unbound", only.append, "d1", on=Mode.ON_SET)
        c.watch_relation("unbound", hostile.append, "x), halt, (y")
        c.watch_relation("sized", big.append, None, 20)
        engine.set("d0 { class: net }")
        engine.set("d1 { class: net }")
        engine.set("s { size: 20 }")
        engine.set("t { size: 30 }")
        engine.flush()
        c.flush()
        assert [e.row for e in only] == [("d1",)]
        assert hostile == []                                      # an identifier, no code
        assert [e.bindings for e in big] == [{"Dev": "s", "N": 20}]
        assert not engine.closed                                  # nothing halted


def test_only_declared_relations_and_checked_arguments(engine: octopus.Engine,
                                                       served: str) -> None:
    engine.add_facts("undeclared(X) :- record(X).")
    with connect(served) as c:
        with pytest.raises(RuleError, match="not a relation declared"):
            c.watch_relation("undeclared", lambda e: None)
        with pytest.raises(RuleError, match="plain Prolog name"):
            c.watch_relation("unbound(X)", lambda e: None)
        with pytest.raises(RuleError):
            c.watch_relation("unbound", lambda e: None, ["a"])
        with pytest.raises(octopus.QueryError):
            c.watch_relation("unbound", lambda e: None, on=Mode.ON_PUBLISH)
        assert c.exists("_") is False                              # still serving


def _raw(url: str, *commands: list[Any]) -> list[Any]:
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.connect(url.removeprefix("unix://"))
    parser = reply_parser()
    sock.sendall(b"HELLO 3\r\n" + b"".join(encode_command(c) for c in commands))
    replies: list[Any] = []
    sock.settimeout(10)
    while len(replies) < len(commands) + 1:
        parser.feed(sock.recv(65536))
        while (r := parser.gets()) is not False:
            if type(r) is not Push:
                replies.append(r)
    sock.close()
    return replies[1:]


def test_rwatch_refuses_bad_arguments(engine: octopus.Engine, served: str) -> None:
    replies = _raw(served, ["RWATCH", "unbound", "ARGS", "zoops"],
                   ["RWATCH", "unbound", "ARGS", "i12x"],
                   ["RWATCH", "unbound", "LATER"],
                   ["RWATCH", "unbound(X) :- true", "SET"],
                   ["RWATCH", "unbound", "ARGS", "a1", "a2"],
                   ["RUNWATCH", "77"], ["RUNWATCH", "x"],
                   ["RWATCH", "unbound", "SET", "ARGS", "_"])
    assert [str(r).split(" ")[0] for r in replies[:7]] == [
        "ERR", "ERR", "ERR", "RuleError", "RuleError", "TriggerNotFound", "ERR"]
    assert replies[7][1] == [b"Dev"]


def test_a_connection_has_a_bounded_number_of_derived_watches(engine: octopus.Engine,
                                                              served: str) -> None:
    with connect(served) as c:
        watches = [c.watch_relation("unbound", lambda e: None)
                   for _ in range(MAX_RULE_WATCHES)]
        with pytest.raises(octopus.OctopusError, match="most it may have"):
            c.watch_relation("unbound", lambda e: None)
        c.remove_rule_watch(watches[0])
        c.watch_relation("unbound", lambda e: None)


def test_a_closed_connection_takes_its_watches_and_the_client_gets_removed(
        engine: octopus.Engine, served: str) -> None:
    events: list[RowEvent] = []
    c = connect(served)
    c.watch_relation("unbound", events.append)
    rules = engine._core._rules
    assert rules is not None and rules.watch_count == 1
    c.close()
    assert events[-1].mode is Mode.REMOVED
    until(lambda: rules.watch_count == 0)


def test_the_async_client_watches_too(engine: octopus.Engine, served: str) -> None:
    async def main() -> list[RowEvent]:
        got: list[RowEvent] = []
        arrived = asyncio.Event()

        def on_row(e: RowEvent) -> None:
            got.append(e)
            arrived.set()

        c = await connect_async(served)
        try:
            w = await c.watch_relation("unbound", on_row)
            await asyncio.get_running_loop().run_in_executor(
                None, engine.set, "d9 { class: net }")
            await asyncio.wait_for(arrived.wait(), 10)
            with pytest.raises(octopus.OctopusError, match="await"):
                w.remove()
            await c.remove_rule_watch(w)
        finally:
            await c.close()
        return got

    got = asyncio.run(main())
    assert [e.row for e in got if e.mode is Mode.ON_SET] == [("d9",)]


def test_an_invariant_refusal_reaches_the_client(engine: octopus.Engine, served: str) -> None:
    engine.invariant("one_port", "violation(P) :- attr(A, port, P), attr(B, port, P), "
                                 "A \\== B.")
    engine.set("a { port: 80 }")
    with connect(served) as c:
        with pytest.raises(octopus.InvariantViolated, match="one_port"):
            c.set("b { port: 80 }")
        assert not c.exists("b")



# --- derived watches across a resumed session (docs/server.md, sessions) ---------------------


def _proxied(url: str) -> Proxy:
    assert url.startswith("unix://")
    return Proxy(url[len("unix://"):])


def test_rows_and_events_missed_in_a_blip_arrive_once_in_order(engine: octopus.Engine,
                                                              served: str) -> None:
    """Row pushes are numbered event frames like trigger events: rows read before the
    blip are not replayed, rows and events pushed during it arrive once each, in
    revision order; the watch stays installed on the server (not installed again)."""
    rules = engine._core._rules
    with _proxied(served) as proxy, connect(proxy.url, session_timeout=10) as c:
        got: list[tuple[str, Mode, object, int]] = []
        watch = c.watch_relation("unbound", lambda e: got.append(
            ("row", e.mode, e.row, e.revision)))
        c.watch("_ { class: _ }", lambda e: got.append(
            ("trigger", e.mode, e.record and e.record.name, e.revision)), on=Mode.ON_SET)
        assert rules is not None and rules.watch_count == 1
        engine.set("d0 { class: net }")
        engine.set("d1 { class: storage }")
        until(lambda: len(got) == 4)
        assert proxy.drop() == 1
        engine.set("d2 { class: net }")
        engine.set("drv { device: d0 }")
        engine.set("d3 { class: net }")
        until(lambda: len(got) == 9)
        c.flush()
        assert proxy.accepted == 2                       # it did resume, once
        # (within one revision, the engine hands the trigger's event over first)
        assert got == [
            ("trigger", Mode.ON_SET, "d0", 1), ("row", Mode.ON_SET, ("d0",), 1),
            ("trigger", Mode.ON_SET, "d1", 2), ("row", Mode.ON_SET, ("d1",), 2),
            ("trigger", Mode.ON_SET, "d2", 3), ("row", Mode.ON_SET, ("d2",), 3),
            ("row", Mode.ON_DEL, ("d0",), 4),
            ("trigger", Mode.ON_SET, "d3", 5), ("row", Mode.ON_SET, ("d3",), 5)]
        assert rules.watch_count == 1 and watch.installed
        # and it still works, and is removed, through the resumed connection
        engine.set("d4 { class: net }")
        until(lambda: len(got) == 11)
        watch.remove()
        c.flush()
        assert got[-1][:2] == ("row", Mode.REMOVED) and rules.watch_count == 0


def test_the_async_client_keeps_its_derived_watches_across_a_blip(
        engine: octopus.Engine, served: str) -> None:
    rules = engine._core._rules
    assert rules is not None

    async def main() -> list[RowEvent]:
        got: list[RowEvent] = []
        loop = asyncio.get_running_loop()
        with _proxied(served) as proxy:
            c = await connect_async(proxy.url, session_timeout=10)
            try:
                w = await c.watch_relation("unbound", got.append)
                await loop.run_in_executor(None, engine.set, "d0 { class: net }")
                while len(got) < 1:
                    await asyncio.sleep(0.01)
                assert proxy.drop() == 1
                await loop.run_in_executor(None, engine.set, "d1 { class: net }")
                await loop.run_in_executor(None, engine.set, "drv { device: d1 }")
                deadline = loop.time() + 10
                while len(got) < 3:
                    assert loop.time() < deadline
                    await asyncio.sleep(0.01)
                assert proxy.accepted == 2 and rules.watch_count == 1
                await c.remove_rule_watch(w)
                await c.flush()
            finally:
                await c.close()
        return got

    got = asyncio.run(main())
    assert [(e.mode, e.row) for e in got] == [
        (Mode.ON_SET, ("d0",)), (Mode.ON_SET, ("d1",)), (Mode.ON_DEL, ("d1",)),
        (Mode.REMOVED, None)]


def test_a_connection_with_derived_watches_cannot_resume_another_session(
        engine: octopus.Engine, served: str) -> None:
    """Its own session would be dropped for the resumed one, watches and all."""
    with connect(served) as c:
        session = _raw(served, ["SESSION"])[0]
        replies = _raw(served, ["RWATCH", "unbound"],
                       ["SESSION", "RESUME", str(session[b"id"]), session[b"secret"], "0"])
        assert "derived watches" in str(replies[1])
        assert c.exists("_") is False


def test_a_derived_watch_installed_too_late_is_removed_with_runwatch() -> None:
    """A watch_relation whose caller gave up (its deadline passed) is undone when its
    reply arrives: RUNWATCH, not UNWATCH (which would name a trigger)."""
    request = _Requests.watch_relation("unbound", lambda e: None, (), Mode.ON_SET, False)
    assert request.undo is not None
    assert request.undo([7, [b"Dev"]]) == ["RUNWATCH", "7"]

"""The sans-I/O command layer, driven directly: commands in, actions out, on a real
engine — no socket, no event loop, no thread."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

import octopus
from octopus.events import Event, Mode
from octopus.server import commands
from octopus.server.cache import ReplyCache
from octopus.server.commands import (
    OK,
    AuthFailed,
    Call,
    Close,
    CommandLayer,
    Flush,
    LayerError,
    Wait,
)
from octopus.server.config import ServerConfig
from octopus.server.resp import ReplyParser


class Ctx:
    """What a server gives its connections' layers (the real engine and cache)."""

    def __init__(self, engine: octopus.Engine, config: ServerConfig) -> None:
        self.engine = engine
        self.config = config
        self.cache: ReplyCache | None = ReplyCache(config.reply_cache,
                                                   config.reply_cache_bytes)
        engine._core.observe_names(self.cache.changed)      # as the Server does
        self.max_query_length = config.max_query_length
        self.info_calls = 0

    def info(self, section: str) -> str:
        self.info_calls += 1
        return f"# Store\r\nrecords:{self.engine.count()}\r\n"


@pytest.fixture
def engine() -> Iterator[octopus.Engine]:
    with octopus.Engine() as e:
        yield e


class Driver:
    """Plays the I/O layer: runs every Call inline and collects the events pushed."""

    def __init__(self, engine: octopus.Engine, **config: Any) -> None:
        self.ctx = Ctx(engine, ServerConfig(**config))
        self.events: list[tuple[bytes, Event]] = []
        self.layer = CommandLayer(self.ctx, engine.session(), conn_id=7,
                                  on_trigger=lambda e: self.events.append((b"trigger", e)),
                                  on_message=lambda e: self.events.append((b"message", e)))
        self.calls = 0

    def action(self, *args: str | bytes) -> Any:
        """The action of one command after running its engine calls."""
        action = self.layer.handle([a.encode() if isinstance(a, str) else a for a in args])
        while type(action) is Call:
            self.calls += 1
            try:
                result, error = action.run(), None
            except Exception as e:
                result, error = None, e
            action = self.layer.complete(action, result, error)
        return action

    def reply(self, *args: str | bytes) -> Any:
        action = self.action(*args)
        assert type(action) is bytes, action
        return decode(action)


def decode(data: bytes) -> Any:
    p = ReplyParser()
    p.feed(data)
    value = p.gets()
    assert value is not False and p.gets() is False, data
    return value


def test_the_layer_does_no_io() -> None:
    tree = ast.parse(inspect.getsource(commands))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in (node.names if isinstance(node, ast.Import) else
                              [ast.alias(node.module or "")])}
    assert not imported & {"asyncio", "socket", "threading", "time", "selectors",
                           "concurrent"}


def test_immediate_replies_need_no_engine_call(engine: octopus.Engine) -> None:
    d = Driver(engine)
    assert d.layer.handle([b"PING"]) == b"+PONG\r\n"
    assert d.layer.handle([b"ECHO", b"hi"]) == b"$2\r\nhi\r\n"
    assert d.layer.handle([b"CLIENT", b"FORMAT", b"TAGGED"]) == OK
    assert d.layer.handle([b"NOSUCH"]).startswith(b"-ERR unknown command 'NOSUCH'")
    assert d.layer.handle([b"REVISION"]) == b":0\r\n"
    assert d.layer.commands == 5 and not d.layer.busy


def test_store_commands_are_engine_calls_run_by_the_caller(engine: octopus.Engine) -> None:
    d = Driver(engine)
    action = d.layer.handle([b"SET", b"a { x: 1 }"])
    assert type(action) is Call and d.layer.busy
    assert not engine.exists("a")                 # nothing happens until the caller runs it
    with pytest.raises(LayerError):
        d.layer.handle([b"PING"])                 # one thing at a time: request order
    reply = d.layer.complete(action, action.run(), None)
    assert decode(reply) == "OK" and not d.layer.busy     # Redis's conventions by default
    assert d.reply("EXISTS", "a") == 1
    assert d.reply("NAMES", "_ { x: %d }", "1") == [b"a"]
    assert d.reply("GETALL", "r'^a'") == [b"a { x: 1 }"]
    assert d.reply("DEL", "a") == 1
    assert d.reply("DEL", "a") == 0
    assert d.reply("GET", "a") is None
    assert d.reply("CLIENT", "FORMAT", "TEXT", "OCTOPUS") == "OK"
    assert d.reply("SET", "a { x: 1 }") == b"a { x: 1 }"
    assert d.reply("DEL", "a") == b"a { x: 1 }"
    assert str(d.reply("DEL", "a")).startswith("NotFound")
    assert str(d.reply("GET", "a")).startswith("NotFound")


def test_integer_parameters_take_the_languages_hex_literals(engine: octopus.Engine) -> None:
    d = Driver(engine)
    engine.set("dev { vendor: 0x8086, off: -16 }")
    assert d.reply("NAMES", "_ { vendor: %d }", "0x8086") == [b"dev"]
    assert d.reply("NAMES", "_ { vendor: %d }", "32902") == [b"dev"]
    assert d.reply("NAMES", "_ { off: %d }", "-0x10") == [b"dev"]
    for bad in ("0x", "0x8086g", "8086h", "+0x10", "0x" + "f" * 4000, "1e3"):
        assert str(d.reply("NAMES", "_ { vendor: %d }", bad)).startswith("ParameterError")


def test_parsing_happens_inside_the_engine_call(engine: octopus.Engine) -> None:
    d = Driver(engine)
    huge = "_ { a: 'x" + "%" * 100_000 + "' }"
    action = d.layer.handle([b"GET", huge.encode()])
    assert type(action) is Call                   # handle() did not parse it
    with pytest.raises(octopus.QueryError, match="limit"):
        action.run()
    d.layer.complete(action, None, octopus.QueryError("x"))
    action = d.layer.handle([b"SET", b"b { n: %d }", b"nope"])
    assert type(action) is Call
    reply = d.layer.complete(action, None, _raised(action))
    assert decode(reply).startswith("ParameterError")


def test_a_plain_set_parses_in_its_call_and_answers_its_errors(engine: octopus.Engine) -> None:
    d = Driver(engine)
    for fmt in ("REDIS", "OCTOPUS"):
        assert d.reply("CLIENT", "FORMAT", "TEXT", fmt) == "OK"
        action = d.layer.handle([b"SET", b"\xff { x: 1 }"])
        assert type(action) is Call                # handle() did not decode it
        reply = decode(d.layer.complete(action, None, _raised(action)))
        assert reply.startswith("QueryError") and "UTF-8" in reply
        assert str(d.reply("SET", "c { v: 2, v == 1 }")).startswith("ConditionFailed")
        assert str(d.reply("SET", "c {")).startswith("ParseError")
        assert not engine.exists("c")
    assert d.reply("SET", "c { v: 2 }") == b"c { v: 2 }"     # (OCTOPUS: the record)


def _raised(call: Call) -> BaseException:
    try:
        call.run()
    except BaseException as e:
        return e
    raise AssertionError("the call did not raise")


def test_get_replies_are_cached_until_their_record_changes(engine: octopus.Engine) -> None:
    d = Driver(engine)
    d.reply("SET", "c { v: 1 }")
    assert d.reply("GET", "c") == b"c { v: 1 }"
    calls = d.calls
    assert d.layer.handle([b"GET", b"c"]) == b"$10\r\nc { v: 1 }\r\n"   # no engine call
    assert d.calls == calls
    d.reply("SET", "other { v: 9 }")                 # another record: the reply stays
    assert d.layer.handle([b"GET", b"c"]) == b"$10\r\nc { v: 1 }\r\n"
    assert d.calls == calls + 1
    d.reply("SET", "c { v: 2 }")
    assert d.reply("GET", "c") == b"c { v: 2 }"
    assert d.calls == calls + 3
    d.reply("DEL", "c")
    assert d.reply("GET", "c") is None               # Redis's nil, asked again
    assert d.calls == calls + 5


def test_query_replies_go_at_any_change(engine: octopus.Engine) -> None:
    d = Driver(engine)
    d.reply("SET", "c { v: 1 }")
    assert d.reply("GET", "_ { v: 1 }") == b"c { v: 1 }"
    calls = d.calls
    assert d.layer.handle([b"GET", b"_ { v: 1 }"]) == b"$10\r\nc { v: 1 }\r\n"
    assert d.calls == calls
    d.reply("SET", "b { v: 1 }")                     # another record answers it now
    assert d.reply("GET", "_ { v: 1 }") == b"b { v: 1 }"
    assert d.calls == calls + 2


def test_a_bulk_load_drops_every_reply(engine: octopus.Engine) -> None:
    d = Driver(engine)
    d.reply("SET", "c { v: 1 }")
    assert d.reply("GET", "c") == b"c { v: 1 }"
    engine.session().set_many(["c { v: 2 }", "d { v: 3 }"])
    assert d.ctx.cache is not None and len(d.ctx.cache) == 0
    assert d.reply("GET", "c") == b"c { v: 2 }"


def test_long_gets_skip_the_cache(engine: octopus.Engine) -> None:
    d = Driver(engine)
    d.reply("SET", "c { v: 1 }")
    long_query = "c" + " " * 9000                    # hashing it would be the loop's work
    calls = d.calls
    assert d.reply("GET", long_query) == d.reply("GET", long_query) == b"c { v: 1 }"
    assert d.calls == calls + 2
    assert d.ctx.cache is not None and len(d.ctx.cache) == 0


def test_not_found_is_never_cached(engine: octopus.Engine) -> None:
    d = Driver(engine)
    assert d.reply("CLIENT", "FORMAT", "TAGGED") == "OK"        # NotFound is an error
    for _ in range(2):
        call = d.layer.handle([b"GET", b"missing"])
        assert type(call) is Call
        assert decode(d.layer.complete(call, None, _raised(call))).startswith("NotFound")
    assert d.ctx.cache is not None and len(d.ctx.cache) == 0


def test_get_with_a_trigger_replies_with_its_id(engine: octopus.Engine) -> None:
    d = Driver(engine)
    assert d.reply("GET", "v", "TRIGGER", "SET", "ONCE", "MISSING")[1] is None   # Redis's nil
    assert d.reply("CLIENT", "FORMAT", "TEXT", "OCTOPUS") == "OK"
    tid, error = d.reply("GET", "w", "TRIGGER", "SET", "ONCE", "MISSING")
    assert isinstance(tid, int) and str(error).startswith("NotFound")
    assert tid in d.layer.owned and d.layer.subscriber
    engine.set("w { a: 1 }")
    engine.flush()
    assert [(k, e.mode, e.trigger_id) for k, e in d.events] == [
        (b"trigger", Mode.ON_SET | Mode.REMOVED, tid)]
    frame = decode(d.layer.event_frame(*d.events[0]))
    assert frame == [b"trigger", tid, b"ON_SET|REMOVED", engine.revision, b"w { a: 1 }"]
    assert tid not in d.layer.owned                 # a final event forgets it


def test_wait_and_flush_are_handed_to_the_io_layer(engine: octopus.Engine) -> None:
    d = Driver(engine)
    wait = d.layer.handle([b"WAIT", b"x", b"1.5"])
    assert wait == Wait("x", (), 1.5) and d.layer.busy
    assert decode(d.layer.complete(wait, octopus.Record("x", {"a": 1}))) == b"x { a: 1 }"
    wait = d.action("WAIT", "_ { n: %d }", "3")      # parameters: typed in an engine call
    assert wait == Wait("_ { n: %d }", (3,), None)
    reply = d.layer.complete(wait, None, octopus.WaitTimeout("no record"))
    assert decode(reply).startswith("WaitTimeout")
    flush = d.layer.handle([b"FLUSH"])
    assert type(flush) is Flush and d.layer.complete(flush) == OK
    assert str(d.reply("WAIT", "x", "-1")).startswith("ERR")


def test_auth_failures_are_held_and_success_lifts_the_limits(engine: octopus.Engine) -> None:
    d = Driver(engine, password="pw")
    assert d.layer.limits == (10, 16 << 10, 16 << 10)
    assert str(d.reply("GET", "x")).startswith("NOAUTH")
    failed = d.layer.handle([b"AUTH", b"wrong"])
    assert type(failed) is AuthFailed and d.layer.busy
    assert decode(d.layer.complete(failed)).startswith("WRONGPASS")
    failed = d.layer.handle([b"HELLO", b"3", b"AUTH", b"u", b"wrong"])
    assert type(failed) is AuthFailed
    d.layer.complete(failed)
    assert d.layer.handle([b"AUTH", b"pw"]) == OK
    assert d.layer.limits == (65536, 1 << 20, 64 << 10)


def test_auth_knows_one_user_default(engine: octopus.Engine) -> None:
    # The right password under another user name is refused, as Redis refuses a user
    # it does not have; "default" is the user --requirepass protects.
    for command in ([b"AUTH", b"admin", b"pw"], [b"HELLO", b"3", b"AUTH", b"admin", b"pw"]):
        d = Driver(engine, password="pw")
        failed = d.layer.handle(command)
        assert type(failed) is AuthFailed
        assert decode(d.layer.complete(failed)).startswith("WRONGPASS")
        assert str(d.reply("GET", "x")).startswith("NOAUTH")
    d = Driver(engine, password="pw")
    assert d.layer.handle([b"AUTH", b"default", b"pw"]) == OK
    d = Driver(engine, password="pw")
    assert d.layer.handle([b"HELLO", b"3", b"AUTH", b"default", b"pw"]).startswith(b"%")


def test_http_requests_close_the_connection(engine: octopus.Engine) -> None:
    for first in (b"POST", b"post", b"Host:"):
        d = Driver(engine, password="pw")        # before AUTH too
        action = d.layer.handle([first, b"/", b"HTTP/1.1"])
        assert type(action) is Close and action.reply == b"" and "HTTP" in action.warning
        with pytest.raises(LayerError):
            d.layer.handle([b"PING"])


def test_quit_ends_the_session_before_its_reply(engine: octopus.Engine) -> None:
    d = Driver(engine)
    d.reply("SET", "eph { a: 1 }", "EPHEMERAL")
    action = d.layer.handle([b"QUIT"])
    assert type(action) is Call and engine.exists("eph")
    close = d.layer.complete(action, action.run())
    assert close == Close(OK) and not engine.exists("eph") and d.layer.session_closed


def test_triggers_per_connection_are_limited(engine: octopus.Engine) -> None:
    d = Driver(engine, max_triggers=3)
    assert d.reply("CLIENT", "FORMAT", "TEXT", "OCTOPUS") == "OK"
    ids = [d.reply("WATCH", f"t{i}") for i in range(2)] + [d.reply("SUBSCRIBE", "m")]
    assert all(isinstance(i, int) for i in ids)
    for args in (("WATCH", "t9"), ("SUBSCRIBE", "m2"),
                 ("GET", "t9", "TRIGGER", "SET", "ONCE", "ALWAYS")):
        reply = d.reply(*args)
        assert str(reply).startswith("LimitExceeded") and "limit is 3" in str(reply)
    assert len(d.layer.owned) == 3
    assert d.reply("UNWATCH", str(ids[0])) == "OK"
    engine.flush()
    for kind, event in d.events:
        d.layer.event_frame(kind, event)        # the REMOVED event frees the slot
    assert isinstance(d.reply("WATCH", "t9"), int)


def test_only_the_installer_may_remove(engine: octopus.Engine) -> None:
    a, b = Driver(engine), Driver(engine)
    tid = a.reply("WATCH", "z")
    assert str(b.reply("UNWATCH", str(tid))).startswith("TriggerNotFound")
    assert a.reply("UNWATCH", str(tid)) == "OK"


def test_info_is_an_engine_call(engine: octopus.Engine) -> None:
    d = Driver(engine)
    call = d.layer.handle([b"INFO"])
    assert type(call) is Call and d.ctx.info_calls == 0   # it counts records (Prolog)
    assert b"records:0" in decode(d.layer.complete(call, call.run()))


def test_completing_the_wrong_action_is_refused(engine: octopus.Engine) -> None:
    d = Driver(engine)
    call = d.layer.handle([b"SET", b"q { a: 1 }"])
    with pytest.raises(LayerError):
        d.layer.complete(Flush())
    assert type(call) is Call
    d.layer.complete(call, call.run())


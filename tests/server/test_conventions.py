"""Redis's conventions in the command layer (docs/server.md, *Redis's conventions*):
transactions, Redis-style pub/sub frames, COMMAND, and the switch between conventions;
driven directly on a real engine, as in test_commands."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import octopus
from octopus.server import commands
from octopus.server.commands import CommandLayer

from .test_commands import Driver, decode


@pytest.fixture
def engine() -> Iterator[octopus.Engine]:
    with octopus.Engine() as e:
        yield e


def pushed(d: Driver) -> list[object]:
    """The frames of the events delivered so far (and forget them)."""
    d.layer.ctx.engine.flush()
    frames = [d.layer.event_frame(kind, event) for kind, event in d.events]
    d.events.clear()
    return [decode(f) for f in frames if f]


# --- conventions ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, get_missing, set_reply, del_reply", [
    (("TEXT",), None, "OK", 1),
    (("TEXT", "REDIS"), None, "OK", 1),
    (("TEXT", "OCTOPUS"), "NotFound", b"a { x: 1 }", b"a { x: 1 }"),
    (("TAGGED",), "NotFound", [b"a", 1, b"x", b"i1"], [b"a", 1, b"x", b"i1"]),
    (("TAGGED", "REDIS"), None, "OK", 1),
])
def test_the_conventions_follow_client_format(engine: octopus.Engine, fmt: tuple[str, ...],
                                              get_missing: str | None, set_reply: object,
                                              del_reply: object) -> None:
    d = Driver(engine)
    assert d.reply("CLIENT", "FORMAT", *fmt) == "OK"
    missing = d.reply("GET", "a")
    assert missing is None if get_missing is None else str(missing).startswith(get_missing)
    assert d.reply("SET", "a { x: 1 }") == set_reply
    assert d.reply("DEL", "a") == del_reply
    gone = d.reply("DEL", "a")
    assert gone == 0 if get_missing is None else str(gone).startswith("NotFound")
    assert d.reply("GET", "a") == missing                 # never cached across the switch
    seq = d.reply("SET", "job.", "SEQUENTIAL")            # the name is news: always told
    assert b"job.0" in (seq if isinstance(seq, bytes) else seq[0])
    assert str(d.reply("CLIENT", "FORMAT", "TEXT", "MAYBE")).startswith("ERR")


def test_the_reply_cache_keeps_conventions_apart(engine: octopus.Engine) -> None:
    a, b = Driver(engine), Driver(engine)
    a.ctx = b.ctx                                  # one server: one cache
    a.layer.ctx = b.layer.ctx
    assert b.reply("CLIENT", "FORMAT", "TAGGED", "REDIS") == "OK"
    a.reply("SET", "c { v: 1 }")
    assert a.reply("GET", "c") == b"c { v: 1 }"
    assert b.reply("GET", "c") == [b"c", 1, b"v", b"i1"]
    assert a.reply("GET", "c") == b"c { v: 1 }"


# --- transactions ------------------------------------------------------------------------


def test_a_write_transaction_is_one_atomic_batch(engine: octopus.Engine) -> None:
    d = Driver(engine)
    events: list[octopus.Event] = []
    engine.watch("r'^t'", events.append)
    assert d.reply("MULTI") == "OK"
    for i in range(3):
        assert d.reply("SET", f"t{i} {{ i: %d }}", str(i)) == "QUEUED"
    assert not engine.exists("t0")                        # queued, not run
    assert d.reply("EXEC") == ["OK", "OK", "OK"]
    engine.flush()
    assert [(e.record.name, e.revision) for e in events if e.record] == \
        [("t0", 1), ("t1", 2), ("t2", 3)]
    assert engine.get("t2")["i"] == 2


@pytest.mark.parametrize("bad, error", [
    (("SET", "t9 { i: "), "ParseError command 2 of the transaction: unexpected end"),
    (("SET", "t9 { i: %d }", "x"), "ParameterError command 2 of the transaction"),
    (("SET", "t9 { i: 1, i > 0 }"), "QueryError command 2 of the transaction: a SET in a"),
    (("SET", "t9 { i: 1 }", "EPHEMERAL"), "ERR command 2 of the transaction: a SET in a"),
])
def test_a_bad_command_applies_nothing(engine: octopus.Engine, bad: tuple[str, ...],
                                       error: str) -> None:
    d = Driver(engine)
    d.reply("MULTI")
    d.reply("SET", "t1 { i: 1 }")
    assert d.reply(*bad) == "QUEUED"
    d.reply("SET", "t3 { i: 3 }")
    reply = d.reply("EXEC")
    assert str(reply).startswith(error), reply
    assert engine.count() == 0 and engine.revision == 0
    assert d.reply("EXEC") is not None and str(d.reply("EXEC")).startswith("ERR EXEC without")


def test_queueing_errors_discard_the_transaction(engine: octopus.Engine) -> None:
    d = Driver(engine)
    assert str(d.reply("EXEC")).startswith("ERR EXEC without MULTI")
    assert str(d.reply("DISCARD")).startswith("ERR DISCARD without MULTI")
    d.reply("MULTI")
    assert str(d.reply("MULTI")).startswith("ERR MULTI calls can not be nested")
    d.reply("SET", "a { x: 1 }")
    for refused in (("GET", "a"), ("WATCH", "a"), ("DEL", "a"), ("WAIT", "a"), ("SET",),
                    ("NOSUCH",)):
        assert str(d.reply(*refused)).startswith("ERR")
    assert str(d.reply("EXEC")).startswith("EXECABORT")
    assert not engine.exists("a")
    d.reply("MULTI")
    d.reply("SET", "a { x: 1 }")
    assert d.reply("DISCARD") == "OK"
    assert d.reply("EXEC") is not None and not engine.exists("a")
    d.reply("MULTI")
    assert d.reply("EXEC") == []
    d.reply("MULTI")
    d.reply("NOSUCH")                                     # an unknown command alone
    assert str(d.reply("EXEC")).startswith("EXECABORT")


def test_the_queue_is_bounded(engine: octopus.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "MAX_QUEUED", 3)
    monkeypatch.setattr(commands, "MAX_QUEUED_BYTES", 1000)
    d = Driver(engine)
    d.reply("MULTI")
    for i in range(3):
        assert d.reply("SET", f"q{i} {{ i: 1 }}") == "QUEUED"
    assert "longer than 3 commands" in str(d.reply("SET", "q3 { i: 1 }"))
    assert str(d.reply("EXEC")).startswith("EXECABORT") and engine.count() == 0
    d.reply("MULTI")
    assert d.reply("SET", "big { s: %s }", "x" * 900) == "QUEUED"
    assert "1000 bytes" in str(d.reply("SET", "big2 { s: %s }", "x" * 200))
    assert str(d.reply("EXEC")).startswith("EXECABORT") and engine.count() == 0


def test_a_read_transaction_answers_at_one_revision(engine: octopus.Engine,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    engine.set("r1 { v: 1 }")
    d = Driver(engine)
    runs: list[bytes] = []
    run_inline = CommandLayer._run_inline

    def racing(layer: CommandLayer, args: list[bytes]) -> bytes:
        # Another client's change lands between the reads of the first attempt.
        runs.append(args[0])
        if len(runs) == 1:
            engine.set("r2 { v: 2 }")
        return run_inline(layer, args)

    monkeypatch.setattr(CommandLayer, "_run_inline", racing)
    d.reply("MULTI")
    for args in (("GET", "r1"), ("NAMES", "r'^r'"), ("EXISTS", "r2"), ("REVISION",)):
        assert d.reply(*args) == "QUEUED"
    assert d.reply("EXEC") == [b"r1 { v: 1 }", [b"r1", b"r2"], 1, 2]
    assert len(runs) == 8                                 # the first attempt was discarded

    def always_racing(layer: CommandLayer, args: list[bytes]) -> bytes:
        engine.set("r3 { v: 3 }")
        return run_inline(layer, args)

    monkeypatch.setattr(CommandLayer, "_run_inline", always_racing)
    d.reply("MULTI")
    d.reply("GET", "r1")
    reply = d.reply("EXEC")
    assert str(reply).startswith("LimitExceeded") and str(commands.SNAPSHOT_ATTEMPTS) in str(reply)


def test_reads_in_a_transaction_take_no_trigger(engine: octopus.Engine) -> None:
    d = Driver(engine)
    d.reply("MULTI")
    d.reply("GET", "a", "TRIGGER", "SET", "ONCE", "ALWAYS")
    assert "take no options" in str(d.reply("EXEC"))
    assert not d.layer.owned


# --- pub/sub frames ----------------------------------------------------------------------


def test_redis_style_subscriptions(engine: octopus.Engine) -> None:
    d = Driver(engine)
    assert decode_all(d.action("SUBSCRIBE", "_ { t: 1 }", "_ { t: %d }", "2"))[0] == \
        [b"subscribe", b"_ { t: 1 }", 1]                  # one frame per query
    d2 = Driver(engine)
    frames = decode_all(d2.action("SUBSCRIBE", "_ { t: 1 }", "_ { t: %d }", "2"))
    assert frames == [[b"subscribe", b"_ { t: 1 }", 1], [b"subscribe", b"_ { t: %d }", 2]]
    # Subscribing again changes nothing (as in Redis); PSUBSCRIBE adds a pattern.
    assert decode_all(d2.action("SUBSCRIBE", "_ { t: 1 }")) == [[b"subscribe", b"_ { t: 1 }", 2]]
    assert decode_all(d2.action("PSUBSCRIBE", "r'^m'")) == [[b"psubscribe", b"r'^m'", 3]]
    d.events.clear()
    assert engine.publish("m { t: 2 }") == 3
    assert pushed(d2) == [[b"message", b"_ { t: %d }", b"m { t: 2 }"],
                          [b"pmessage", b"r'^m'", b"m", b"m { t: 2 }"]]
    assert decode_all(d2.action("UNSUBSCRIBE", "_ { t: %d }", "nope")) == [
        [b"unsubscribe", b"_ { t: %d }", 2], [b"unsubscribe", b"nope", 2]]
    assert engine.publish("m { t: 2 }") == 2
    assert pushed(d2) == [[b"pmessage", b"r'^m'", b"m", b"m { t: 2 }"]]   # REMOVED: no frame
    sub_id = next(i for i, c in d2.layer.channels.items() if c.channel == b"_ { t: 1 }")
    assert decode_all(d2.action("UNSUBSCRIBE", str(sub_id))) == [
        [b"unsubscribe", b"_ { t: 1 }", 1]]
    assert decode_all(d2.action("UNSUBSCRIBE")) == [[b"unsubscribe", None, 1]]
    assert decode_all(d2.action("PUNSUBSCRIBE")) == [[b"punsubscribe", b"r'^m'", 0]]
    pushed(d2)
    assert d2.layer.channels == {} and d2.layer.owned == {}
    assert engine.publish("m { t: 2 }") == 1                  # d's "_ { t: %d }" 2


def test_redis_style_subscriptions_are_limited(engine: octopus.Engine) -> None:
    d = Driver(engine, max_triggers=2)
    reply = d.reply("SUBSCRIBE", "a", "b", "c")
    assert str(reply).startswith("LimitExceeded") and not d.layer.owned
    assert decode_all(d.action("SUBSCRIBE", "a", "b", "a")) == [
        [b"subscribe", b"a", 1], [b"subscribe", b"b", 2], [b"subscribe", b"a", 2]]


def test_octopus_conventions_keep_ids_and_event_frames(engine: octopus.Engine) -> None:
    d = Driver(engine)
    d.reply("CLIENT", "FORMAT", "TEXT", "OCTOPUS")
    sid = d.reply("SUBSCRIBE", "m")
    assert isinstance(sid, int)
    engine.publish("m { a: 1 }")
    assert pushed(d) == [[b"message", sid, b"ON_PUBLISH", 0, b"m { a: 1 }"]]
    assert d.reply("UNSUBSCRIBE", str(sid)) == "OK"
    assert pushed(d) == [[b"message", sid, b"REMOVED", 0, None]]


def decode_all(data: object) -> list[object]:
    from octopus.server.resp import ReplyParser

    assert isinstance(data, bytes)
    p = ReplyParser()
    p.feed(data)
    out = []
    while (value := p.gets()) is not False:
        out.append(value)
    return out


# --- COMMAND ------------------------------------------------------------------------------


def test_command_describes_every_command(engine: octopus.Engine) -> None:
    d = Driver(engine)
    names = sorted(n.decode().lower() for n in CommandLayer.COMMANDS)
    assert d.reply("COMMAND", "COUNT") == len(names)
    assert d.reply("COMMAND", "LIST") == [n.encode() for n in names]
    info = d.reply("COMMAND")
    assert [e[0] for e in info] == [n.encode() for n in names]
    assert d.reply("COMMAND", "INFO", "get", "nosuch") == [
        [b"get", -2, ["readonly"], 0, 0, 0, ["@octopus"], [], [], []], None]
    docs = d.reply("COMMAND", "DOCS", "set")
    assert docs[0] == b"set" and docs[1][:2] == [b"summary", docs[1][1]]
    assert str(d.reply("COMMAND", "HELP")).startswith("ERR unknown COMMAND subcommand")


def test_every_command_is_documented() -> None:
    assert set(CommandLayer.COMMANDS) == set(commands._DOCS)

"""The GET reply cache: bounded in bytes and entries, least recently used out first; a
change drops the replies of its record (and every query's), a fill that raced a change
is refused; no GET after an acknowledged write answers the old value — with racing
threads over a real server, and in a hypothesis state machine over the command layer
that interleaves reads, their fills and writes (test_commands.py: the layer's use)."""

from __future__ import annotations

import gc
import sys
import threading
import tracemalloc
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import octopus
from octopus.server.cache import ENTRY_OVERHEAD, STAMP_SLOTS, Key, ReplyCache
from octopus.server.client import connect
from octopus.server.commands import Call, CommandLayer
from octopus.server.testing import serve_in_thread
from tests.server.test_commands import Driver, decode


def key(i: int) -> Key:
    return ReplyCache.key(1, [f"rec{i:05d}".encode()])


def name(i: int) -> str:
    return f"rec{i:05d}"


def fill(cache: ReplyCache, i: int, reply: bytes) -> None:
    cache.store(key(i), name(i), cache.begin(), reply)


def test_past_the_byte_limit_the_least_recently_used_go() -> None:
    reply = b"x" * 1000
    cost = ReplyCache.cost(key(0), reply)
    assert cost == ENTRY_OVERHEAD + 1000 + 9           # the key: the format's byte, the name
    cache = ReplyCache(max_entries=10_000, max_bytes=cost * 10)
    for i in range(10):
        fill(cache, i, reply)
    assert len(cache) == 10 and cache.size == cost * 10
    assert cache.lookup(key(0)) == reply            # 0 is now the most recently used
    for i in range(10, 15):                          # 5 more: 5 evictions
        fill(cache, i, reply)
        assert cache.size <= cache.max_bytes
    assert len(cache) == 10 and cache.evictions == 5
    assert cache.lookup(key(0)) == reply            # kept: it was used
    assert [cache.lookup(key(i)) for i in range(1, 6)] == [None] * 5   # the oldest went
    assert all(cache.lookup(key(i)) == reply for i in range(6, 15))
    for i in range(15, 40):
        fill(cache, i, reply)
    assert len(cache) == 10 and cache.size == cost * 10 and cache.evictions == 30


def test_an_entry_costs_no_more_memory_than_it_counts() -> None:
    """The byte bound bounds memory: what 20,000 entries of a record's size really take
    (tracemalloc: the keys made as a GET makes them, the dict's slots and nodes) is
    within what they count against ``max_bytes``."""
    names = [name(i).encode() for i in range(20_000)]
    replies = [b"$90\r\n" + b"x" * 88 + b"%05d\r\n" % i for i in range(20_000)]
    cache = ReplyCache(max_entries=1 << 20, max_bytes=1 << 30)
    gc.collect()
    tracemalloc.start()
    try:
        for raw, reply in zip(names, replies, strict=True):
            cache.store(ReplyCache.key(1, [raw]), raw.decode(), cache.begin(), reply)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cache) == len(names)
    # The replies existed before (the encoder made them): add their size.
    used += sum(sys.getsizeof(r) for r in replies)
    assert used <= cache.size, (used / len(names), cache.size / len(names))


def test_entries_are_bounded_too() -> None:
    cache = ReplyCache(max_entries=3, max_bytes=1 << 20)
    for i in range(10):
        fill(cache, i, b"r")
        assert len(cache) <= 3
    assert cache.lookup(key(9)) == b"r" and cache.lookup(key(6)) is None


def test_a_huge_reply_is_not_kept() -> None:
    cache = ReplyCache(max_entries=100, max_bytes=80_000)
    fill(cache, 1, b"small")
    fill(cache, 2, b"x" * 20_000)                  # over an eighth of the budget
    assert len(cache) == 1 and cache.lookup(key(1)) == b"small"


def test_a_change_drops_its_record_in_every_format_and_leaves_the_others() -> None:
    cache = ReplyCache(max_entries=100, max_bytes=1 << 20)
    for i in range(50):
        fill(cache, i, b"old")
    for mode in range(4):
        cache.store(ReplyCache.key(mode, [b"rec00007"]), "rec00007", cache.begin(), b"fmt")
    cache.changed("rec00007")
    assert all(cache.lookup(ReplyCache.key(mode, [b"rec00007"])) is None for mode in range(4))
    assert len(cache) == 49 and cache.size == 49 * ReplyCache.cost(key(0), b"old")
    assert cache.lookup(key(8)) == b"old"


def test_a_fill_that_raced_a_change_of_its_record_is_refused() -> None:
    cache = ReplyCache(max_entries=100, max_bytes=1 << 20)
    started = cache.begin()                          # the read begins ...
    cache.changed(name(1))                           # ... a write commits meanwhile
    cache.store(key(1), name(1), started, b"maybe old")
    assert cache.lookup(key(1)) is None
    other = next(i for i in range(2, 10_000)
                 if hash(name(i)) % STAMP_SLOTS != hash(name(1)) % STAMP_SLOTS)
    cache.store(key(other), name(other), started, b"fine")   # another record: kept
    assert cache.lookup(key(other)) == b"fine"
    cache.store(key(1), name(1), cache.begin(), b"new")      # read after the change
    assert cache.lookup(key(1)) == b"new"


def test_query_replies_go_at_any_change_and_fill_only_without_one() -> None:
    cache = ReplyCache(max_entries=100, max_bytes=1 << 20)
    q = ReplyCache.key(1, [b"_ { v > %d }", b"1"])        # a query with a parameter
    cache.store(q, None, cache.begin(), b"answer")
    fill(cache, 1, b"one")
    assert cache.lookup(q) == b"answer"
    cache.changed("anything")
    assert cache.lookup(q) is None and cache.lookup(key(1)) == b"one"
    started = cache.begin()
    cache.changed("anything.else")
    cache.store(q, None, started, b"stale")
    assert cache.lookup(q) is None and len(cache) == 1
    assert cache.size == ReplyCache.cost(key(1), b"one")


def test_a_batch_drops_everything_and_refuses_older_fills() -> None:
    cache = ReplyCache(max_entries=100, max_bytes=1 << 20)
    started = cache.begin()
    for i in range(10):
        cache.store(key(i), name(i), started, b"v")
    cache.changed(None)                              # a set_many batch
    assert len(cache) == 0 and cache.size == 0
    cache.store(key(3), name(3), started, b"v")
    assert len(cache) == 0
    fill(cache, 3, b"w")
    assert cache.lookup(key(3)) == b"w"


def test_the_same_key_twice_is_counted_once() -> None:
    cache = ReplyCache(max_entries=100, max_bytes=1 << 20)
    fill(cache, 1, b"a" * 100)
    fill(cache, 1, b"b" * 10)
    assert len(cache) == 1 and cache.size == ReplyCache.cost(key(1), b"b" * 10)


def test_threads_storing_changing_and_looking_up_keep_the_bounds() -> None:
    cache = ReplyCache(max_entries=500, max_bytes=200_000)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(5000):
                n = (i * 7 + seed) % 2000
                if seed == 0 and i % 3 == 0:
                    cache.changed(name(n))
                elif cache.lookup(key(n)) is None:
                    started = cache.begin()
                    cache.store(key(n), name(n), started, b"v" * (i % 300))
                    if i % 50 == 0:
                        cache.store(ReplyCache.key(1, [b"q%d" % n]), None, started, b"q")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) <= 500 and cache.size <= 200_000
    assert cache.size == sum(ReplyCache.cost(k, v) for k, v in cache._entries.items())
    assert cache._queries <= set(cache._entries)


def test_no_get_after_an_acknowledged_write_answers_the_old_value() -> None:
    """Writers set a few records over and over, each acknowledged SET publishing its
    value; readers on other connections GET those records without pause (their fills
    race the writes) and must never see a value older than the last one acknowledged
    before the GET was sent."""
    names = [f"hot.{i}" for i in range(4)]
    acked = dict.fromkeys(names, 0)
    errors: list[str] = []
    stop = threading.Event()
    with octopus.Engine() as engine, serve_in_thread(engine) as url:
        with connect(url) as c:
            for n in names:
                c.set(f"{n} {{ v: 0 }}")

        def write(n: str) -> None:
            with connect(url) as c:
                for v in range(1, 400):
                    c.set(f"{n} {{ v: {v} }}")
                    acked[n] = v                 # acknowledged: no GET may see less now

        def read(seed: int) -> None:
            with connect(url) as c:
                i = seed
                while not stop.is_set():
                    n = names[i % len(names)]
                    i += 1
                    floor = acked[n]
                    got = c.get(n)["v"]
                    if got < floor:
                        errors.append(f"{n}: GET answered {got} after {floor} was acknowledged")
                        return

        readers = [threading.Thread(target=read, args=(s,)) for s in range(3)]
        writers = [threading.Thread(target=write, args=(n,)) for n in names]
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join()
        stop.set()
        for t in readers:
            t.join()
        with connect(url) as c:
            assert [c.get(n)["v"] for n in names] == [399] * len(names)
    assert not errors, errors[:3]


def test_info_counts_hits_while_the_cache_is_empty() -> None:
    """INFO asked ``if cache`` (its length): an emptied cache reported 0 hits."""
    with octopus.Engine() as engine, serve_in_thread(engine) as url, connect(url) as c:
        c.set("a { v: 1 }")
        c.get("a")
        c.get("a")                                   # from the cache
        c.set("a { v: 2 }")                          # the cache is empty now
        stats = dict(line.split(":", 1) for line in c.info().split() if ":" in line)
        assert stats["reply_cache_entries"] == "0"
        assert int(stats["reply_cache_hits"]) >= 1 and int(stats["reply_cache_misses"]) >= 1


NAMES = ["a", "b", "c"]


class CacheMachine(RuleBasedStateMachine):
    """The command layer with its cache over a real engine, against a model of the
    records: GETs whose read and completion (the cache's fill) are apart, writes in
    between, from several connections; every reply must be what the store held at the
    read, and every GET that starts after a write must answer the write's value."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = octopus.Engine()
        self.first = Driver(self.engine)
        self.ctx = self.first.ctx
        self.layers = [self._layer() for _ in range(3)]   # the readers; first writes
        self.model: dict[str, int | None] = dict.fromkeys(NAMES)
        # Reads done but not completed: (layer, call, outcome, what the store held).
        self.pending: list[tuple[CommandLayer, Call, Any, int | None]] = []
        self.version = 0

    def _layer(self) -> CommandLayer:
        return CommandLayer(self.ctx, self.engine.session(), conn_id=8,
                            on_trigger=lambda e: None, on_message=lambda e: None)

    def teardown(self) -> None:
        self.engine.close()

    def _free(self) -> list[int]:
        busy = {id(p[0]) for p in self.pending}
        return [i for i, layer in enumerate(self.layers) if id(layer) not in busy]

    @staticmethod
    def _value(reply: bytes) -> int | None:
        text = decode(reply)
        if text is None:
            return None
        return int(text.split(b"v: ")[1].split(b" ")[0])

    @rule(n=st.sampled_from(NAMES), bulk=st.booleans())
    def write(self, n: str, bulk: bool) -> None:
        self.version += 1
        if bulk:
            self.engine.session().set_many([f"{n} {{ v: {self.version} }}"])
        else:
            assert self.first.reply("SET", f"{n} {{ v: {self.version} }}") == "OK"
        self.model[n] = self.version

    @rule(n=st.sampled_from(NAMES))
    def delete(self, n: str) -> None:
        self.first.reply("DEL", n)
        self.model[n] = None

    @precondition(lambda self: len(self._free()) > 0)
    @rule(n=st.sampled_from(NAMES), which=st.integers(0, 2))
    def start_get(self, n: str, which: int) -> None:
        free = self._free()
        layer = self.layers[free[which % len(free)]]
        action = layer.handle([b"GET", n.encode()])
        if type(action) is bytes:                   # a hit: the store's value now
            assert self._value(action) == self.model[n]
            return
        assert type(action) is Call
        try:
            outcome, error = action.run(), None
        except Exception as e:
            outcome, error = None, e
        self.pending.append((layer, action, (outcome, error), self.model[n]))

    @precondition(lambda self: len(self.pending) > 0)
    @rule(i=st.integers(0, 10))
    def finish_get(self, i: int) -> None:
        layer, call, (outcome, error), held = self.pending.pop(i % len(self.pending))
        reply = layer.complete(call, outcome, error)
        assert type(reply) is bytes
        assert self._value(reply) == held            # what the store held at the read

    @invariant()
    def every_cached_reply_is_current(self) -> None:
        cache = self.ctx.cache
        assert cache is not None
        for n in NAMES:
            hit = cache._entries.get(ReplyCache.key(1, [n.encode()]))
            if hit is not None:
                assert self._value(hit) == self.model[n]


TestCacheMachine = CacheMachine.TestCase
TestCacheMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)

"""The GET reply cache: bounded in bytes and entries, least recently used out first,
everything of an older revision dropped, errors never stored (test_commands.py)."""

from __future__ import annotations

import threading

from octopus.server.cache import ENTRY_OVERHEAD, ReplyCache


def key(i: int) -> tuple[object, ...]:
    return (False, b"rec%05d" % i)


def test_past_the_byte_limit_the_least_recently_used_go() -> None:
    reply = b"x" * 1000
    cost = ReplyCache.cost(key(0), reply)
    assert cost == ENTRY_OVERHEAD + 1000 + 8
    cache = ReplyCache(max_entries=10_000, max_bytes=cost * 10)
    for i in range(10):
        cache.store(key(i), 5, reply)
    assert len(cache) == 10 and cache.size == cost * 10
    assert cache.lookup(key(0), 5) == reply         # 0 is now the most recently used
    for i in range(10, 15):                          # 5 more: 5 evictions
        cache.store(key(i), 5, reply)
        assert cache.size <= cache.max_bytes
    assert len(cache) == 10 and cache.evictions == 5
    assert cache.lookup(key(0), 5) == reply         # kept: it was used
    assert [cache.lookup(key(i), 5) for i in range(1, 6)] == [None] * 5   # the oldest went
    assert all(cache.lookup(key(i), 5) == reply for i in range(6, 15))
    for i in range(15, 40):
        cache.store(key(i), 5, reply)
    assert len(cache) == 10 and cache.size == cost * 10 and cache.evictions == 30


def test_entries_are_bounded_too() -> None:
    cache = ReplyCache(max_entries=3, max_bytes=1 << 20)
    for i in range(10):
        cache.store(key(i), 1, b"r")
        assert len(cache) <= 3
    assert cache.lookup(key(9), 1) == b"r" and cache.lookup(key(6), 1) is None


def test_a_huge_reply_is_not_kept() -> None:
    cache = ReplyCache(max_entries=100, max_bytes=80_000)
    cache.store(key(1), 1, b"small")
    cache.store(key(2), 1, b"x" * 20_000)           # over an eighth of the budget
    assert len(cache) == 1 and cache.lookup(key(1), 1) == b"small"


def test_a_new_revision_frees_everything_at_once() -> None:
    cache = ReplyCache(max_entries=100, max_bytes=1 << 20)
    for i in range(50):
        cache.store(key(i), 3, b"old")
    assert cache.lookup(key(1), 3) == b"old"
    assert cache.lookup(key(1), 4) is None           # the store changed
    assert len(cache) == 0 and cache.size == 0 and cache.revision == 4
    cache.store(key(1), 3, b"stale")                 # read before the change: useless
    assert len(cache) == 0
    cache.store(key(1), 4, b"new")
    assert cache.lookup(key(1), 4) == b"new"


def test_the_same_key_twice_is_counted_once() -> None:
    cache = ReplyCache(max_entries=100, max_bytes=1 << 20)
    cache.store(key(1), 1, b"a" * 100)
    cache.store(key(1), 1, b"b" * 10)
    assert len(cache) == 1 and cache.size == ReplyCache.cost(key(1), b"b" * 10)


def test_threads_storing_and_looking_up_keep_the_bounds() -> None:
    cache = ReplyCache(max_entries=500, max_bytes=200_000)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(5000):
                k = key((i * 7 + seed) % 2000)
                if cache.lookup(k, 1) is None:
                    cache.store(k, 1, b"v" * (i % 300))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) <= 500 and cache.size <= 200_000
    assert cache.size == sum(ReplyCache.cost(k, v) for k, (v, _) in cache._entries.items())

"""The LRU cache bounded in entries and bytes, and the parse memos that use it."""

from __future__ import annotations

import random
import sys
import threading
import tracemalloc

import pytest

from octopus.query import parser as parser_module
from octopus.query.cache import LRUCache, bounded_lru, shallow_size
from octopus.query.parser import parse, parse_ply, query_size
from octopus.server import params


def weights(cache: LRUCache[str, int]) -> int:
    return sum(cache.weigh(k, v) for k, v in ((k, cache.get(k)) for k in list(cache._data)))


def test_bounded_in_entries_lru_first() -> None:
    cache: LRUCache[str, int] = LRUCache(maxsize=3, maxbytes=10**6, weigh=lambda k, v: 1)
    for i in range(3):
        cache.put(f"k{i}", i)
    assert cache.get("k0") == 0          # k0 is now the most recent; k1 the least
    cache.put("k3", 3)
    assert len(cache) == 3 and "k1" not in cache
    assert [cache.get(k) for k in ("k0", "k2", "k3")] == [0, 2, 3]
    for i in range(100):
        cache.put(f"x{i}", i)
    assert len(cache) == 3 and cache.nbytes == 3


def test_bounded_in_bytes_lru_first() -> None:
    cache: LRUCache[str, int] = LRUCache(maxsize=1000, maxbytes=100, weigh=lambda k, v: v,
                                         max_item_bytes=100)
    assert cache.put("a", 40) and cache.put("b", 40)
    cache.get("a")
    assert cache.put("c", 40)            # 120 > 100: the least recent (b) goes
    assert "b" not in cache and "a" in cache and "c" in cache and cache.nbytes == 80
    assert cache.put("d", 100)           # alone it fills the budget
    assert list(cache._data) == ["d"] and cache.nbytes == 100


def test_an_entry_over_the_item_limit_is_not_kept_and_flushes_nothing() -> None:
    cache: LRUCache[str, int] = LRUCache(maxsize=10, maxbytes=800, weigh=lambda k, v: v)
    assert cache.max_item_bytes == 100
    assert cache.put("small", 50)
    assert not cache.put("huge", 101)
    assert "huge" not in cache and cache.get("small") == 50 and cache.nbytes == 50


def test_replacing_a_key_replaces_its_weight() -> None:
    cache: LRUCache[str, int] = LRUCache(maxsize=10, maxbytes=100, weigh=lambda k, v: v)
    cache.put("a", 10)
    cache.put("a", 12)
    assert cache.nbytes == 12 and len(cache) == 1
    assert not cache.put("a", 99)        # too heavy now: the old entry is gone too
    assert "a" not in cache and cache.nbytes == 0


def test_get_default_info_and_clear() -> None:
    cache: LRUCache[str, object] = LRUCache(maxsize=4, maxbytes=10**4)
    assert cache.get("missing") is None
    assert cache.get("missing", 7) == 7
    cache.put("none", None)              # None is a value like any other
    assert cache.get("none", 7) is None
    info = cache.info()
    assert (info.hits, info.misses, info.size) == (1, 2, 1)
    assert info.nbytes == shallow_size("none", None)
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0 and cache.info().hits == 0


def test_zero_sizes_keep_nothing() -> None:
    for cache in (LRUCache(0, 100), LRUCache(10, 0)):
        assert not cache.put("a", 1)
        assert len(cache) == 0 and cache.nbytes == 0
    with pytest.raises(ValueError):
        LRUCache(-1, 10)


def test_shallow_size_counts_one_level() -> None:
    big = "x" * 1000
    assert shallow_size((big,), None) >= sys.getsizeof(big)
    assert shallow_size("k", {"a": big}) >= sys.getsizeof(big)
    assert shallow_size("k", [big, big]) >= 2 * sys.getsizeof(big)


def test_decorator_memoises_and_never_caches_exceptions() -> None:
    calls = []

    @bounded_lru(maxsize=2, maxbytes=10**4)
    def square(n: int, *, plus: int = 0) -> int:
        """Squares."""
        calls.append(n)
        if n < 0:
            raise ValueError("negative")
        return n * n + plus

    assert square(3) == 9 and square(3) == 9 and calls == [3]
    assert square(3, plus=1) == 10 and calls == [3, 3]   # keywords are part of the key
    for _ in range(2):
        with pytest.raises(ValueError):
            square(-1)
    assert calls == [3, 3, -1, -1]
    square(4)
    square(5)
    assert len(square.cache) == 2 and square.cache_info().maxsize == 2
    assert square.__name__ == "square" and square.__doc__ == "Squares."
    square.cache_clear()
    assert len(square.cache) == 0


def test_decorator_weighs_arguments_and_result() -> None:
    @bounded_lru(maxsize=100, maxbytes=1000, weigh=lambda args, result: len(args[0]) + result)
    def f(text: str) -> int:
        return 10

    for i in range(200):
        f(f"{i:050d}")                   # 60 bytes each: at most 16 fit
    assert f.cache.nbytes <= 1000 and len(f.cache) == 16


def test_threads_keep_the_invariants() -> None:
    cache: LRUCache[int, int] = LRUCache(maxsize=50, maxbytes=2000, weigh=lambda k, v: v)
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(20_000):
                k = rng.randrange(200)
                if rng.random() < 0.5:
                    cache.put(k, rng.randrange(1, 200))
                else:
                    cache.get(k)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) <= 50 and cache.nbytes <= 2000
    assert cache.nbytes == sum(w for _, w in cache._data.values())


# --- the parse memo -------------------------------------------------------------------

def placeholder_query(n: int, tag: str) -> str:
    return f"{tag} {{ " + ", ".join(f"a{i}: %d" for i in range(n)) + " }"


def measured_bytes(text: str) -> int:
    """What a parse of ``text`` really holds (tracemalloc), text included."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        copy = "".join(list(text))  # a fresh copy of the key, as a request would bring
        tree = parse_ply(copy)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert tree is not None
    return after - before


@pytest.mark.parametrize("text", [
    placeholder_query(2000, "p"),
    "x { " + ", ".join(f"k{i}: 'value number {i}'" for i in range(500)) + " }",
    "x { " + ", ".join(f"k{i}: {10**30 + i}" for i in range(500)) + " }",
    "x { s: '" + "é" * 20_000 + "' }",
    "hw.pci.device.1 { bus: 1, class: 'C', device_id: 4110, label: 'dev 1', vendor: 32902 }",
])
def test_query_size_estimates_what_a_parse_holds(text: str) -> None:
    estimate = query_size(text, parse_ply(text))
    real = measured_bytes(text)
    assert real / 1.5 <= estimate <= real * 3, (estimate, real)


def test_parse_memo_is_bounded_in_bytes() -> None:
    memo = parser_module._memo
    memo.clear()
    big = [placeholder_query(2000, f"p{i}") for i in range(120)]  # ~440 KB each
    for text in big:
        parse(text)
    assert memo.nbytes <= memo.maxbytes
    assert len(memo) < len(big)          # the byte bound, not the entry bound, cut it
    assert parse(big[-1]) is parse(big[-1])


def test_a_huge_parse_is_not_memoised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 3: a 1 MiB query full of % at the server's 4 MiB limit must not be kept."""
    memo = parser_module._memo
    memo.clear()
    parse("small { a: 1 }")
    text = placeholder_query(110_000, "huge")       # ~1 MiB
    assert len(text) > 1 << 20
    q = parse(text, max_length=4 << 20)
    assert q.placeholders == 110_000
    assert text not in memo and "small { a: 1 }" in memo
    assert memo.nbytes < 1 << 20


def test_server_placeholder_kinds_memo_is_bounded_in_bytes() -> None:
    kinds = params.placeholder_kinds
    kinds.cache_clear()
    for i in range(300):                 # ~36 KB each: 10 MB in all
        assert len(kinds(placeholder_query(2000, f"k{i}"), 4 << 20)) == 2000
    assert kinds.cache.nbytes <= kinds.cache.maxbytes
    assert len(kinds.cache) < 300


def test_compiled_texts_are_cached_within_their_byte_bounds() -> None:
    from octopus.query import compile as compiled

    long = compiled._cached_query.long           # type: ignore[attr-defined]
    short = compiled._cached_query.short         # type: ignore[attr-defined]
    for i in range(3000):                         # past both tiers' limits
        compiled.compile_query(f"_ {{ k{i}: {i} }}")
        compiled.compile_query("_ { " + ", ".join(f"a{j}: {i}" for j in range(40)) + " }")
    assert short.cache_info().currsize <= 2048
    assert long.cache.nbytes <= 16 << 20 and len(long.cache) <= 512
    huge = "_ { " + ", ".join(f"k{j}: %d" for j in range(20_000)) + " }"
    compiled.compile_query(huge, tuple(range(20_000)), 1 << 22)
    assert long.cache.nbytes <= 16 << 20         # one huge text is not kept

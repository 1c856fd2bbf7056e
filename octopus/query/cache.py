"""An LRU cache bounded in entries *and* in bytes, for memoising work keyed by text.

``functools.lru_cache`` bounds entries only, and entries keyed by request text can be
huge: the parse of a 1 MiB query full of placeholders weighs ~27 MB, so 4,096 entries
could hold gigabytes. :class:`LRUCache` bounds both the number of entries and the sum
of their estimated sizes; :func:`bounded_lru` wraps a function with one, the way
``lru_cache`` does.

Sizes are estimates, given by a ``weigh(key, value) -> bytes`` function chosen by the
user of the cache (it should count the key, which the cache holds too, and the value
reachable from the entry; it runs on every put, so it should be O(1) or close). The
default, :func:`shallow_size`, counts the key and the value one level deep.

Guarantees:

1. After every operation ``len(cache) <= maxsize`` and ``cache.nbytes <= maxbytes``;
   the least recently used entries go first.
2. An entry heavier than ``max_item_bytes`` (default ``maxbytes // 8``) is not kept at
   all, so one huge entry never flushes the cache (``put`` returns False).
3. Thread-safe: every operation holds one lock, briefly; ``weigh`` and the wrapped
   function run outside it (two threads missing the same key may both compute it; the
   last put wins, which is harmless for pure functions).
4. Exceptions are not cached: a call that raises leaves the cache as it was.

Usage::

    cache = LRUCache(maxsize=4096, maxbytes=32 << 20, weigh=lambda k, v: ...)
    value = cache.get(key)          # None (or a given default) when absent
    cache.put(key, value)

    @bounded_lru(maxsize=4096, maxbytes=32 << 20, weigh=lambda args, v: ...)
    def compile(text: str, limit: int) -> Template: ...
    compile.cache_info(); compile.cache_clear()

With the decorator the key is the tuple of positional arguments (plus the keyword
arguments, sorted, when there are any); arguments must be hashable.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, NamedTuple, ParamSpec, TypeVar, overload

__all__ = ["CacheInfo", "CachedFunction", "LRUCache", "bounded_lru", "shallow_size"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")
P = ParamSpec("P")
R = TypeVar("R")


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    size: int        # entries held
    nbytes: int      # their estimated bytes
    maxsize: int
    maxbytes: int


def shallow_size(key: object, value: object) -> int:
    """``sys.getsizeof`` of the key and the value, and of the items of either when it
    is a tuple, list or dict (one level deep)."""
    return _one_level(key) + _one_level(value)


def _one_level(obj: object) -> int:
    size = sys.getsizeof(obj)
    if isinstance(obj, (tuple, list)):
        size += sum(sys.getsizeof(item) for item in obj)
    elif isinstance(obj, dict):
        size += sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in obj.items())
    return size


class LRUCache(Generic[K, V]):
    """Least-recently-used cache of at most ``maxsize`` entries and ``maxbytes``
    estimated bytes (see the module docstring)."""

    __slots__ = ("_data", "_hits", "_lock", "_misses", "_nbytes", "max_item_bytes",
                 "maxbytes", "maxsize", "weigh")

    def __init__(self, maxsize: int, maxbytes: int,
                 weigh: Callable[[K, V], int] = shallow_size, *,
                 max_item_bytes: int | None = None) -> None:
        if maxsize < 0 or maxbytes < 0:
            raise ValueError("maxsize and maxbytes must be >= 0")
        self.maxsize = maxsize
        self.maxbytes = maxbytes
        self.max_item_bytes = maxbytes // 8 if max_item_bytes is None else \
            min(max_item_bytes, maxbytes)
        self.weigh = weigh
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._nbytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: Any = None) -> Any:
        """The value for ``key`` (now the most recently used), or ``default``."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self._misses += 1
                return default
            self._data.move_to_end(key)
            self._hits += 1
            return entry[0]

    def put(self, key: K, value: V) -> bool:
        """Keep ``value`` for ``key``, evicting the least recently used entries as the
        bounds require. Returns False (and keeps nothing) when the entry alone weighs
        more than ``max_item_bytes``."""
        weight = max(0, int(self.weigh(key, value)))
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._nbytes -= old[1]
            if weight > self.max_item_bytes or self.maxsize == 0:
                return False
            self._data[key] = (value, weight)
            self._nbytes += weight
            while len(self._data) > self.maxsize or self._nbytes > self.maxbytes:
                _, (_, dropped) = self._data.popitem(last=False)
                self._nbytes -= dropped
            return True

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._nbytes = 0
            self._hits = self._misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is held (without making it recently used)."""
        return key in self._data

    @property
    def nbytes(self) -> int:
        """The estimated bytes of the entries held."""
        return self._nbytes

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._data), self._nbytes,
                             self.maxsize, self.maxbytes)


class CachedFunction(Generic[P, R]):
    """A function memoised in an :class:`LRUCache` (made by :func:`bounded_lru`)."""

    __slots__ = ("__dict__", "__wrapped__", "cache")

    def __init__(self, func: Callable[P, R], cache: LRUCache[Any, R]) -> None:
        self.__wrapped__ = func
        self.cache = cache
        self.__dict__.update({name: getattr(func, name) for name in
                              ("__module__", "__name__", "__qualname__", "__doc__")
                              if hasattr(func, name)})

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key: Any = args if not kwargs else (*args, _KWARGS, *sorted(kwargs.items()))
        missing = _MISSING
        value = self.cache.get(key, missing)
        if value is missing:
            value = self.__wrapped__(*args, **kwargs)
            self.cache.put(key, value)
        return value

    def cache_info(self) -> CacheInfo:
        return self.cache.info()

    def cache_clear(self) -> None:
        self.cache.clear()


_MISSING: Any = object()
_KWARGS = object()  # separates positional from keyword arguments in a key


def bounded_lru(maxsize: int, maxbytes: int,
                weigh: Callable[[Any, Any], int] = shallow_size, *,
                max_item_bytes: int | None = None
                ) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Decorator: memoise a function in an :class:`LRUCache`; ``weigh`` receives the
    argument tuple and the result."""
    def decorate(func: Callable[P, R]) -> CachedFunction[P, R]:
        return CachedFunction(func, LRUCache(maxsize, maxbytes, weigh,
                                             max_item_bytes=max_item_bytes))
    return decorate

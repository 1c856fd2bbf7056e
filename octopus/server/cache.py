"""The server's GET reply cache (:class:`ReplyCache`): encoded replies reused while the
store has not changed, bounded in entries and bytes, least recently used first out."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict

__all__ = ["ReplyCache"]

Key = tuple[object, ...]

# What one entry costs beyond its key's and reply's bytes: the OrderedDict node, the key
# tuple and the bytes objects' headers (measured with sys.getsizeof on CPython 3.11:
# ~170 bytes for a two-argument key; rounded up).
ENTRY_OVERHEAD = 256


class ReplyCache:
    """Encoded GET replies by (format, arguments), all read at one store revision.

    Invariant: every entry was read at :attr:`revision` — the engine's revision was the
    same before and after the read, and a change of any record takes a new revision
    before it releases the engine's lock, so the entry is the state at that revision.
    :meth:`lookup` serves an entry only while the engine's revision is still
    :attr:`revision`, so a hit is byte for byte what the engine would answer now. Only
    successful replies are stored (an error is recomputed). After every call,
    ``len(self) <= max_entries`` and :attr:`size` (keys, replies and a fixed overhead
    per entry) ``<= max_bytes``; when an entry does not fit, the least recently used
    ones are evicted until it does. Entries of an older revision can never hit again,
    so the first lookup or store at a newer revision drops them all at once.

    Thread-safe: the event loop looks up (without taking the lock on a hit), engine-call
    threads store.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        # One entry may take at most an eighth of the budget: a few huge replies must
        # not flush every small one.
        self.max_entry_bytes = max_bytes // 8
        self.revision = -1
        self.size = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self._entries: OrderedDict[Key, tuple[bytes, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def cost(key: Key, reply: bytes) -> int:
        """What an entry counts against ``max_bytes``."""
        return ENTRY_OVERHEAD + len(reply) + sum(len(k) for k in key if type(k) is bytes)

    def lookup(self, key: Key, revision: int) -> bytes | None:
        """The reply stored for ``key`` if it was read at ``revision`` (the engine's
        revision now), else None. Called from one thread (the event loop)."""
        if revision != self.revision:
            with self._lock:
                if revision > self.revision and self._entries:
                    self._drop_all(revision)
            self.misses += 1
            return None
        # Without the lock (the hot path of the server): each dict operation is atomic.
        # A store at a newer revision may slip in between the check above and the get;
        # its entry is then newer than ``revision`` — a state the store reached while
        # the request was being served, which is as valid an answer.
        hit = self._entries.get(key)
        if hit is None:
            self.misses += 1
            return None
        with contextlib.suppress(KeyError):       # evicted meanwhile by a store
            self._entries.move_to_end(key)
        self.hits += 1
        return hit[0]

    def store(self, key: Key, revision: int, reply: bytes) -> None:
        """Keep ``reply``, read at ``revision`` (see the invariant)."""
        cost = self.cost(key, reply)
        if cost > self.max_entry_bytes or self.max_entries <= 0:
            return
        with self._lock:
            if revision < self.revision:
                return                      # already stale: the store has moved on
            if revision > self.revision:
                self._drop_all(revision)
            old = self._entries.pop(key, None)
            if old is not None:
                self.size -= old[1]
            entries = self._entries
            while entries and (self.size + cost > self.max_bytes
                               or len(entries) >= self.max_entries):
                _, (_, freed) = entries.popitem(last=False)
                self.size -= freed
                self.evictions += 1
            entries[key] = (reply, cost)
            self.size += cost

    def clear(self) -> None:
        with self._lock:
            self._drop_all(self.revision)

    def _drop_all(self, revision: int) -> None:
        self._entries.clear()
        self.size = 0
        self.revision = revision

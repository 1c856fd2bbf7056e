"""The server's GET reply cache (:class:`ReplyCache`): encoded replies reused until the
records they show change, bounded in entries and bytes, least recently used first out.

A reply of ``GET name`` (a bare record name) depends on that one record: a change of it
drops the reply, a change of any other record leaves it. A reply of any other query
(a pattern, constraints) may depend on every record: any change drops it. The engine
tells the cache what changed from inside its commit (:meth:`ReplyCache.changed`, an
observer of the core's change stream), so a reply is gone before the write that made
it stale is acknowledged — a GET after an acknowledged write never sees the old value.
"""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict

__all__ = ["ReplyCache"]

# An entry's key (:meth:`ReplyCache.key`): the reply format's byte and the GET's one
# argument, as one bytes object; a tuple for a GET with more arguments (parameters).
Key = bytes | tuple[object, ...]

# What one entry costs beyond its key's and reply's bytes: the OrderedDict's slot and
# node (the dict's table is up to half empty between resizes) and the two bytes objects'
# headers. Measured with tracemalloc on CPython 3.11: 143 bytes an entry at 20,000
# entries, 176 at 100,000; tests/server/test_cache.py checks the bound holds. An entry
# is two objects, the bytes key and the reply: with a tuple for the key and another for
# (reply, cost), a 98-byte reply took 352 bytes an entry, now 250.
ENTRY_OVERHEAD = 192

# The change stamps: one per slot of record names (by hash), 8 bytes each. A collision
# only refuses a fill that was safe (a miss later), never keeps a stale one.
STAMP_SLOTS = 1 << 14

# The key's first byte: the connection's reply format (CommandLayer.mode, 0-3).
MODES = range(4)
_PREFIXES = [bytes([mode]) for mode in MODES]


class ReplyCache:
    """Encoded GET replies by (format, arguments).

    Invariant: an entry for a bare name is the encoding of that record as stored now;
    any other entry is the answer of its query to the store as it is now. Why it
    holds:

    - :meth:`changed` runs for every committed change inside the core's commit, under
      its lock, before the write returns: it drops the entries of the changed record
      (every format) and every query entry, and stamps the name's slot with a new
      *epoch* (a counter of changes seen).
    - A fill reads :attr:`epoch` (:meth:`begin`) *before* its read. A change committed
      before that moment is visible to the read (it completed under the core's lock,
      which the read takes); one committed after it stamps the slot with a larger
      epoch. :meth:`store` keeps a name's reply only if its slot's stamp is not newer
      than the read's start, a query's only if no change at all came since — checked
      under the cache's lock, which :meth:`changed` also takes, so a change either
      sees the entry (and drops it) or the entry's store sees the change (and skips).

    Only successful replies are stored (an error is recomputed). After every call,
    ``len(self) <= max_entries`` and :attr:`size` (keys, replies and a fixed overhead
    per entry) ``<= max_bytes``; when an entry does not fit, the least recently used
    ones are evicted until it does.

    Thread-safe: the event loop and engine threads look up, engine threads store, the
    committing thread drops; each under the cache's lock (held for a few dict
    operations).
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        # One entry may take at most an eighth of the budget: a few huge replies must
        # not flush every small one.
        self.max_entry_bytes = max_bytes // 8
        self.epoch = 0
        self.size = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.invalidations = 0
        self._entries: OrderedDict[Key, bytes] = OrderedDict()
        self._queries: set[Key] = set()       # the entries any change drops
        self._stamps = array("Q", bytes(8 * STAMP_SLOTS))
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(mode: int, args: list[bytes]) -> Key:
        """The key of ``GET *args`` answered in reply format ``mode`` (0-3)."""
        if len(args) == 1:
            return _PREFIXES[mode] + args[0]
        return (mode, *args)

    @staticmethod
    def cost(key: Key, reply: bytes) -> int:
        """What an entry counts against ``max_bytes``."""
        if type(key) is bytes:
            return ENTRY_OVERHEAD + len(reply) + len(key)
        return ENTRY_OVERHEAD + len(reply) + sum(len(k) for k in key if type(k) is bytes)

    def lookup(self, key: Key) -> bytes | None:
        """The reply stored for ``key``, else None. From the event loop, and from engine
        threads (the commands pipelined behind an engine call): under the lock, or the
        counters would lose and regain increments (``+=`` is not atomic across threads)."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return hit

    def begin(self) -> int:
        """The epoch to hand to :meth:`store` for a read that starts now."""
        return self.epoch

    def store(self, key: Key, name: str | None, started: int, reply: bytes) -> None:
        """Keep ``reply`` for ``key``: the record ``name`` (a bare name's GET) or, with
        ``name`` None, a query's answer, read after :meth:`begin` returned ``started``
        — unless a change it may not show came since (see the invariant)."""
        cost = self.cost(key, reply)
        if cost > self.max_entry_bytes or self.max_entries <= 0:
            return
        with self._lock:
            if name is None:
                if self.epoch != started:
                    return
                self._queries.add(key)
            elif self._stamps[hash(name) & (STAMP_SLOTS - 1)] > started:
                return
            entries = self._entries
            old = entries.pop(key, None)
            if old is not None:
                self.size -= self.cost(key, old)
            while entries and (self.size + cost > self.max_bytes
                               or len(entries) >= self.max_entries):
                evicted, freed = entries.popitem(last=False)
                self._queries.discard(evicted)
                self.size -= self.cost(evicted, freed)
                self.evictions += 1
            entries[key] = reply
            self.size += cost

    def changed(self, name: str | None) -> None:
        """Record ``name`` changed (None: any number of records, e.g. a bulk load).
        Called inside the engine's commit, before the write returns."""
        with self._lock:
            self.epoch += 1
            self.invalidations += 1
            if name is None:
                self._stamps = array("Q", [self.epoch]) * STAMP_SLOTS
                self._drop_all()
                return
            self._stamps[hash(name) & (STAMP_SLOTS - 1)] = self.epoch
            entries = self._entries
            if entries:
                raw = name.encode()
                for prefix in _PREFIXES:
                    key = prefix + raw
                    old = entries.pop(key, None)
                    if old is not None:
                        self.size -= self.cost(key, old)
            if self._queries:
                for query in self._queries:
                    old = entries.pop(query, None)
                    if old is not None:
                        self.size -= self.cost(query, old)
                self._queries.clear()

    def clear(self) -> None:
        with self._lock:
            self._drop_all()

    def _drop_all(self) -> None:
        self._entries.clear()
        self._queries.clear()
        self.size = 0

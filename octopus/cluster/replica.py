"""A replica: one engine's :class:`~octopus.core.Core` kept a copy of the cluster's
state in etcd, and the replicated write path of that core (docs/cluster.md).

Theory of operation:

1. **etcd is the log; every node is a full replica.** The state lives under one prefix
   in etcd (the key layout is in :mod:`octopus.cluster.codec`). A node reads it all once
   (at start), then applies etcd's watch stream from the revision after the last one it
   applied, under the core's lock, at etcd's revision: the **Octopus revision is the etcd
   revision**, one order for every node. Each change goes through the core's apply path
   (:meth:`~octopus.core.Core.apply_set_locked` ...), which commits it to the change
   stream as a local write would, so triggers and subscriptions fire on every node,
   exactly once per node, in revision order. Queries, triggers and the knowledge base
   run locally, on the node's own Prolog store.
2. **Writes are etcd transactions.** A set, delete, compare-and-set, conditional delete
   or sequential set is one etcd transaction, proposed outside the core's lock. A
   precondition is checked on the local replica and then made a compare of the record
   key's mod_revision as read there: if the replica was behind, etcd refuses, the node
   waits until it has applied the newer version and tries again. A failed precondition
   is confirmed the same way (a compare-only transaction), so a ConditionFailed or
   NotFound is as linearizable as a success. A sequential set takes the counter key in
   the same transaction. The caller then waits until the node has applied the write's
   revision, so it **reads its own writes** on the node it talks to. When that revision
   is the next one to apply (the node has applied the one before), the writer applies
   its transaction from etcd's reply itself, under the lock, instead of waiting for the
   watch to bring it back; the watch's copy is then skipped. Plain sets made at the
   same time on one node (no condition, no lease, no trigger) are **committed in
   groups**: while one group's transaction is in flight the others queue, and the next
   transaction carries them all (each key once), at one revision.
3. **Sessions are leases.** A session's ephemeral records are put with its etcd lease,
   kept alive by this node every TTL/3. When the session ends the lease is revoked; when
   the node or the client dies the lease expires after its TTL. Either way etcd deletes
   the records in one revision, and every node applies the deletions (ON_DEL fires
   everywhere; a lock's next waiter on any node is woken).
4. **Published messages ride the log** under a short-lived lease that nobody keeps
   alive: every node delivers each message once, to its own subscribers, at the
   message's revision; etcd drops the message when the lease expires.
5. **Failures.** A health check (etcd's status and a linearizable read, every
   ``heartbeat`` seconds) moves the node to a healthy endpoint when its member dies or
   loses the leader, and closes the watch there so it resumes elsewhere from its
   revision. Without a quorum for more than ``grace`` seconds, writes fail at once with
   :class:`~octopus.errors.Unavailable` while reads go on from the replica;
   :meth:`staleness` says how old it may be. When etcd has compacted the revision the
   watch would resume from, the node resyncs from a full read and logs it.
6. **Triggers installed by a write** (``set(..., trigger=)``) are installed when the
   write's revision is applied, under the lock, exactly as on a single engine: the write
   carries a marker (in the record's value, or a marker key in the same transaction)
   that the apply path recognises.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import hashlib
import heapq
import itertools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from octopus.core import Core, _Row
from octopus.errors import (
    ConditionFailed,
    EngineClosed,
    NotFound,
    OctopusError,
    QueryError,
    Unavailable,
)
from octopus.events import Trigger
from octopus.query.compile import CompiledQuery, CompiledRecord
from octopus.record import Record, is_name, natural_key

from .codec import decode_value, encode_value
from .etcd import (
    Compacted,
    Etcd,
    EtcdError,
    LeaseNotFound,
    NotWritten,
    Watch,
    b64,
    prefix_end,
    unb64,
)

__all__ = ["Replica"]

log = logging.getLogger("octopus.cluster")

#: etcd refuses transactions with more operations than this unless --max-txn-ops says
#: otherwise; set_many splits its batches to fit.
DEFAULT_MAX_TXN_OPS = 128
#: etcd refuses requests over 1.5 MiB by default; set_many keeps each transaction under this.
MAX_TXN_BYTES = 1 << 20
#: TTL of the leases that carry published messages.
MESSAGE_TTL = 5
#: Group commit: how many transactions of grouped plain sets a node has in flight at once.
GROUP_IN_FLIGHT = 1
#: Threads that run server commands waiting for etcd (:meth:`Replica.io`).
IO_THREADS = 64


def _first(names: list[str]) -> str:
    return min(names, key=natural_key)


def _mod(key: bytes, revision: int) -> dict[str, Any]:
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": revision}


def _put(key: bytes, value: bytes, lease: int = 0) -> dict[str, Any]:
    req: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        req["lease"] = str(lease)
    return {"request_put": req}


def _delete(key: bytes) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key), "prev_kv": True}}


def _revision(reply: dict[str, Any]) -> int:
    return int(reply.get("header", {}).get("revision", 0))


def _own_events(revision: int, ops: list[dict[str, Any]],
                reply: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The watch events that the successful transaction ``ops`` (answered by ``reply``)
    made at ``revision``, as the watch would bring them; None when unknown."""
    events: list[dict[str, Any]] = []
    responses = reply.get("responses")
    for i, op in enumerate(ops):
        put = op.get("request_put")
        if put is not None:
            events.append({"kv": {"key": put["key"], "value": put["value"],
                                  "mod_revision": revision, "lease": put.get("lease", 0)}})
            continue
        delete = op.get("request_delete_range")
        if delete is None or "range_end" in delete or responses is None or \
                len(responses) != len(ops):
            return None
        gone = responses[i].get("response_delete_range", {})
        if int(gone.get("deleted", 0) or 0):
            events.append({"type": "DELETE", "kv": {"key": delete["key"],
                                                    "mod_revision": revision}})
    return events


class _Pending:
    """A plain set waiting to be sent in a group (see :meth:`Replica._put_grouped`)."""

    __slots__ = ("deadline", "error", "key", "op", "revision", "sent", "size", "woken")

    def __init__(self, op: dict[str, Any], deadline: float, lock: threading.Lock) -> None:
        put = op["request_put"]
        # Its writer waits on its own condition (on the group lock): a group's commit
        # wakes its own writers and the next sender, not every writer queued.
        self.woken = threading.Condition(lock)
        self.op = op
        self.key: str = put["key"]
        self.size = len(put["key"]) + len(put["value"])
        self.deadline = deadline
        self.sent = False
        self.revision = 0
        self.error: BaseException | None = None


Hook = Callable[[set[str]], None]


class Replica:
    """Keeps ``core`` a replica of the cluster under ``prefix`` in the etcd cluster at
    ``endpoints``, and is the core's replicated write path (see the module's theory)."""

    def __init__(self, core: Core, endpoints: str | Sequence[str], *, prefix: str = "/octopus/",
                 lease_ttl: int = 10, timeout: float = 5.0, heartbeat: float = 0.5,
                 grace: float = 3.0, max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
                 group_in_flight: int = GROUP_IN_FLIGHT) -> None:
        if not isinstance(prefix, str) or not prefix or not prefix.isprintable():
            raise QueryError(f"the cluster prefix must be printable text, got {prefix!r}")
        if isinstance(lease_ttl, bool) or not isinstance(lease_ttl, int) or lease_ttl < 2:
            raise QueryError(f"lease_ttl must be an int of at least 2 seconds (etcd's "
                             f"minimum), got {lease_ttl!r}")
        self.core = core
        self.etcd = Etcd(endpoints, timeout=timeout)
        self.prefix = prefix.encode()
        self._end = prefix_end(self.prefix)
        self.lease_ttl = lease_ttl
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.grace = grace
        self.max_txn_ops = max_txn_ops
        self.group_in_flight = max(1, group_in_flight)
        self.node = secrets.token_hex(4)
        self._k_rec = self.prefix + b"r/"
        self._k_seq = self.prefix + b"s/"
        self._k_msg = self.prefix + b"m/"
        self._k_ses = self.prefix + b"l/"
        self._k_mark = self.prefix + b"x/w/" + self.node.encode()
        self._k_sync = self.prefix + b"x/s/" + self.node.encode()
        self._k_beat = self.prefix + b"x/beat"

        # Guarded by the core's lock (the condition below is on it).
        self.cond = threading.Condition(core.lock)
        self.applied = 0                                   # last etcd revision applied
        self.counters: dict[str, tuple[int, int]] = {}    # base -> (next, mod_revision)
        self.lease_of: dict[int, int] = {}                 # session -> its lease
        self.sid_of: dict[int, int] = {}                   # lease -> local session
        self.name_lease: dict[str, int] = {}               # ephemeral record -> lease
        self.lease_names: dict[int, set[str]] = {}         # lease -> its records
        self.hooks: dict[str, Hook] = {}                   # marker -> run when applied
        self.published: dict[str, int] = {}                # own message -> deliveries here
        self._keepalive_due: dict[int, float] = {}         # lease -> when to refresh
        # Writers waiting for a revision, each woken alone when it is applied (waking
        # every writer on every change cost more than the rest of the write path).
        self._waiters: list[tuple[int, int, threading.Event]] = []

        # Group commit of plain sets (guarded by _group_cond's own lock, never held
        # together with the core's): the sets waiting to be sent, the groups in flight.
        self._group_lock = threading.Lock()
        self._group_cond = threading.Condition(self._group_lock)
        self._group: list[_Pending] = []
        self._group_sending = 0
        self.groups = 0                     # transactions sent for grouped sets
        self.grouped = 0                    # grouped sets they carried

        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._closed = False
        self._watch: Watch | None = None
        self._watch_lock = threading.Lock()
        self._resync_reason: str | None = None
        self._msg_lock = threading.Lock()
        self._msg_lease: tuple[int, float] = (0, 0.0)
        self._unhealthy_since: float | None = None
        self._health_error = ""
        self._confirmed = time.monotonic()
        self._beats: deque[tuple[float, int]] = deque(maxlen=64)
        self._last_catch_up = 0.0
        self.resyncs = 0
        self.own_applied = 0        # own transactions applied from their reply (not the watch)
        self._threads: list[threading.Thread] = []
        self._io: ThreadPoolExecutor | None = None
        self._io_lock = threading.Lock()

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> Replica:
        """Read the cluster's state, become the core's write path, start replicating."""
        self._resync(None)
        self.core.replicated = self
        for target, name in ((self._watch_loop, "watch"), (self._tick_loop, "health")):
            thread = threading.Thread(target=target, name=f"octopus-cluster-{name}-{self.node}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("node %s replicating %s from %s at revision %d", self.node,
                 self.prefix.decode(), self.etcd.endpoint, self.applied)
        return self

    def close(self) -> None:
        """Revoke the leases of the open sessions (their records go now), stop
        replicating. A node that cannot reach etcd leaves the leases to expire."""
        if self._closed:
            return
        self._closed = True
        with self.cond:
            leases = list(self.lease_of.values())
            self.lease_of.clear()
            self.sid_of.clear()
            self._keepalive_due.clear()
        last = 0
        for i, lease in enumerate(leases):
            try:
                last = max(last, self.etcd.lease_revoke(lease, timeout=2.0))
            except OctopusError as e:
                # etcd is out of reach: do not wait 2 s for each of the others too.
                log.warning("could not revoke %d lease(s) (%s): their records go when they "
                            "expire, within %d s", len(leases) - i, e, self.lease_ttl)
                break
        if last:
            with self.cond:
                self.cond.wait_for(lambda: self.applied >= last, 2.0)
        self._stop.set()
        with self._watch_lock:
            if self._watch is not None:
                self._watch.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(10)
        self.etcd.close()
        with self.cond:
            self._wake_locked()
            self.cond.notify_all()
        with self._io_lock:
            io, self._io = self._io, None
        if io is not None:
            io.shutdown(wait=False)

    def io(self, func: Callable[[], None]) -> None:
        """Run ``func`` on one of this replica's I/O threads (at most ``IO_THREADS``;
        RuntimeError once closed).

        They run the server's plain sets (octopus/cluster/server.py): such a call
        spends milliseconds waiting for a Raft round, and the more of them wait at once,
        the more sets one transaction carries (group commit). Calls beyond the threads
        queue; there is at most one per connection."""
        with self._io_lock:
            if self._closed:
                raise RuntimeError("the replica has closed")
            if self._io is None:
                self._io = ThreadPoolExecutor(IO_THREADS,
                                              thread_name_prefix=f"octopus-io-{self.node}")
            self._io.submit(func)

    # --- the write path (point 2) -------------------------------------------------------

    def _writable(self) -> None:
        if self._closed:
            raise EngineClosed("the engine is closed")
        since = self._unhealthy_since
        if since is not None and time.monotonic() - since >= self.grace:
            raise Unavailable(
                f"no etcd quorum reachable for {time.monotonic() - since:.1f} s "
                f"({self._health_error}); writes fail until it is back, reads are served "
                f"from this node's replica (at most {self.staleness():.1f} s old)")

    def _txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
             deadline: float) -> dict[str, Any]:
        """One transaction, tried again while etcd certainly did not make it."""
        while True:
            self._writable()
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable(f"etcd did not commit the write within {self.timeout:g} s")
            try:
                if not compare and len(success) == 1 and "request_put" in success[0]:
                    # A plain put is lighter for etcd than a transaction holding one.
                    reply: dict[str, Any] = self.etcd.post(
                        "/v3/kv/put", success[0]["request_put"], idempotent=False,
                        timeout=left)
                    reply["succeeded"] = True
                    return reply
                reply = self.etcd.txn(compare, success, timeout=left)
                return reply
            except NotWritten as e:
                if time.monotonic() + 0.1 >= deadline:
                    raise Unavailable(str(e)) from None
                time.sleep(0.1)
            except Unavailable as e:
                raise Unavailable(str(e)) from None

    def _put_grouped(self, op: dict[str, Any], deadline: float) -> int:
        """Commit the plain put ``op`` together with the plain puts other threads make
        meanwhile (group commit); the revision, with the group applied here if it was
        next.

        At most ``group_in_flight`` transactions are in flight; puts made while they
        are wait and go in the next one, in one transaction of at most
        ``max_txn_ops`` puts and about 1 MiB, each key once (etcd refuses a key twice in
        one transaction). Every put in a group commits at once, at one revision, as a
        ``set_many`` batch does: each is still one linearizable write (its effect takes
        place at that commit, between its call and its return). Only puts that cannot
        fail alone go in a group (no compare, no lease, no trigger marker), so a group
        fails only as a whole (etcd unavailable, outcome unknown), and then every one
        of its sets fails with that error."""
        cond = self._group_cond
        me = _Pending(op, deadline, self._group_lock)
        with cond:
            self._group.append(me)
            while not me.revision and me.error is None:
                if not me.sent and self._group_sending < self.group_in_flight:
                    self._send_group_locked()     # the group holds this put
                    continue
                left = me.deadline - time.monotonic()
                if left <= 0 and not me.sent:
                    self._group.remove(me)
                    if self._group and self._group_sending < self.group_in_flight:
                        self._group[0].woken.notify()   # it may have been the next sender
                    raise Unavailable(f"etcd did not commit the write within "
                                      f"{self.timeout:g} s (it was not sent)")
                me.woken.wait(max(left, 0.05))
        if me.error is not None:
            try:
                error = copy.copy(me.error)      # one instance per raising thread
            except Exception:
                error = me.error
            raise error.with_traceback(None) from None
        return me.revision

    def _send_group_locked(self) -> None:
        """Send the next group (the group lock held on entry and on return, not while
        etcd is asked)."""
        batch: list[_Pending] = []
        rest: list[_Pending] = []
        keys: set[str] = set()
        size = 0
        for pending in self._group:
            if len(batch) >= self.max_txn_ops or pending.key in keys or \
                    (batch and size + pending.size > MAX_TXN_BYTES):
                rest.append(pending)
                continue
            batch.append(pending)
            keys.add(pending.key)
            size += pending.size
            pending.sent = True
        self._group = rest
        self._group_sending += 1
        self.groups += 1
        self.grouped += len(batch)
        cond = self._group_cond
        cond.release()
        revision = 0
        error: BaseException | None = None
        try:
            ops = [p.op for p in batch]
            reply = self._txn([], ops, min(p.deadline for p in batch))
            revision = _revision(reply)
            self._apply_own(revision, ops, reply)
            if not revision:
                error = Unavailable("etcd answered the write without a revision")
        except BaseException as e:           # handed to every set of the group
            error = e
        finally:
            cond.acquire()
            self._group_sending -= 1
        for pending in batch:
            pending.revision = revision if error is None else 0
            pending.error = error
            pending.woken.notify()
        if self._group and self._group_sending < self.group_in_flight:
            self._group[0].woken.notify()       # the next group's sender

    def _wait_applied(self, revision: int, deadline: float) -> None:
        with self.cond:
            if self.applied >= revision:
                return
            woken = threading.Event()
            heapq.heappush(self._waiters, (revision, next(self._ids), woken))
        woken.wait(max(deadline - time.monotonic(), 0.5))
        with self.cond:
            if self.applied >= revision:
                return
            raise Unavailable(f"the change was committed at revision {revision}, but this "
                              f"node has applied only up to {self.applied} so far (its "
                              "replication is behind); it will appear here once applied")

    def _txn_applied(self, ops: list[dict[str, Any]], deadline: float) -> int:
        """Commit ``ops`` (no compare) and apply them here if they are next; the
        revision (not yet waited for)."""
        reply = self._txn([], ops, deadline)
        revision = _revision(reply)
        self._apply_own(revision, ops, reply)
        return revision

    def _wait_changed(self, changed: Callable[[], bool], deadline: float) -> None:
        """Wait until the local replica has caught up with what etcd's compare saw."""
        with self.cond:
            if not self.cond.wait_for(lambda: changed() or self._stop.is_set(),
                                      max(deadline - time.monotonic(), 0)):
                raise Unavailable("this node's replica did not catch up with etcd within "
                                  f"{self.timeout:g} s; the write was not made")
            if self._stop.is_set():
                raise EngineClosed("the engine is closed")

    def _rev_of_locked(self, name: str) -> int:
        record = self.core.store.get(name)
        return 0 if record is None else record.revision

    def _marker(self) -> str:
        return f"{self.node}.{next(self._ids)}"

    def _install_hook(self, sid: int, trigger: Trigger, query: CompiledQuery,
                      found: bool | str) -> Hook:
        """A hook installing ``trigger`` at the revision it is run for; ``found`` may be
        a record name: found if that revision changed it."""
        core = self.core

        def hook(names: set[str]) -> None:
            if sid in core._sessions and not trigger.installed:
                hit = found in names if isinstance(found, str) else found
                core._install_locked(sid, trigger, query, hit)

        return hook

    def _settle_hook(self, marker: str | None, trigger: Trigger | None, failed: bool) -> None:
        """After the call: run a hook the apply path skipped (a resync jumped over its
        revision), or undo the trigger of a call that failed."""
        if marker is None or trigger is None:
            return
        with self.cond:
            hook = self.hooks.pop(marker, None)
            if failed:
                if trigger.installed and trigger.id is not None:
                    with contextlib.suppress(KeyError):
                        self.core.registry.uninstall(trigger.id)
                    trigger.id = None
            elif hook is not None:
                hook(set())

    def set(self, sid: int, cr: CompiledRecord, tq: CompiledQuery | None, sequential: bool,
            ephemeral: bool, trigger: Trigger | None) -> Record:
        core = self.core
        core._claim(trigger)
        marker = self._marker() if trigger is not None else None
        failed = True
        try:
            lease = self._session_lease(sid) if ephemeral else 0
            deadline = time.monotonic() + self.timeout
            while True:
                compare: list[dict[str, Any]] = []
                ops: list[dict[str, Any]] = []
                with self.cond:
                    core._check_open(sid)
                    name = cr.name
                    if sequential:
                        base = cr.name
                        nxt, seq_rev = self.counters.get(base, (0, 0))
                        while core.store.get(f"{base}{nxt}") is not None:
                            nxt += 1
                        name = f"{base}{nxt}"
                        seq_key = self._k_seq + base.encode()
                        compare += [_mod(seq_key, seq_rev), _mod(self._k_rec + name.encode(), 0)]
                        ops.append(_put(seq_key, str(nxt + 1).encode()))
                        holds = not cr.conditions

                        def changed(base: str = base, seq_rev: int = seq_rev,
                                    name: str = name) -> bool:
                            return self.counters.get(base, (0, 0))[1] != seq_rev or \
                                self._rev_of_locked(name) != 0
                    elif cr.conditions:
                        current = core.store.get(name)
                        rev = 0 if current is None else current.revision
                        holds = current is not None and \
                            core.store.first(name, cr.conditions, _first) is not None
                        compare.append(_mod(self._k_rec + name.encode(), rev))

                        # Each branch binds its own defaults; all are called as changed().
                        def changed(name: str = name, rev: int = rev) -> bool:  # type: ignore[misc]
                            return self._rev_of_locked(name) != rev
                    else:
                        holds = True

                        def changed() -> bool:  # type: ignore[misc]  # as above
                            return True
                    if trigger is not None and marker is not None and tq is not None:
                        query = tq.renamed(name) if sequential and holds else tq
                        self.hooks[marker] = self._install_hook(sid, trigger, query, holds)
                if holds:
                    ops.append(_put(self._k_rec + name.encode(),
                                    encode_value(cr.attributes, marker=marker), lease))
                elif marker is not None:
                    ops = [_put(self._k_mark, marker.encode())]
                else:
                    ops = []
                if not compare and len(ops) == 1 and not lease and marker is None:
                    revision = self._put_grouped(ops[0], deadline)
                else:
                    reply = self._txn(compare, ops, deadline)
                    if not reply.get("succeeded"):
                        self._wait_changed(changed, deadline)
                        continue
                    revision = _revision(reply)
                    if ops:
                        self._apply_own(revision, ops, reply)
                if ops:
                    self._wait_applied(revision, deadline)
                if not holds:
                    failed = False
                    raise ConditionFailed("the stored record does not satisfy the set's "
                                          "conditions")
                failed = False
                record = Record._trusted(name, cr.attributes, revision)
                break
        finally:
            self._settle_hook(marker, trigger, failed)
            core._unclaim(trigger)
        core._after_write()
        return record

    def delete(self, sid: int, cq: CompiledQuery, trigger: Trigger | None) -> Record:
        core = self.core
        name = cq.exact_name
        assert name is not None
        key = self._k_rec + name.encode()
        core._claim(trigger)
        marker = self._marker() if trigger is not None else None
        failed = True
        try:
            deadline = time.monotonic() + self.timeout
            while True:
                with self.cond:
                    core._check_open(sid)
                    current = core.store.get(name)
                    rev = 0 if current is None else current.revision
                    conditional = bool(cq.prolog_constraints)
                    matches = current is not None and (
                        not conditional or
                        core.store.first(name, cq.prolog_constraints, _first) is not None)
                    if trigger is not None and marker is not None:
                        found: bool | str = matches if conditional else name
                        self.hooks[marker] = self._install_hook(sid, trigger, cq, found)
                mark = [_put(self._k_mark, marker.encode())] if marker is not None else []
                if not conditional:
                    # No precondition: the deletion returns the record as it was, so the
                    # local view is not needed and a stale replica costs nothing.
                    ops = [_delete(key), *mark]
                    reply = self._txn([], ops, deadline)
                    revision = _revision(reply)
                    gone = reply.get("responses", [{}])[0].get("response_delete_range", {})
                    prev = gone.get("prev_kvs") or []
                    if prev or mark:
                        self._apply_own(revision, ops, reply)
                        self._wait_applied(revision, deadline)
                    failed = False
                    if not prev:
                        raise NotFound(f"no record matches {str(cq.query)!r}")
                    attrs, _, _ = decode_value(unb64(prev[0].get("value", "")))
                    record = Record._trusted(name, attrs, int(prev[0]["mod_revision"]))
                    break
                ops = [_delete(key), *mark] if matches else mark
                reply = self._txn([_mod(key, rev)], ops, deadline)
                if not reply.get("succeeded"):
                    self._wait_changed(lambda name=name, rev=rev:  # type: ignore[misc]  # bound defaults
                                       self._rev_of_locked(name) != rev, deadline)
                    continue
                if ops:
                    self._apply_own(_revision(reply), ops, reply)
                    self._wait_applied(_revision(reply), deadline)
                failed = False
                if not matches or current is None:
                    raise NotFound(f"no record matches {str(cq.query)!r}")
                record = current
                break
        finally:
            self._settle_hook(marker, trigger, failed)
            core._unclaim(trigger)
        core._after_write()
        return record

    def load(self, sid: int, rows: list[_Row]) -> int:
        """``set_many``'s batch: transactions of at most ``max_txn_ops`` puts (and about
        1 MiB) each, every one all-or-nothing."""
        with self.cond:
            self.core._check_open(sid)
        deadline = time.monotonic() + self.timeout * max(1, len(rows) // self.max_txn_ops)
        last = 0
        ops: list[dict[str, Any]] = []
        size = 0
        for name, _, attrs in rows:
            op = _put(self._k_rec + name.encode(), encode_value(attrs))
            op_size = len(op["request_put"]["key"]) + len(op["request_put"]["value"])
            if ops and (len(ops) >= self.max_txn_ops or size + op_size > MAX_TXN_BYTES):
                last = self._txn_applied(ops, deadline)
                ops, size = [], 0
            ops.append(op)
            size += op_size
        if ops:
            last = self._txn_applied(ops, deadline)
        if last:
            self._wait_applied(last, deadline)
        self.core._after_write()
        return len(rows)

    def publish(self, sid: int, cr: CompiledRecord) -> int:
        """Put the message under a short-lived lease; once it is applied here, the
        number of subscriptions of this node it reached (as Redis Cluster counts)."""
        with self.cond:
            self.core._check_open(sid)
        msgid = self._marker()
        deadline = time.monotonic() + self.timeout
        with self.cond:
            self.published[msgid] = 0
        try:
            for attempt in range(2):
                lease = self._message_lease(fresh=attempt > 0)
                try:
                    ops = [_put(self._k_msg + msgid.encode(),
                                encode_value(cr.attributes, name=cr.name), lease)]
                    reply = self._txn([], ops, deadline)
                    break
                except (LeaseNotFound, EtcdError) as e:
                    if attempt or "lease" not in str(e):
                        raise Unavailable(f"could not publish: {e}") from None
            self._apply_own(_revision(reply), ops, reply)
            self._wait_applied(_revision(reply), deadline)
            with self.cond:
                count = self.published.get(msgid, 0)
        finally:
            with self.cond:
                self.published.pop(msgid, None)
        self.core._after_write()
        return count

    def _message_lease(self, fresh: bool = False) -> int:
        with self._msg_lock:
            lease, granted = self._msg_lease
            if fresh or not lease or time.monotonic() - granted > MESSAGE_TTL / 2:
                self._writable()
                lease, _ = self.etcd.lease_grant(MESSAGE_TTL, timeout=self.timeout)
                self._msg_lease = (lease, time.monotonic())
            return lease

    # --- sessions (point 3) --------------------------------------------------------------

    def _session_lease(self, sid: int) -> int:
        with self.cond:
            self.core._check_open(sid)
            lease = self.lease_of.get(sid)
        if lease:
            return lease
        self._writable()
        try:
            lease, ttl = self.etcd.lease_grant(self.lease_ttl, timeout=self.timeout)
        except Unavailable as e:
            raise Unavailable(str(e)) from None
        extra = 0
        with self.cond:
            if not self.core.is_open(sid):
                extra = lease
            elif sid in self.lease_of:
                extra, lease = lease, self.lease_of[sid]
            else:
                self.lease_of[sid] = lease
                self.sid_of[lease] = sid
                self._keepalive_due[lease] = time.monotonic() + ttl / 3
        if extra:
            with contextlib.suppress(OctopusError):
                self.etcd.lease_revoke(extra, timeout=1.0)
            self.core._check_open(sid)
        return lease

    def end_session(self, sid: int) -> None:
        """The session closes: revoke its lease and wait until its records are gone
        here (so ``close()`` returning means they are gone, as on one engine)."""
        with self.cond:
            lease = self.lease_of.pop(sid, None)
            if lease is not None:
                self.sid_of.pop(lease, None)
                self._keepalive_due.pop(lease, None)
        if not lease or self._closed:
            return
        try:
            revision = self.etcd.lease_revoke(lease, timeout=self.timeout)
        except OctopusError as e:
            log.warning("could not revoke the lease %x of session %d (%s): its records go "
                        "when it expires, within %d s", lease, sid, e, self.lease_ttl)
            return
        if revision:
            with contextlib.suppress(Unavailable):
                self._wait_applied(revision, time.monotonic() + self.timeout)

    def detach_session(self, sid: int) -> None:
        """Stop keeping the session's lease alive and end it here without deleting its
        records: the client may resume it on another node before the lease expires."""
        with self.cond:
            lease = self.lease_of.pop(sid, None)
            if lease is not None:
                self.sid_of.pop(lease, None)
                self._keepalive_due.pop(lease, None)
        self.core.end_session_locally(sid)

    def session_token(self, sid: int) -> tuple[int, str, int]:
        """Make the session resumable: (lease, secret, TTL). The secret's digest is
        stored on the lease, so only the holder of the secret can resume the session."""
        lease = self._session_lease(sid)
        secret = secrets.token_hex(16)
        digest = hashlib.sha256(secret.encode()).hexdigest().encode()
        self._txn([], [_put(self._k_ses + f"{lease:x}".encode(), digest, lease)],
                  time.monotonic() + self.timeout)
        return lease, secret, self.lease_ttl

    def resume(self, sid: int, lease: int, secret: str) -> None:
        """Make ``sid`` the session of ``lease`` (its records become its ephemeral
        records here); EngineClosed if the lease is gone or the secret is wrong."""
        self._writable()
        reply = self.etcd.range(self._k_ses + f"{lease:x}".encode(), timeout=self.timeout)
        kvs = reply.get("kvs") or []
        digest = hashlib.sha256(secret.encode()).hexdigest().encode()
        if not kvs or not secrets.compare_digest(unb64(kvs[0].get("value", "")), digest):
            raise EngineClosed("the session cannot be resumed: its lease expired (its "
                               "ephemeral records are gone) or the secret does not match")
        if self.etcd.lease_keepalive(lease, timeout=self.timeout) <= 0:
            raise EngineClosed("the session cannot be resumed: its lease expired")
        self._wait_applied(_revision(reply), time.monotonic() + self.timeout)
        with self.cond:
            self.core._check_open(sid)
            previous = self.sid_of.get(lease)
            if previous is not None and previous != sid:
                self.lease_of.pop(previous, None)
            old = self.lease_of.get(sid)
            if old is not None and old != lease:
                raise EngineClosed("this session already has a lease of its own")
            self.lease_of[sid] = lease
            self.sid_of[lease] = sid
            self._keepalive_due[lease] = time.monotonic() + self.lease_ttl / 3
            for name in sorted(self.lease_names.get(lease, ()), key=natural_key):
                self.core.own_locked(name, sid)

    def _expired(self, lease: int) -> None:
        with self.cond:
            sid = self.sid_of.pop(lease, None)
            self._keepalive_due.pop(lease, None)
            if sid is not None:
                self.lease_of.pop(sid, None)
        if sid is not None:
            log.warning("session %d lost its lease %x (not kept alive within its TTL): its "
                        "ephemeral records are gone and the session has ended", sid, lease)
            self.core.end_session_locally(sid)

    # --- consistency ---------------------------------------------------------------------

    def sync(self, sid: int, timeout: float | None) -> int:
        """Write this node's sync key and wait until its revision is applied here: every
        change committed before the call is then visible (docs/cluster.md)."""
        with self.cond:
            self.core._check_open(sid)
        started = time.monotonic()
        limit = self.timeout if timeout is None else timeout
        deadline = started + limit
        ops = [_put(self._k_sync, b"")]
        reply = self._txn([], ops, deadline)
        revision = _revision(reply)
        self._apply_own(revision, ops, reply)
        self._wait_applied(revision, deadline)
        self._confirm(started, revision)
        return revision

    def wait_revision(self, revision: int, timeout: float) -> int:
        """Wait until this node has applied ``revision`` (a client's last one, after it
        failed over here); the revision applied."""
        self._wait_applied(revision, time.monotonic() + timeout)
        return self.applied

    def staleness(self) -> float:
        """Seconds since this node last knew it had applied everything etcd had
        committed (checked every ``heartbeat`` seconds while etcd is reachable)."""
        return max(0.0, time.monotonic() - self._confirmed)

    def _confirm(self, at: float, revision: int) -> None:
        if self.applied >= revision and at > self._confirmed:
            self._confirmed = at

    def status(self) -> dict[str, Any]:
        """The node's replication state, for CLUSTER STATUS and tests."""
        since = self._unhealthy_since
        return {"node": self.node, "prefix": self.prefix.decode(),
                "endpoint": self.etcd.endpoint, "applied": self.applied,
                "staleness": round(self.staleness(), 3),
                "healthy": since is None,
                "unhealthy_for": 0.0 if since is None else round(time.monotonic() - since, 3),
                "sessions_with_leases": len(self.lease_of), "resyncs": self.resyncs,
                "own_applied": self.own_applied, "groups": self.groups,
                "grouped": self.grouped}

    # --- the apply path (point 1) --------------------------------------------------------

    def _apply(self, events: list[dict[str, Any]]) -> None:
        """Apply a watch response's events (the watch thread)."""
        with self.cond:
            self._apply_locked(events)
        self.core._after_write()

    def _apply_locked(self, events: list[dict[str, Any]]) -> None:
        """Apply ``events`` in order, each revision once: a revision at or below
        ``applied`` was applied already (from its writer's reply, see
        :meth:`_apply_own`), and the watch's copy of it is skipped."""
        applied = self.applied
        revision = 0
        markers: list[str] = []
        names: set[str] = set()
        for event in events:
            kv = event.get("kv", {})
            rev = int(kv.get("mod_revision", 0))
            if rev <= applied:
                continue
            if revision and rev != revision:
                self._finish_locked(revision, markers, names)
                markers, names = [], set()
            revision = rev
            try:
                self._apply_one_locked(event.get("type") == "DELETE", kv, rev, markers,
                                       names)
            except (ValueError, KeyError, TypeError, UnicodeDecodeError,
                    OctopusError) as e:
                log.error("skipping a change at revision %d that is not an Octopus "
                          "record (key %r): %s", rev, unb64(kv.get("key", ""))[:80], e)
        if revision:
            self._finish_locked(revision, markers, names)
        self._wake_locked()
        self.cond.notify_all()

    def _apply_own(self, revision: int, ops: list[dict[str, Any]],
                   reply: dict[str, Any]) -> None:
        """Apply this node's own transaction from its reply when it is the next
        revision to apply, instead of waiting for the watch to bring it back.

        Only then: ``applied == revision - 1`` means every change up to the one before
        is applied here, and a transaction that changed something is all of its
        revision (etcd gives each transaction one revision), so the order stays etcd's
        order and nothing is skipped. Otherwise (another change in between, from any
        node or under another prefix) the watch applies it in its turn."""
        if self.applied != revision - 1:          # a hint; checked again under the lock
            return
        events = _own_events(revision, ops, reply)
        if not events:
            return
        with self.cond:
            if self.applied == revision - 1:
                self._apply_locked(events)
                self.own_applied += 1

    def _wake_locked(self) -> None:
        waiters = self._waiters
        while waiters and (waiters[0][0] <= self.applied or self._stop.is_set()):
            heapq.heappop(waiters)[2].set()

    def _finish_locked(self, revision: int, markers: list[str],
                       names: builtins.set[str]) -> None:
        self.core.apply_revision_locked(revision)
        self.applied = revision
        for marker in markers:
            hook = self.hooks.pop(marker, None)
            if hook is not None:
                try:
                    hook(names)
                except OctopusError as e:   # e.g. Prolog refused the trigger's query
                    log.error("could not install the trigger of write %s: %s", marker, e)
        while self._beats and self._beats[0][1] <= revision:
            self._confirm(*self._beats.popleft())

    def _apply_one_locked(self, deleted: bool, kv: dict[str, Any], revision: int,
                          markers: list[str], names: builtins.set[str]) -> None:
        key = unb64(kv.get("key", ""))
        rel = key[len(self.prefix):]
        kind, rest = rel[:2], rel[2:]
        if kind == b"r/":
            name = rest.decode()
            if not is_name(name):
                raise ValueError(f"invalid record name {name[:60]!r}")
            names.add(name)
            if deleted:
                self._track_lease_locked(name, 0)
                self.core.apply_delete_locked(revision, name)
                return
            attrs, marker, _ = decode_value(unb64(kv.get("value", "")))
            lease = int(kv.get("lease", 0) or 0)
            self._track_lease_locked(name, lease)
            self.core.apply_set_locked(revision, name, attrs, self.sid_of.get(lease))
            if marker is not None:
                markers.append(marker)
        elif kind == b"s/":
            base = rest.decode()
            if deleted:
                self.counters.pop(base, None)
            else:
                self.counters[base] = (int(unb64(kv.get("value", ""))), revision)
        elif kind == b"m/":
            if deleted:
                return                          # the message's lease expired
            attrs, _, msg_name = decode_value(unb64(kv.get("value", "")))
            if msg_name is None:
                raise ValueError("a message without a name")
            count = self.core.apply_publish_locked(revision, Record._trusted(msg_name, attrs,
                                                                             revision))
            msgid = rest.decode()
            if msgid in self.published:
                self.published[msgid] = count
        elif rel.startswith(b"x/w/") and not deleted:
            markers.append(unb64(kv.get("value", "")).decode())

    def _track_lease_locked(self, name: str, lease: int) -> None:
        old = self.name_lease.pop(name, 0)
        if old:
            names = self.lease_names.get(old)
            if names is not None:
                names.discard(name)
                if not names:
                    del self.lease_names[old]
        if lease:
            self.name_lease[name] = lease
            self.lease_names.setdefault(lease, set()).add(name)

    def _full_read(self) -> tuple[int, list[dict[str, Any]]]:
        """Every key under the prefix at one revision (paged)."""
        while True:
            try:
                kvs: list[dict[str, Any]] = []
                key, revision = self.prefix, 0
                while True:
                    reply = self.etcd.range(key, self._end, revision=revision, limit=2000)
                    if not revision:
                        revision = _revision(reply)
                    page = reply.get("kvs") or []
                    kvs += page
                    if not reply.get("more") or not page:
                        return revision, kvs
                    key = unb64(page[-1]["key"]) + b"\0"
            except Compacted:
                continue                          # compacted while paging: read again

    def _resync(self, reason: str | None) -> None:
        """Make the replica equal to a full read; changes that differ are committed to
        the change stream (sets in revision order, then deletions at the read's
        revision). ``reason`` None: the first read at start."""
        started = time.monotonic()
        revision, kvs = self._full_read()
        records: dict[str, tuple[int, dict[str, Any], int]] = {}
        counters: dict[str, tuple[int, int]] = {}
        bad = 0
        for kv in kvs:
            rel = unb64(kv["key"])[len(self.prefix):]
            try:
                if rel.startswith(b"r/"):
                    name = rel[2:].decode()
                    if not is_name(name):
                        raise ValueError(f"invalid record name {name[:60]!r}")
                    attrs, _, _ = decode_value(unb64(kv.get("value", "")))
                    records[name] = (int(kv["mod_revision"]), attrs,
                                     int(kv.get("lease", 0) or 0))
                elif rel.startswith(b"s/"):
                    counters[rel[2:].decode()] = (int(unb64(kv.get("value", ""))),
                                                  int(kv["mod_revision"]))
            except (ValueError, UnicodeDecodeError) as e:
                bad += 1
                log.error("skipping key %r in the full read: %s", rel[:80], e)
        core = self.core
        with self.cond:
            local = {r.name: r.revision for r in core.store.all(None, [])}
            sets = sorted((rev, name) for name, (rev, _, _) in records.items()
                          if local.get(name) != rev)
            deletes = sorted((n for n in local if n not in records), key=natural_key)
            self.name_lease.clear()
            self.lease_names.clear()
            for name, (_, _, lease) in records.items():
                if lease:
                    self._track_lease_locked(name, lease)
            for rev, name in sets:
                _, attrs, lease = records[name]
                core.apply_set_locked(rev, name, attrs, self.sid_of.get(lease))
            for name in deletes:
                core.apply_delete_locked(revision, name)
            self.counters = counters
            core.apply_revision_locked(revision)
            self.applied = revision
            self._wake_locked()
            self.cond.notify_all()
        self._confirm(started, revision)
        if reason is not None:
            self.resyncs += 1
            log.warning("node %s resynced from a full read at revision %d (%s): %d record(s) "
                        "set, %d deleted, %d skipped", self.node, revision, reason, len(sets),
                        len(deletes), bad)
        core._after_write()

    def _watch_loop(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            watch: Watch | None = None
            try:
                if self._resync_reason is not None:
                    self._resync(self._resync_reason)
                    self._resync_reason = None
                watch = self.etcd.watch(self.prefix, self._end, self.applied + 1)
                with self._watch_lock:
                    self._watch = watch
                if self._stop.is_set():
                    break
                for response in watch:
                    events = response.get("events")
                    if events:
                        self._apply(events)
                    delay = 0.05
            except Compacted as e:
                self._resync_reason = (f"etcd compacted revision {self.applied + 1}, which "
                                       f"the watch would resume from (it keeps revisions "
                                       f"from {e.compact_revision})")
                log.warning("node %s: %s; resyncing from a full read", self.node,
                            self._resync_reason)
            except Exception as e:
                if self._stop.is_set():
                    break
                where = watch.endpoint if watch is not None else self.etcd.endpoint
                log.warning("node %s: the watch on %s ended (%s: %s); resuming from revision "
                            "%d", self.node, where, type(e).__name__, e, self.applied + 1)
                self.etcd.rotate(watch.index if watch is not None else None)
                self._stop.wait(delay)
                delay = min(delay * 2, 1.0)
            finally:
                if watch is not None:
                    watch.close()
                with self._watch_lock:
                    self._watch = None

    # --- health, heartbeats and keep-alives (point 5) ------------------------------------

    def _tick_loop(self) -> None:
        next_health = 0.0
        while not self._stop.wait(0.05):
            now = time.monotonic()
            try:
                if now >= next_health:
                    next_health = now + self.heartbeat
                    self._check_health()
                self._keepalives(now)
            except Exception:
                log.exception("node %s: health check failed unexpectedly", self.node)

    def _check_health(self) -> None:
        try:
            self._check_member(None)
            started = time.monotonic()
            reply = self.etcd.range(self._k_beat, count_only=True, timeout=1.0)
            revision = _revision(reply)
            with self.cond:
                if self.applied >= revision:
                    self._confirm(started, revision)
                else:
                    self._beats.append((started, revision))
                stuck = self._beats and time.monotonic() - self._beats[0][0] > 2.0
            if self._unhealthy_since is not None:
                log.warning("node %s: etcd is reachable again at %s after %.1f s",
                            self.node, self.etcd.endpoint,
                            time.monotonic() - self._unhealthy_since)
            self._unhealthy_since = None
            if stuck and time.monotonic() - self._last_catch_up > 2.0:
                # Revisions outside the prefix (another application's keys) never reach
                # the watch; one write of our own gives the watch a revision to reach.
                self._last_catch_up = time.monotonic()
                with contextlib.suppress(OctopusError):
                    self.etcd.put(self._k_sync, b"", timeout=1.0)
        except (OctopusError, OSError) as e:
            self._health_error = str(e)
            if self._unhealthy_since is None:
                self._unhealthy_since = time.monotonic()
                log.warning("node %s: etcd unavailable at %s: %s", self.node,
                            self.etcd.endpoint, e)
            self._find_healthy_member()

    def _check_member(self, index: int | None) -> None:
        status = self.etcd.status(index, timeout=1.0)
        errors = status.get("errors") or []
        if errors or not int(status.get("leader", 0) or 0):
            raise Unavailable("; ".join(map(str, errors)) or "the member knows no leader")

    def _find_healthy_member(self) -> None:
        current = self.etcd._current
        for i in range(len(self.etcd.endpoints)):
            if i == current:
                continue
            try:
                self._check_member(i)
            except (OctopusError, OSError):
                continue
            with self.etcd._lock:
                self.etcd._current = i
            log.warning("node %s: moving to etcd member %s", self.node, self.etcd.endpoints[i])
            with self._watch_lock:
                if self._watch is not None and self._watch.index != i:
                    self._watch.close()
            return

    def _keepalives(self, now: float) -> None:
        with self.cond:
            due = [lease for lease, when in self._keepalive_due.items() if when <= now]
        for lease in due:
            try:
                ttl = self.etcd.lease_keepalive(lease, timeout=1.0)
            except (OctopusError, OSError) as e:
                log.debug("keep-alive of lease %x failed: %s", lease, e)
                with self.cond:
                    if lease in self._keepalive_due:
                        self._keepalive_due[lease] = now + 0.25
                continue
            if ttl <= 0:
                self._expired(lease)
                continue
            with self.cond:
                if lease in self._keepalive_due:
                    self._keepalive_due[lease] = time.monotonic() + self.lease_ttl / 3

    # --- helpers for tests and the server ------------------------------------------------

    def compact_now(self) -> int:
        """Compact etcd's history up to the current revision (tests and the demo)."""
        revision = _revision(self.etcd.range(self._k_beat, count_only=True))
        self.etcd.compact(revision)
        return revision


"""What ``octopus serve`` adds to a connection for a cluster (docs/cluster.md).

:class:`ReplicaConnection` is the server's :class:`~octopus.server.server.Connection`
whose commands are :class:`ReplicaCommands`, the server's sans-I/O
:class:`~octopus.server.commands.CommandLayer` with:

1. **Plain sets off the event loop, on threads of their own.** On a replica a write
   waits for etcd (a Raft round and an fsync) and then for its revision to be applied
   here: milliseconds of waiting, not of work. The server's engine threads are built for
   short calls (one thread takes the calls of a loop iteration one after another, and
   the loop waits briefly for them, see :mod:`octopus.server.runner`): there a write
   held up the connections behind it and the loop itself, so under load few sets were
   in flight at once and the replica's group commit had little to group. A ``SET``
   without ``SEQUENTIAL``, ``EPHEMERAL`` or ``TRIGGER`` (the sets a replica commits in
   groups) therefore runs on the replica's I/O threads (:meth:`Replica.io`), the
   connection's batch on one thread, its reply handed back to the loop at once. The
   other writes (a lock's entries and deletions among them) stay on the engine threads:
   they are not grouped, and on I/O threads they cost contended lock grants 10–15%
   (docs/cluster.md). Either way the connection's later commands wait behind it, so
   replies keep request order, and other connections go on.
2. **Commands**:

   | command | reply |
   |---|---|
   | ``SYNC`` | ``:revision`` once every change committed before it is applied here |
   | ``SYNC revision [timeout]`` | ``:revision`` once this node has applied ``revision`` |
   | ``GET q [params] ... LINEARIZABLE`` | ``SYNC``, then the ``GET`` |
   | ``STALENESS`` | seconds (text) the state read here may be behind |
   | ``SESSION`` | ``[lease, secret, ttl]``: makes the session resumable |
   | ``SESSION RESUME lease secret`` | ``+OK``: this connection takes over that session |
   | ``CLUSTER STATUS`` | a map: node, endpoint, applied revision, staleness, health |

   On a server that is not a replica, ``SYNC`` answers the revision, ``STALENESS``
   ``0``, ``LINEARIZABLE`` changes nothing, and ``SESSION`` is a single server's
   (docs/server.md, *Sessions that outlive a blip*).
3. **Sessions that may be resumed** (those that asked ``SESSION``: clients given
   several URLs) are not ended when their connection drops: their lease is no longer
   kept alive here, and the client has until it expires to ``SESSION RESUME`` on any
   node. Other sessions end when the connection drops, as on a single server (their
   lease is revoked, their records go at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from octopus.errors import QueryError
from octopus.server.commands import OK, Action, Call, CommandLayer
from octopus.server.resp import encode
from octopus.server.server import Connection

from .replica import Replica

__all__ = ["ReplicaCommands", "ReplicaConnection"]


#: Options that keep a SET off the I/O threads: its write is not grouped (see the module).
UNGROUPED = frozenset({b"SEQUENTIAL", b"EPHEMERAL", b"TRIGGER"})


class _Deliveries:
    """Outcomes handed back from the I/O threads to one event loop: one wake-up of the
    loop for all those ready by then (a group commit finishes several writes at once).

    Bounded by the server's connection limit: a connection has at most one command on
    the I/O threads (:meth:`Replica.io`), so at most one outcome waiting here."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready: deque[tuple[Callable[[Any, BaseException | None], None], Any,
                                BaseException | None]] = deque()
        self.lock = threading.Lock()
        self.scheduled = False

    def put(self, done: Callable[[Any, BaseException | None], None], result: Any,
            error: BaseException | None) -> None:
        """From any thread: run ``done(result, error)`` on the loop soon."""
        self.ready.append((done, result, error))
        with self.lock:
            if self.scheduled:              # the loop has yet to drain: it will see it
                return
            self.scheduled = True
        with contextlib.suppress(RuntimeError):     # the loop has closed
            self.loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        with self.lock:
            self.scheduled = False
        ready = self.ready
        while ready:
            done, result, error = ready.popleft()
            try:
                done(result, error)
            except Exception:
                log.exception("delivering the outcome of a command that waited for etcd")


log = logging.getLogger("octopus.cluster")

_deliveries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deliveries] = \
    weakref.WeakKeyDictionary()


def _int(raw: bytes, what: str) -> int:
    if not raw.isdigit() or len(raw) > 20:
        raise QueryError(f"{what} must be a non-negative integer, got {raw[:40]!r}")
    return int(raw)


class ReplicaCommands(CommandLayer):
    """The commands of a connection to a server whose engine may be a cluster replica."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resumable = False            # SESSION was asked: keep it when the link drops
        #: The engine call of the last command, if it runs on the I/O threads (the module).
        self.etcd_call: Call | None = None

    def _replica(self) -> Replica | None:
        replica = self.ctx.engine._core.replicated
        return replica if isinstance(replica, Replica) else None

    def handle(self, args: list[bytes]) -> Action:
        action = super().handle(args)
        if type(action) is Call and args[0].upper() == b"SET" and \
                self._replica() is not None and \
                not any(arg.upper() in UNGROUPED for arg in args[2:]):
            # Only where the routing is wrong does a parameter spelled like an option
            # matter: such a set runs on an engine thread, as every write once did.
            self.etcd_call = action
        return action

    def cmd_get(self, args: list[bytes]) -> Action:
        if len(args) > 2 and args[-1].upper() == b"LINEARIZABLE":
            args = args[:-1]
            if self._replica() is not None:
                # Never from the reply cache: the sync must come first.
                session = self.session
                return Call(lambda: session.sync(), lambda _: self._get(args, cached=False))
        return self._get(args, cached=True)

    def cmd_sync(self, args: list[bytes]) -> Action:
        if len(args) > 3:
            raise QueryError("SYNC takes at most a revision and a timeout")
        replica = self._replica()
        if replica is None:
            return b":%d\r\n" % self.ctx.engine.revision
        session = self.session
        if len(args) == 1:
            return Call(lambda: session.sync(), lambda rev: b":%d\r\n" % rev)
        revision = _int(args[1], "the revision")
        timeout = float(_int(args[2], "the timeout")) if len(args) == 3 else replica.timeout
        return Call(lambda: replica.wait_revision(revision, timeout),
                    lambda rev: b":%d\r\n" % rev)

    def cmd_staleness(self, args: list[bytes]) -> Action:
        if len(args) != 1:
            raise QueryError("STALENESS takes no arguments")
        replica = self._replica()
        value = 0.0 if replica is None else replica.staleness()
        return encode(f"{value:.3f}".encode(), self.proto)

    def cmd_session(self, args: list[bytes]) -> Action:
        replica = self._replica()
        if replica is None:
            return super().cmd_session(args)     # a single server's resumable sessions
        sid = self.session._sid
        proto = self.proto
        if len(args) == 1:
            def token(result: tuple[int, str, int]) -> bytes:
                lease, secret, ttl = result
                self.resumable = True
                return encode([str(lease).encode(), secret.encode(), ttl], proto)

            return Call(lambda: replica.session_token(sid), token)
        if len(args) == 4 and args[1].upper() == b"RESUME":
            lease = _int(args[2], "the lease")
            secret = args[3].decode("ascii", "replace")

            def resumed(_: None) -> bytes:
                self.resumable = True
                return OK

            return Call(lambda: replica.resume(sid, lease, secret), resumed)
        raise QueryError("SESSION takes no arguments, or RESUME lease secret")

    def cmd_cluster(self, args: list[bytes]) -> Action:
        if len(args) != 2 or args[1].upper() != b"STATUS":
            raise QueryError("CLUSTER takes STATUS")
        replica = self._replica()
        if replica is None:
            return encode({"replica": 0, "revision": self.ctx.engine.revision}, self.proto)
        status = {k: (str(v) if isinstance(v, float) else int(v) if isinstance(v, bool) else v)
                  for k, v in replica.status().items()}
        return encode(status, self.proto)


class ReplicaConnection(Connection):
    """A connection of a server whose engine may be a cluster replica."""

    layer_class = ReplicaCommands

    def _start(self, action: Action) -> None:
        layer = self.layer
        if type(action) is not Call or not isinstance(layer, ReplicaCommands) or \
                action is not layer.etcd_call or self.closed:
            super()._start(action)
            return
        layer.etcd_call = None
        replica = layer._replica()
        loop = self.loop
        assert replica is not None and loop is not None
        deliveries = _deliveries.get(loop)
        if deliveries is None:
            deliveries = _deliveries[loop] = _Deliveries(loop)
        self.busy = True
        self.held = []

        def run() -> None:
            # The batch runs here as it would on an engine thread (the commands queued
            # behind the write included); the loop gets its outcome at once.
            try:
                batch, error = self._batch(action), None
            except BaseException as e:      # as a Round reports it: the connection drops
                batch, error = None, e
            deliveries.put(self._batch_done, batch, error)

        try:
            replica.io(run)
        except RuntimeError:                # the replica has closed: as the runner does
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        layer = self.layer
        replica = layer._replica() if isinstance(layer, ReplicaCommands) else None
        if (not isinstance(layer, ReplicaCommands) or replica is None or not layer.resumable
                or layer.session_closed):
            super().connection_lost(exc)
            return
        # A resumable session outlives its connection: stop keeping its lease alive and
        # end it here without deleting its records (off the loop: it takes the engine).
        layer.session_closed = True          # so that the connection does not close it
        sid = layer.session._sid
        super().connection_lost(exc)
        self.server.in_background(lambda: replica.detach_session(sid))

"""What ``octopus serve`` adds to a connection for a cluster (docs/cluster.md).

:class:`ReplicaConnection` is the server's :class:`~octopus.server.server.Connection`
with:

1. **Writes off the event loop.** On a replica a write waits for etcd (a Raft round and
   an fsync) and then for its revision to be applied here. ``SET``, ``DEL``,
   ``PUBLISH``, ``QUIT`` and the cluster commands below run on a bounded thread pool;
   the connection's later commands wait behind them (as behind ``WAIT``), so replies keep
   request order, and other connections go on meanwhile. Reads stay inline: they are
   local.
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
   ``0``, ``LINEARIZABLE`` changes nothing, and ``SESSION`` is refused.
3. **Sessions that may be resumed** (those that asked ``SESSION``: clients given
   several URLs) are not ended when their connection drops: their lease is no longer
   kept alive here, and the client has until it expires to ``SESSION RESUME`` on any
   node. Other sessions end when the connection drops, as on a single server (their
   lease is revoked, their records go at once).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from octopus.errors import EngineClosed, OctopusError, QueryError
from octopus.server.commands import OK, Reply
from octopus.server.resp import encode, encode_error
from octopus.server.server import Connection

from .replica import Replica

__all__ = ["ReplicaConnection"]

#: Threads that run the waiting commands of every connection of a server.
POOL_SIZE = 32

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(POOL_SIZE,
                                                          thread_name_prefix="octopus-writes")
        return _pool


_OFFLOADED = frozenset({b"SET", b"DEL", b"PUBLISH"})


def _int(raw: bytes, what: str) -> int:
    if not raw.isdigit() or len(raw) > 20:
        raise QueryError(f"{what} must be a non-negative integer, got {raw[:40]!r}")
    return int(raw)


class ReplicaConnection(Connection):
    """A connection of a server whose engine may be a cluster replica."""

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        self.resumable = False

    def _replica(self) -> Replica | None:
        replica = self.server.engine._core.replicated
        return replica if isinstance(replica, Replica) else None

    def _offload(self, call: Callable[[], bytes]) -> Reply:
        loop = self.loop
        assert loop is not None

        async def run() -> bytes:
            return await loop.run_in_executor(_executor(), call)

        return run()

    # --- dispatch ----------------------------------------------------------------------

    def _execute(self, args: list[bytes]) -> Reply:
        name = args[0].upper()
        own = _OWN.get(name)
        if own is not None:
            self.server.stats.commands += 1
            if not self.authed:
                return encode_error("NOAUTH", "Authentication required.")
            try:
                return own(self, args)
            except Exception as e:
                return self._error_reply(e)
        if name == b"GET" and len(args) > 2 and args[-1].upper() == b"LINEARIZABLE":
            return self._linearizable_get(args[:-1])
        replica = self._replica()
        if replica is None:
            return super()._execute(args)
        if name in _OFFLOADED:
            return self._offload(lambda: Connection._execute(self, args))  # type: ignore[arg-type,return-value]
        if name == b"QUIT" and self.authed:
            return self._quit()
        return super()._execute(args)

    def _linearizable_get(self, args: list[bytes]) -> Reply:
        if not self.authed:
            return encode_error("NOAUTH", "Authentication required.")
        if self._replica() is None:
            return super()._execute(args)
        session = self.session
        loop = self.loop
        assert loop is not None

        async def run() -> bytes:
            try:
                if session is None:
                    raise EngineClosed("the connection's session is closed")
                await loop.run_in_executor(_executor(), session.sync)
            except OctopusError as e:
                self.server.stats.commands += 1
                return self._error_reply(e)
            reply = Connection._execute(self, args)
            if not isinstance(reply, bytes):
                return await reply
            return reply

        return run()

    def _quit(self) -> Reply:
        loop = self.loop
        assert loop is not None
        self.server.stats.commands += 1

        async def run() -> bytes:
            await loop.run_in_executor(_executor(), self._end_session)
            self.closing = True          # the connection closes once OK is written
            return OK

        return run()

    def connection_lost(self, exc: Exception | None) -> None:
        session, replica = self.session, self._replica()
        if session is None or replica is None:
            super().connection_lost(exc)
            return
        self.session = None              # ended below, off the loop or detached
        super().connection_lost(exc)
        if self.resumable:
            replica.detach_session(session._sid)
        else:
            _executor().submit(self._close_quietly, session)

    @staticmethod
    def _close_quietly(session: Any) -> None:
        try:
            session.close()
        except Exception:
            import logging

            logging.getLogger("octopus.server").exception("closing a dropped session")

    # --- the cluster's commands --------------------------------------------------------

    def cmd_sync(self, args: list[bytes]) -> Reply:
        if len(args) > 3:
            raise QueryError("SYNC takes at most a revision and a timeout")
        session = self._session()
        replica = self._replica()
        if replica is None:
            return b":%d\r\n" % self.server.engine.revision
        if len(args) == 1:
            return self._offload(lambda: b":%d\r\n" % session.sync())
        revision = _int(args[1], "the revision")
        timeout = float(_int(args[2], "the timeout")) if len(args) == 3 else replica.timeout
        return self._offload(lambda: b":%d\r\n" % replica.wait_revision(revision, timeout))

    def cmd_staleness(self, args: list[bytes]) -> Reply:
        if len(args) != 1:
            raise QueryError("STALENESS takes no arguments")
        self._session()
        replica = self._replica()
        value = 0.0 if replica is None else replica.staleness()
        return encode(f"{value:.3f}".encode(), self.proto)

    def cmd_session(self, args: list[bytes]) -> Reply:
        session = self._session()
        replica = self._replica()
        if replica is None:
            raise QueryError("SESSION needs a server that is a cluster replica "
                             "(octopus serve --etcd ...)")
        sid = session._sid
        if len(args) == 1:
            def token() -> bytes:
                lease, secret, ttl = replica.session_token(sid)
                self.resumable = True
                return encode([str(lease).encode(), secret.encode(), ttl], self.proto)

            return self._offload(token)
        if len(args) == 4 and args[1].upper() == b"RESUME":
            lease = _int(args[2], "the lease")
            secret = args[3].decode("ascii", "replace")

            def resume() -> bytes:
                replica.resume(sid, lease, secret)
                self.resumable = True
                return OK

            return self._offload(resume)
        raise QueryError("SESSION takes no arguments, or RESUME lease secret")

    def cmd_cluster(self, args: list[bytes]) -> Reply:
        if len(args) != 2 or args[1].upper() != b"STATUS":
            raise QueryError("CLUSTER takes STATUS")
        replica = self._replica()
        if replica is None:
            return encode({"replica": 0, "revision": self.server.engine.revision}, self.proto)
        status = {k: (str(v) if isinstance(v, float) else int(v) if isinstance(v, bool) else v)
                  for k, v in replica.status().items()}
        return encode(status, self.proto)


_OWN: dict[bytes, Callable[[ReplicaConnection, list[bytes]], Reply]] = {
    b"SYNC": ReplicaConnection.cmd_sync,
    b"STALENESS": ReplicaConnection.cmd_staleness,
    b"SESSION": ReplicaConnection.cmd_session,
    b"CLUSTER": ReplicaConnection.cmd_cluster,
}

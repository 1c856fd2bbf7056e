"""``octopus serve``: the engine as a RESP service (the commands are in docs/server.md).

Theory of operation:

1. One asyncio loop thread does the I/O of every connection: it reads, splits the bytes
   into commands (:class:`~octopus.server.resp.RequestParser`), writes replies and
   pushed events, and applies flow control and output limits. What a command *does* is
   decided by the connection's sans-I/O :class:`~octopus.server.commands.CommandLayer`.
2. The loop never parses a query and never calls Prolog: every engine call (opening and
   closing the session included) runs on a pool of ``workers`` threads shared by the
   server. A connection has at most one thing outstanding (a batch of engine calls, a
   WAIT, a FLUSH, a held AUTH failure), so its replies keep request order. A batch
   runs every command of a pipeline that is queued behind the first engine call in
   the same thread hop (one hop per batch, not per command), and the batches of every
   connection started in one loop iteration go as one :class:`Round` (one hop for all;
   their GETs by name read in one store call); what needs no engine call (PING, a GET
   answered from the reply cache) is answered on the loop at once.
   Under ``--fsync always`` a batch that wrote is answered only once an fsync covers
   its writes; the runner's committer thread makes one fsync for the batches of every
   connection handed to it so far (group commit, see :mod:`octopus.server.runner`).
3. Each connection owns one engine :class:`~octopus.engine.Session`, opened when it
   connects and closed when it goes (EOF, reset, QUIT, a protocol error, an output
   limit, its process killed), so its ephemeral records, triggers and subscriptions
   end with it — unless its client made it resumable (``SESSION``): then a dropped
   connection *detaches* it, and it expires only if no connection resumes it within
   its timeout (:mod:`octopus.server.sessions`). WAIT is
   :meth:`octopus.aio.AsyncSession.wait_for` on that session.
4. Engine handlers run on the engine's dispatcher thread; the server's only hand the
   event to the loop (``call_soon_threadsafe``) and return, so a slow socket never
   blocks the dispatcher. While a batch of a connection runs on a thread, its pushed
   events are held and written after the batch's replies (a WATCH's id is written
   before the trigger's first event).
5. Input is bounded before it is stored (see :mod:`octopus.server.resp`). When a client
   does not read its replies the server stops reading its requests. Pushed events
   cannot wait: unsent output is bounded per connection (hard and soft limits by
   class) and in total (the connections holding the most are dropped first), see
   :mod:`octopus.server.limits`.
6. Nothing received is ever run as Prolog: text arguments are Octopus queries or
   records, parsed by the PLY grammar; the knowledge base is loaded only with
   ``--load`` at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import os
import socket
import ssl
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from time import perf_counter
from typing import Any, cast

from octopus.aio import AsyncSession
from octopus.core import Core
from octopus.engine import Engine, Session
from octopus.errors import EngineClosed, OctopusError

from .cache import ReplyCache
from .commands import (
    VERSION,
    Action,
    AuthFailed,
    Call,
    Close,
    CommandLayer,
    Flush,
    SessionOp,
    Wait,
    parser_limits,
)
from .config import ServerConfig
from .limits import AuthThrottle, BufferLimit, OutputBudget, RateLimitedLog
from .metrics import CommandMetrics, MetricsProtocol, Tally, exposition
from .resp import ProtocolError, RequestParser, encode, encode_error
from .runner import EngineRunner
from .sessions import SessionGap, SessionLink, keepalive

__all__ = ["Connection", "Server", "ServerConfig", "exposure_error", "is_loopback", "run"]

log = logging.getLogger("octopus.server")

OK_REPLY = b"+OK\r\n"

# A batch on an engine-call thread stops after this many bytes of replies, so that the
# loop writes them (and sees whether the client reads) before the next batch.
BATCH_BYTES = 256 << 10


# A TLS client has this long to finish its handshake (connection_made comes after it, so
# a connection still shaking hands is not yet counted against max_clients).
TLS_HANDSHAKE_TIMEOUT = 10.0


def exposure_error(host: str | None, *, password: str | None, tls: bool,
                   client_certs: bool, allow_remote: bool,
                   allow_cleartext: bool) -> str | None:
    """Why listening on ``host`` with these settings is refused (None: it is not).

    Loopback is always allowed. Another address needs ``allow_remote``, some way to
    authenticate clients (a password, or client certificates checked against a CA),
    and a password only over TLS: a password sent in clear text on a network is a
    password given away, unless ``allow_cleartext`` says the operator knows."""
    if host is None or is_loopback(host):
        return None
    if not allow_remote:
        return f"refusing to listen on non-loopback address {host!r} without --allow-remote"
    if not password and not client_certs:
        return ("listening on a non-loopback address needs --requirepass or client "
                "certificates (--tls-ca)")
    if password and not tls and not allow_cleartext:
        return (f"refusing to take --requirepass in clear text on non-loopback address "
                f"{host!r}: give --tls-cert and --tls-key, or --unsafe-allow-cleartext "
                "(anyone on the network path can read the password and the data)")
    return None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the server ------------------------------------------------------------------------------


class _Stats:
    def __init__(self) -> None:
        self.started = time.time()
        self.connections_received = 0
        self.rejected_connections = 0
        self.commands = 0                  # of connections that have ended
        self.protocol_errors = 0
        self.dropped = {"hard": 0, "soft": 0, "memory": 0}   # output-limit disconnections
        self.auth_failures = 0
        self.cross_protocol = 0
        self.sessions_resumed = 0
        self.sessions_expired = 0
        self.rounds = 0                    # Server._start_round: rounds of batches ...
        self.round_batches = 0             # ... and the connections' batches they ran
        self.batched_reads = 0             # Round._read: store calls for reads by name ...
        self.batched_gets = 0              # ... and the GETs they answered (the threads
        #                                    add to these two: a lost count is harmless)


class Server:
    """A RESP server over one :class:`Engine` (which the caller owns and closes)."""

    def __init__(self, engine: Engine, config: ServerConfig | None = None,
                 connection_class: type[Connection] | None = None) -> None:
        self.engine = engine
        # What a connection is: Connection, or a subclass (octopus.cluster.server's).
        self.connection_class = connection_class or Connection
        self.config = c = config or ServerConfig()
        self.connections: set[Connection] = set()
        self.stats = _Stats()
        self.ids = itertools.count(1)
        self.addresses: list[str] = []
        self.metrics_address: str | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._unix_paths: list[str] = []
        self._stop: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        # Typing parameters parses the query: bounded like the engine's own parse, so a
        # huge query is refused before any work (the engine would refuse it too).
        self.max_query_length = c.max_query_length
        self._runner: EngineRunner | None = None     # made on the loop, when listening
        # Under fsync=always the connections' writes share fsyncs: the engine threads
        # defer each write's acknowledgement and the runner's committer waits for one
        # fsync for all of them (group commit). Other policies acknowledge at once.
        self.durability: Core | None = (engine._core
                                        if engine.persistence().get("fsync") == "always"
                                        else None)
        self.cache: ReplyCache | None = (ReplyCache(c.reply_cache, c.reply_cache_bytes)
                                         if c.reply_cache > 0 and c.reply_cache_bytes > 0
                                         else None)
        # The cache learns of every change from inside the engine's commit (see
        # ReplyCache); stopped when the server closes (the engine may outlive it).
        self._unobserve: Callable[[], None] | None = (
            engine._core.observe_names(self.cache.changed) if self.cache is not None
            else None)
        self.output: OutputBudget[Connection] = OutputBudget(
            c.output_memory_limit,
            pubsub=BufferLimit(c.output_limit, c.output_soft_limit, c.output_soft_seconds),
            normal=BufferLimit(c.normal_output_limit, c.normal_output_soft_limit,
                               c.normal_output_soft_seconds))
        self.auth = AuthThrottle(c.auth_failure_delay, c.auth_failures_per_second)
        self._auth_log = RateLimitedLog(log, 10.0)
        self._attack_log = RateLimitedLog(log, 60.0)
        self._background = 0                # blocking calls nobody waits for, running
        # Per-command counts and latencies, kept only while a metrics endpoint listens.
        self.metrics: CommandMetrics | None = None
        self._scrapes = [0]
        self.sessions: dict[int, SessionLink] = {}   # resumable sessions, by id
        # Batches started in this loop iteration, handed to the engine threads at its end.
        self._round: list[tuple[Connection, Call]] = []
        self._round_scheduled = False

    @property
    def runner(self) -> EngineRunner:
        """The threads that run engine calls (shared by every connection)."""
        if self._runner is None:
            self._runner = EngineRunner(asyncio.get_running_loop(), self.config.workers,
                                        durability=self.durability)
        return self._runner

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 6380,
                        tls: ssl.SSLContext | None = None) -> int:
        """Listen on TCP (over TLS with ``tls``, see :mod:`octopus.server.tls`); returns
        the port (useful with ``port=0``)."""
        loop = asyncio.get_running_loop()
        self.runner  # noqa: B018  (started on this loop)
        srv = await loop.create_server(
            lambda: self.connection_class(self), host, port, reuse_address=True,
            backlog=1024, ssl=tls,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if tls is not None else None)
        self._servers.append(srv)
        bound = srv.sockets[0].getsockname()[1]
        self.addresses.append(f"{'rediss' if tls is not None else 'tcp'}://{host}:{bound}")
        return int(bound)

    async def start_unix(self, path: str) -> None:
        """Listen on a Unix socket that only this user may open (mode 0600)."""
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)          # the socket file is created 0600, with no window
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        loop = asyncio.get_running_loop()
        self.runner  # noqa: B018  (started on this loop)
        srv = await loop.create_unix_server(lambda: self.connection_class(self), sock=sock,
                                            backlog=1024)
        self._servers.append(srv)
        self._unix_paths.append(path)
        self.addresses.append(f"unix://{path}")

    async def start_metrics(self, host: str = "127.0.0.1", port: int = 9380) -> int:
        """Serve Prometheus metrics over HTTP (:mod:`octopus.server.metrics`); returns
        the port."""
        loop = asyncio.get_running_loop()
        self.metrics = CommandMetrics(self.connection_class.layer_class.COMMANDS)
        srv = await loop.create_server(
            lambda: MetricsProtocol(self, self._render_metrics, self._scrapes), host, port,
            reuse_address=True)
        self._servers.append(srv)
        bound = int(srv.sockets[0].getsockname()[1])
        self.metrics_address = f"http://{host}:{bound}/metrics"
        return bound

    def _render_metrics(self, done: Callable[[str | None], None]) -> None:
        """The exposition, made on an engine-call thread, handed to ``done`` on the loop."""
        try:
            self.runner.call(lambda _: exposition(self), None,
                             lambda text, error: done(None if error is not None else text))
        except RuntimeError:               # the threads have stopped
            done(None)

    def stop_soon(self) -> None:
        """Ask a server started by :func:`run` to stop (from any thread)."""
        if self._stop is not None:
            loop, stop = self._stop
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, stop)

    async def serve_forever(self) -> None:
        await asyncio.gather(*(s.serve_forever() for s in self._servers))

    async def close(self) -> None:
        """Stop listening and drop every connection (their sessions end)."""
        for s in self._servers:
            s.close()
        for c in list(self.connections):
            c.abort()
        for link in list(self.sessions.values()):
            if link.detached:
                self._expire(link, "the server is shutting down")
        for s in self._servers:
            with contextlib.suppress(Exception):
                await s.wait_closed()
        for _ in range(3):                 # connection_lost runs soon after abort()
            await asyncio.sleep(0)
        deadline = time.monotonic() + 30   # sessions being closed: their records go
        while self._background and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self._runner is not None:
            self._runner.shutdown(wait=False, cancel_futures=True)
        if self._unobserve is not None:
            self._unobserve()
            self._unobserve = None
            if self.cache is not None:
                self.cache.clear()
        for p in self._unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(p)

    def run_batch(self, conn: Connection, call: Call) -> None:
        """Run ``conn``'s batch of engine calls starting with ``call`` on an engine-call
        thread, then ``conn._batch_done`` on the loop. Batches started in the same loop
        iteration run as one :class:`Round` (one hand-off, their reads by name in one
        store call); under ``fsync=always`` each batch is its own call, so the runner's
        committer holds back only the replies of the batches that wrote."""
        if self.durability is not None:
            self.runner.call(conn._batch, call, conn._batch_done)
            return
        self._round.append((conn, call))
        if not self._round_scheduled:
            self._round_scheduled = True
            assert conn.loop is not None
            conn.loop.call_soon(self._start_round)

    def _start_round(self) -> None:
        self._round_scheduled = False
        work, self._round = self._round, []
        if not work:
            return
        runner = self.runner
        self.stats.rounds += 1
        self.stats.round_batches += len(work)
        rnd = Round(self.engine._core, work, self.stats, runner.progress, self.cache)
        try:
            # One job takes the whole round; the others take over only the connections
            # it has not reached if it is held up by a slow call (the runner wakes
            # another thread for them after ``stall``), else they find nothing left.
            for _ in range(min(len(work), ROUND_JOBS)):
                runner.call(rnd.drive, None, self._round_done)
        except RuntimeError:                # the threads have stopped: the server ends
            for conn, _ in work:
                conn.abort()
            return
        runner.settle_now()

    @staticmethod
    def _round_done(finished: list[tuple[Connection, Batch | None, BaseException | None]],
                    error: BaseException | None) -> None:
        if error is not None:               # Round.drive catches every exception
            log.error("a round of engine calls failed", exc_info=error)
            return
        for conn, batch, failure in finished:
            conn._batch_done(batch, failure)

    def in_background(self, func: Callable[[], object]) -> None:
        """Run a blocking engine call whose result nobody waits for (closing a session);
        :meth:`close` waits for it."""
        try:
            self.runner.call(lambda _: func(), None, self._background_done)
        except RuntimeError:               # the threads have stopped: the server is ending
            func()
            return
        self._background += 1

    def _background_done(self, result: object, error: BaseException | None) -> None:
        self._background -= 1
        if error is not None:
            log.error("a background engine call failed", exc_info=error)

    # --- policies (called on the loop) -------------------------------------------------------

    def auth_failed(self, conn: Connection) -> float:
        """Count and log a failed AUTH; seconds to hold its reply."""
        now = time.monotonic()
        self.stats.auth_failures += 1
        self._auth_log.warning(now, "failed AUTH from %s (connection %d)", conn.peer, conn.id)
        return self.auth.failure(now)

    def cross_protocol(self, conn: Connection, why: str) -> None:
        self.stats.cross_protocol += 1
        self._attack_log.warning(time.monotonic(), "possible SECURITY ATTACK (cross-protocol "
                                 "scripting) from %s, connection %d: %s", conn.peer, conn.id,
                                 why)

    # --- resumable sessions (octopus.server.sessions; on the loop) ---------------------------

    def session_timed_out(self, link: SessionLink) -> None:
        if link.detached:
            self._expire(link, f"not resumed within {link.timeout:g} s")

    def session_overflow(self, link: SessionLink) -> None:
        """More events arrived for a detached session than its replay buffer holds."""
        self._expire(link, f"more than {link.limit} bytes of events arrived while detached")

    def _expire(self, link: SessionLink, why: str) -> None:
        """End a resumable session as a close does (on an engine thread)."""
        if link.expired:
            return
        link.expire()
        self.sessions.pop(link.sid, None)
        self.stats.sessions_expired += 1
        log.info("session %d expired: %s", link.sid, why)
        layer = link.layer
        conn = link.conn
        if conn is not None:                # expired while attached (a refused resume)
            link.conn = None
            conn.abort()
        if layer is not None:
            layer.session_closed = False
            self.in_background(layer.close_session)
        else:
            self.in_background(link.session.close)

    def enforce_memory_limit(self) -> None:
        """Past ``output_memory_limit``: drop the connections holding the most output."""
        for conn in self.output.victims(lambda c: c.buffered()):
            conn.drop("memory", self.config.output_memory_limit)

    # --- INFO (runs on an engine-call thread: it counts the records) -----------------------

    def info(self, section: str = "") -> str:
        s = self.stats
        c = self.config
        conns = list(self.connections)
        commands = s.commands + sum(x.layer.commands for x in conns if x.layer is not None)
        cache = self.cache
        sections: dict[str, list[tuple[str, object]]] = {
            "server": [("octopus_version", VERSION), ("process_id", os.getpid()),
                       ("listening", " ".join(self.addresses)),
                       ("uptime_in_seconds", int(time.time() - s.started)),
                       ("workers", c.workers),
                       ("engine_calls", self._runner.calls if self._runner else 0),
                       ("engine_handoffs", self._runner.handoffs if self._runner else 0),
                       ("engine_loop_wakeups", self._runner.loop_wakeups if self._runner else 0),
                       ("engine_thread_extra_wakes",
                        self._runner.extra_wakes if self._runner else 0),
                       ("engine_group_commits", self._runner.commits if self._runner else 0),
                       ("engine_group_committed_calls",
                        self._runner.committed_calls if self._runner else 0),
                       ("engine_rounds", s.rounds),
                       ("engine_round_batches", s.round_batches),
                       ("engine_batched_reads", s.batched_reads),
                       ("engine_batched_gets", s.batched_gets)],
            "clients": [("connected_clients", len(conns)),
                        ("resumable_sessions", len(self.sessions)),
                        ("detached_sessions",
                         sum(1 for x in self.sessions.values() if x.detached)),
                        ("sessions_resumed", s.sessions_resumed),
                        ("sessions_expired", s.sessions_expired),
                        ("maxclients", c.max_clients),
                        ("client_output_bytes", self.output.total),
                        ("output_memory_limit", c.output_memory_limit),
                        ("max_triggers_per_client", c.max_triggers)],
            "stats": [("total_connections_received", s.connections_received),
                      ("total_commands_processed", commands),
                      ("rejected_connections", s.rejected_connections),
                      ("protocol_errors", s.protocol_errors),
                      ("output_limit_disconnections", sum(s.dropped.values())),
                      ("output_hard_limit_disconnections", s.dropped["hard"]),
                      ("output_soft_limit_disconnections", s.dropped["soft"]),
                      ("output_memory_limit_disconnections", s.dropped["memory"]),
                      ("auth_failures", s.auth_failures),
                      ("cross_protocol_disconnections", s.cross_protocol),
                      ("reply_cache_entries", len(cache) if cache is not None else 0),
                      ("reply_cache_bytes", cache.size if cache is not None else 0),
                      ("reply_cache_hits", cache.hits if cache is not None else 0),
                      ("reply_cache_misses", cache.misses if cache is not None else 0),
                      ("reply_cache_evictions", cache.evictions if cache is not None else 0)],
            "store": [("revision", self.engine.revision), ("records", self.engine.count())],
            "persistence": [("durable", int(self.engine.path is not None)),
                            *self.engine.persistence().items()],
        }
        wanted = section.lower()
        lines: list[str] = []
        for name, items in sections.items():
            if wanted in ("", "all", "everything", "default", name):
                lines.append(f"# {name.capitalize()}")
                lines += [f"{k}:{v}" for k, v in items]
                lines.append("")
        return "\r\n".join(lines)


# --- a round of batches --------------------------------------------------------------------

Batch = tuple[list[bytes], Action | None, list[int]]
Steps = Generator[Call, tuple[Any, BaseException | None], Batch]

# Jobs a round hands the runner (at most one per connection): see Server._start_round.
ROUND_JOBS = 4


class Round:
    """The engine work of one loop iteration: the batches of the connections that made
    an engine call in it (:meth:`Connection.steps`), advanced on engine-call threads by
    :meth:`drive`, with their reads by name combined: whenever no connection can
    advance without the record it asked for, one store call reads all of those
    (:meth:`octopus.core.Core.get_named`).

    Guarantees: a connection's commands run in its request order, one thread at a time
    (its steps are held by at most one thread); a read by name answers what ``GET`` of
    that name answers at the revision of the store call that read it, which lies
    between the request's arrival and its reply. Between connections any order is
    valid: every request of the round arrived before the round began, and no reply of
    it is written before its connection's batch ends. An exception in one connection's
    steps ends that connection's batch only (the connection is then dropped, as an
    exception in a batch always did); a failed store call is the error reply of each
    read it carried, and the connections go on.
    """

    def __init__(self, core: Core, work: list[tuple[Connection, Call]], stats: _Stats,
                 progress: Callable[[], None] = lambda: None,
                 cache: ReplyCache | None = None) -> None:
        self._core = core
        self._cache = cache
        self._stats = stats
        self._progress = progress           # EngineRunner.progress: a step is done
        self._lock = threading.Lock()
        # (connection, its steps or None before they start, the call to start them
        # with or the (result, error) to send them)
        self._ready: deque[tuple[Connection, Steps | None, Any]] = deque(
            (conn, None, call) for conn, call in work)
        self._reads: list[tuple[Connection, Steps, Call]] = []

    def drive(self, _: object) -> list[tuple[Connection, Batch | None, BaseException | None]]:
        """Advance connections until none is left to advance; the batches this call
        finished (on an engine-call thread; several may drive one round at once)."""
        finished: list[tuple[Connection, Batch | None, BaseException | None]] = []
        lock = self._lock
        ready = self._ready
        progress = self._progress
        while True:
            progress()
            with lock:
                if ready:
                    conn, steps, sent = ready.popleft()
                    reads = None
                elif self._reads:
                    reads, self._reads = self._reads, []
                else:
                    return finished
            if reads is not None:
                answers = self._read(reads)
                with lock:
                    ready.extend((c, st, answer)
                                 for (c, st, _), answer in zip(reads, answers, strict=True))
                continue
            try:
                if steps is None:
                    steps = conn.steps(sent)
                    sent = None
                get = steps.send(sent)
            except StopIteration as stop:
                finished.append((conn, stop.value, None))
                continue
            except BaseException as e:      # a SystemExit must not end the thread
                finished.append((conn, None, e))
                continue
            with lock:
                self._reads.append((conn, steps, get))

    def _read(self, reads: list[tuple[Connection, Steps, Call]]
              ) -> list[tuple[Any, BaseException | None]]:
        """The answers of reads by name, from one store call: what their ``run()``
        returns, or the error."""
        self._stats.batched_reads += 1
        self._stats.batched_gets += len(reads)
        try:
            requests = []
            for conn, _, call in reads:
                assert conn.layer is not None and call.name is not None
                requests.append((conn.layer.session._sid, call.name))
            started = self._cache.begin() if self._cache is not None else None
            _, found = self._core.get_named(requests)
        except Exception as e:
            return [(None, e)] * len(reads)
        return [(None, r) if isinstance(r, OctopusError) else ((r, started, call.name), None)
                for r, (_, _, call) in zip(found, reads, strict=True)]


# --- one connection ----------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One client's I/O: the parser, the writes, flow control, output limits, and the
    hops of its engine calls; its commands are its :class:`CommandLayer` (an instance of
    :attr:`layer_class`, which a subclass may replace to add commands)."""

    layer_class: type[CommandLayer] = CommandLayer

    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = c = server.config
        self.id = next(server.ids)
        self.peer = "?"
        self.parser = RequestParser(max_args=c.max_args, max_bulk=c.max_bulk,
                                    max_request=c.max_request, max_inline=c.max_inline)
        self.layer: CommandLayer | None = None
        self.link: SessionLink | None = None
        self.asession: AsyncSession | None = None
        self.queue: deque[list[bytes]] = deque()
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.busy = True                   # something is outstanding (first: the session)
        self.task: asyncio.Task[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.held: list[bytes] | None = None    # pushes held while a batch runs
        self.held_bytes = 0
        self.closed = False
        self.closing = False               # no more commands: QUIT, an error, a drop
        self.write_paused = False
        self.read_paused = False
        self._limits: tuple[int, int, int] | None = None
        self._authed_limits = False        # the parser has the limits of after AUTH
        self.metrics = metrics = server.metrics
        # This connection's command counts (metrics.py: folded into the totals at the end).
        self.tally: Tally | None = {} if metrics is not None else None
        self._command = b""                # the command being served, and since when
        self._started = 0.0

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is no subclass of asyncio.Transport: no isinstance).
        self.transport = transport = cast(asyncio.Transport, transport)
        self.loop = asyncio.get_running_loop()
        server = self.server
        server.stats.connections_received += 1
        if len(server.connections) >= self.config.max_clients:
            server.stats.rejected_connections += 1
            transport.write(encode_error("ERR", "max number of clients reached"))
            transport.close()
            self.closed = True
            return
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a Unix socket"
        sock = transport.get_extra_info("socket")
        if isinstance(peer, tuple) and sock is not None:
            keepalive(sock)             # a vanished client's session must detach, then expire
        transport.set_write_buffer_limits(high=256 << 10)
        if self.config.password is not None:
            self._apply_limits(parser_limits(self.config, authed=False))
        server.connections.add(self)
        engine, conn_id = server.engine, self.id

        def open_session(_: object) -> Session:
            session = engine.session()
            session.name = f"connection {conn_id}"      # what explanations (WHY) show
            return session

        try:
            server.runner.call(open_session, None, self._opened)
        except RuntimeError:                # the threads have stopped
            self._refuse()

    def _refuse(self) -> None:
        self.closing = True
        assert self.transport is not None
        self.transport.write(encode_error("EngineClosed", "the server is shutting down"))
        self.transport.close()

    def _opened(self, session: Session, error: BaseException | None) -> None:
        self.busy = False
        if error is not None:
            if not isinstance(error, EngineClosed):
                log.error("opening a session for connection %d", self.id, exc_info=error)
            if not self.closed:
                self._refuse()
            return
        if self.closed:
            self.server.in_background(session.close)
            return
        assert self.loop is not None
        self.link = link = SessionLink(self.server, session, self.loop)
        self.layer = self.layer_class(self.server, session, conn_id=self.id,
                                      on_trigger=link.on_trigger,
                                      on_message=link.on_message)
        link.attach(self, self.layer)
        self.asession = AsyncSession(session, self.server.runner)
        self._drain()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        server = self.server
        server.connections.discard(self)
        server.output.forget(self)
        if self.task is not None:
            self.task.cancel()
        if self.timer is not None:
            self.timer.cancel()
        if self.metrics is not None:
            self.metrics.retire(self)
        layer = self.layer
        if layer is not None:
            server.stats.commands += layer.commands
            layer.commands = 0
            link = self.link
            ours = link is not None and link.conn is self and link.resumable and \
                not link.expired            # (not a session another connection took over)
            if ours and not layer.session_closed:
                assert link is not None
                link.detach()               # it stays until its timeout
                log.debug("session %d detached (connection %d)", link.sid, self.id)
            else:
                if ours:                    # QUIT ended it: forget it
                    assert link is not None
                    link.expire()
                    server.sessions.pop(link.sid, None)
                if not layer.session_closed:
                    server.in_background(layer.close_session)

    def data_received(self, data: bytes) -> None:
        if self.closed or self.closing:
            return
        self.parser.feed(data)
        if self.busy:
            self._flow_control()
        else:
            self._drain()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.closed:
            return
        self._check_output()
        if not self.busy:
            self._drain()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    # --- commands ----------------------------------------------------------------------------

    def _apply_limits(self, limits: tuple[int, int, int]) -> None:
        if limits != self._limits:
            self._limits = limits
            max_args, max_bulk, max_inline = limits
            self.parser.set_limits(max_args=max_args, max_bulk=max_bulk, max_inline=max_inline)

    def _drain(self) -> None:
        """Handle queued commands in order until one needs more than the loop may do,
        writes back up, or none are left; write their replies in one go."""
        layer = self.layer
        if self.busy or self.closed or self.closing or layer is None:
            return
        out: list[bytes] = []
        size = 0
        queue = self.queue
        action: Action | None = None
        metrics = self.metrics
        # The parser holds no complete command beyond those it gave (it gave fewer than
        # asked): no need to ask again once they are handled.
        parsed_all = False
        try:
            while not self.write_paused:
                if not queue:
                    if parsed_all:
                        break
                    # Before AUTH one command at a time, so that the commands after a
                    # successful AUTH are parsed with the larger limits (as Redis does).
                    if not self._authed_limits:
                        self._apply_limits(layer.limits)
                        self._authed_limits = layer.authed
                    limit = self.config.max_pipeline if layer.authed else 1
                    commands = self.parser.commands(limit)
                    if not commands:
                        break
                    parsed_all = len(commands) < limit
                    queue.extend(commands)
                command = queue.popleft()
                if metrics is not None:
                    self._command = command[0]
                    self._started = perf_counter()
                reply = layer.handle(command)
                if type(reply) is not bytes:
                    action = reply
                    break
                if metrics is not None:
                    self._observe(reply)
                out.append(reply)
                size += len(reply)
                if size > 65536:
                    self._write(b"".join(out))
                    out.clear()
                    size = 0
        except ProtocolError as e:
            self.server.stats.protocol_errors += 1
            out.append(encode_error("ERR", f"Protocol error: {e}"))
            action = Close(b"")
        if out:
            self._write(b"".join(out))
        if action is not None:
            self._start(action)
        if self.read_paused or self.busy or self.write_paused or self.queue:
            self._flow_control()            # (else reading goes on: nothing to change)

    def _start(self, action: Action) -> None:
        """Begin what the layer asked for (anything but a reply)."""
        if self.closed:
            return
        loop = self.loop
        assert loop is not None and self.transport is not None
        kind = type(action)
        if kind is Close:
            assert isinstance(action, Close)
            if action.warning:
                self.server.cross_protocol(self, action.warning)
            if action.reply:
                self.transport.write(action.reply)
            self.closing = True
            self.transport.close()
            return
        self.busy = True
        if kind is Call:
            assert isinstance(action, Call)
            self.held = []
            try:
                self.server.run_batch(self, action)
            except RuntimeError:            # the threads have stopped
                self.abort()
        elif kind is Wait:
            assert isinstance(action, Wait) and self.asession is not None
            self.task = loop.create_task(self.asession.wait_for(
                action.query, *action.params, timeout=action.timeout))
            self.task.add_done_callback(lambda t: self._task_done(action, t))
        elif kind is Flush:
            assert isinstance(action, Flush) and self.asession is not None
            self.task = loop.create_task(self.asession.flush())
            self.task.add_done_callback(lambda t: self._task_done(action, t))
        elif kind is SessionOp:
            assert isinstance(action, SessionOp)
            self._session_op(action)
        else:
            assert isinstance(action, AuthFailed)
            delay = self.server.auth_failed(self)
            self.timer = loop.call_later(delay, self._complete, action, None, None)

    def _session_op(self, op: SessionOp) -> None:
        """SESSION on the loop, which owns the table of resumable sessions."""
        layer, link, server = self.layer, self.link, self.server
        assert layer is not None and link is not None
        c = self.config
        frames: list[bytes] = []
        if op.resume is None:
            asked = c.session_timeout if op.timeout is None else op.timeout
            timeout = min(max(asked, c.min_session_timeout), c.max_session_timeout)
            secret, timeout = link.make_resumable(timeout, c.session_replay_bytes)
            server.sessions[link.sid] = link
            reply = encode({"id": link.sid, "secret": secret.encode(),
                            "timeout_ms": round(timeout * 1000), "replay": 1}, layer.proto)
        else:
            reply, frames = self._resume(*op.resume)
        self.busy = False
        self._write(layer.complete(op, reply, None))  # type: ignore[arg-type]  # SESSION's reply
        for frame in frames:
            self._write(frame)
        self._drain()

    def _resume(self, sid: int, secret: bytes, received: int) -> tuple[bytes, list[bytes]]:
        layer, fresh, server = self.layer, self.link, self.server
        assert layer is not None and fresh is not None
        link = server.sessions.get(sid)
        if link is None or link.expired or not link.check_secret(secret):
            return encode_error("SessionExpired", f"no session {sid} to resume (it expired, "
                                "or was never resumable)"), []
        if link is fresh:
            return encode_error("ERR", "this connection already carries that session"), []
        if layer.owned or layer.rule_watches or \
                not server.engine._core.owns_nothing(fresh.sid):
            return encode_error("ERR", "SESSION RESUME must come before this connection "
                                "installs triggers, derived watches or ephemeral records"), []
        try:
            frames = link.frames_after(received, layer)
        except SessionGap as e:
            server._expire(link, str(e))
            return encode_error("SessionExpired", f"session {sid} expired: {e}"), []
        old = link.conn
        if fresh.resumable:
            fresh.expire()
            server.sessions.pop(fresh.sid, None)
        own_session = layer.session
        link.resume(self, layer)
        if old is not None:                 # the old connection looks alive: take over
            log.info("session %d taken over from connection %d by %d", sid, old.id, self.id)
            old.abort()
        self.link = link
        self.asession = AsyncSession(link.session, server.runner)
        server.in_background(own_session.close)
        # Explanations (WHY) name the session after the connection carrying it now.
        session, name = link.session, layer.session_name()
        server.in_background(lambda: setattr(session, "name", name))
        server.stats.sessions_resumed += 1
        log.debug("session %d resumed on connection %d (%d events replayed)", sid, self.id,
                  len(frames))
        return OK_REPLY, frames

    def _batch(self, call: Call) -> Batch:
        """On an engine-call thread: run ``call``, then the commands queued behind it
        (:meth:`steps`, each read run on its own)."""
        steps = self.steps(call)
        sent: tuple[Any, BaseException | None] | None = None
        while True:
            try:
                get = steps.send(sent)  # type: ignore[arg-type]
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            try:
                sent = (get.run(), None)
            except Exception as e:
                sent = (None, e)

    def steps(self, call: Call) -> Generator[Call, tuple[Any, BaseException | None], Batch]:
        """On an engine-call thread: run ``call``, then the commands queued behind it,
        until one needs the loop (a wait, a close) or the batch is big enough; return
        the replies, that action, and which replies are those of writes whose
        acknowledgement was deferred (group commit: they become the error if the fsync
        fails).

        A read by name (a :class:`Call` with ``name``) is not run here: it is yielded,
        and whoever drives the steps sends back its ``(result, error)`` — the server
        reads the records of many connections' GETs in one store call (a
        :class:`Round`). Everything else runs here, in request order."""
        layer = self.layer
        assert layer is not None
        queue = self.queue
        out: list[bytes] = []
        writes: list[int] = []
        durability = self.server.durability
        wrote = False
        size = 0
        action: Action = call
        while True:
            if type(action) is Call:
                if action.name is not None:
                    result, error = yield action
                else:
                    before = durability.deferred() if durability is not None else 0
                    try:
                        result, error = action.run(), None
                    except Exception as e:
                        result, error = None, e
                    if durability is not None and durability.deferred() != before:
                        wrote = True
                action = layer.complete(action, result, error)
                continue
            if type(action) is not bytes:
                return out, action, writes
            if self.metrics is not None:
                self._observe(action)
            if wrote:
                writes.append(len(out))
                wrote = False
            out.append(action)
            size += len(action)
            if not queue or self.closed or size > BATCH_BYTES:
                return out, None, writes
            command = queue.popleft()
            if self.metrics is not None:
                self._command = command[0]
                self._started = perf_counter()
            action = layer.handle(command)

    def _batch_done(self, batch: Batch | None, error: BaseException | None) -> None:
        self.busy = False
        held, self.held = self.held or [], None
        self.held_bytes = 0
        if self.closed:
            return
        if error is not None and batch is not None and isinstance(error, OctopusError) \
                and self.layer is not None:
            # The batch ran, but the fsync covering its writes failed: their replies
            # become that error (applied, durability unknown); the others stand.
            reply = self.layer.error_reply(error)
            for i in batch[2]:
                batch[0][i] = reply
            error = None
        if error is not None or batch is None:
            log.error("connection %d: a batch of commands failed", self.id, exc_info=error)
            self.abort()
            return
        out, action, _ = batch
        out += held                        # events raised meanwhile follow the replies
        if out:
            self._write(b"".join(out))
        if action is not None:
            self._start(action)
        else:
            self._drain()

    def _task_done(self, pending: Wait | Flush, task: asyncio.Task[Any]) -> None:
        self.task = None
        if self.closed or task.cancelled():
            return
        error = task.exception()
        self._complete(pending, None if error is not None else task.result(), error)

    def _complete(self, pending: Wait | Flush | AuthFailed, result: object,
                  error: BaseException | None) -> None:
        self.timer = None
        self.busy = False
        if self.closed or self.layer is None:
            return
        action = self.layer.complete(pending, result, error)
        if type(action) is bytes:
            if self.metrics is not None:
                self._observe(action)
            self._write(action)
            self._drain()
        else:
            self._start(action)

    def _observe(self, reply: bytes) -> None:
        """Count the command being served, answered with ``reply`` (with metrics on)."""
        tally = self.tally
        if tally is not None:
            # A tally exists only when metrics do.
            self.metrics.observe(tally, self._command, perf_counter() - self._started,  # type: ignore[union-attr]
                                 reply)

    def _flow_control(self) -> None:
        if self.closed or self.transport is None:
            return
        backed_up = bool(self.busy or self.write_paused or self.queue) and \
            self.parser.buffered > self.config.max_request
        if backed_up and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        elif not backed_up and self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    # --- output ------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        self._check_output()

    def buffered(self) -> int:
        """Unsent output: the transport's buffer and the events held back."""
        if self.closed or self.transport is None:
            return 0
        return self.transport.get_write_buffer_size() + self.held_bytes

    def _check_output(self) -> None:
        output = self.server.output
        if not output.total and not self.held_bytes and not self.closed and \
                not self.transport.get_write_buffer_size():  # type: ignore[union-attr]  # open: set
            return                          # the common case: everything was sent
        size = self.buffered()
        layer = self.layer
        verdict = output.note(self, size, time.monotonic(),
                              layer is not None and layer.subscriber)
        if verdict is not None:
            c = self.config
            if layer is not None and layer.subscriber:
                limit = c.output_limit if verdict == "hard" else c.output_soft_limit
            else:
                limit = c.normal_output_limit if verdict == "hard" else \
                    c.normal_output_soft_limit
            output.forget(self)
            self.drop(verdict, limit)
        elif output.over():
            self.server.enforce_memory_limit()

    def drop(self, reason: str, limit: int) -> None:
        """Close the connection for holding too much unsent output."""
        if self.closed or self.closing:
            return
        self.server.stats.dropped[reason] += 1
        log.warning("connection %d (%s) dropped: %d bytes of output not read (%s limit %d)",
                    self.id, self.peer, self.buffered(), reason, limit)
        self.abort()

    # --- events (numbered and kept by the session's link) ---------------------------------

    def push_frame(self, frame: bytes) -> None:
        """Write an event frame (held while a batch of engine calls runs)."""
        if self.closed or self.closing:
            return
        if self.held is not None:
            self.held.append(frame)
            self.held_bytes += len(frame)
            self._check_output()
        else:
            self._write(frame)


# --- running a server --------------------------------------------------------------------


def run(engine: Engine, *, host: str | None = None, port: int = 6380,
        unix: str | None = None, config: ServerConfig | None = None,
        allow_remote: bool = False, use_uvloop: bool = True,
        ready: Callable[[Server], None] | None = None,
        connection_class: type[Connection] | None = None,
        tls: ssl.SSLContext | None = None, allow_cleartext: bool = False,
        metrics: tuple[str, int] | None = None) -> None:
    """Serve ``engine`` until interrupted (SIGINT/SIGTERM). TCP on loopback by default;
    with ``unix`` only that socket, unless ``host`` is given as well; TCP over TLS with
    ``tls``. A non-loopback ``host`` is refused as :func:`exposure_error` says.
    ``metrics`` is the (host, port) of the Prometheus endpoint
    (:mod:`octopus.server.metrics`)."""
    config = config or ServerConfig()
    if host is None and unix is None:
        host = "127.0.0.1"
    refusal = exposure_error(
        host, password=config.password, tls=tls is not None,
        client_certs=tls is not None and tls.verify_mode == ssl.CERT_REQUIRED,
        allow_remote=allow_remote, allow_cleartext=allow_cleartext)
    if refusal is not None:
        raise OctopusError(refusal)
    _raise_fd_limit()

    async def main() -> None:
        import signal

        server = Server(engine, config, connection_class)
        try:
            if metrics is not None:         # first: it counts every connection's commands
                await server.start_metrics(*metrics)
            if unix is not None:
                await server.start_unix(unix)
            if host is not None:
                await server.start_tcp(host, port, tls)
            loop = asyncio.get_running_loop()
            stop = loop.create_future()
            server._stop = (loop, stop)
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, _resolve, stop)
            if ready is not None:
                ready(server)
            await stop
        finally:
            await server.close()

    loop_factory = None
    if use_uvloop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())


def _resolve(stop: asyncio.Future[None]) -> None:
    """Set ``stop``'s result, unless a stop was asked already."""
    if not stop.done():
        stop.set_result(None)


def _raise_fd_limit() -> None:
    """Thousands of clients need thousands of descriptors: lift the soft limit."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass

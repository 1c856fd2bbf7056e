"""``octopus serve``: the engine as a RESP service (the commands are in docs/server.md).

Theory of operation:

1. One asyncio loop thread serves every connection. Each connection owns one engine
   :class:`~octopus.engine.Session`, made when it connects and closed when it goes (EOF,
   reset, QUIT, a protocol error, an output-buffer overflow, or its process being
   killed), so its ephemeral records, triggers and subscriptions end with it and their
   ON_DEL triggers fire as for any delete.
2. Engine calls are short and never wait (the core only takes its lock and calls
   Prolog), so they run inline on the loop thread, in arrival order per connection.
   Commands that wait (``WAIT``, ``FLUSH``) become tasks; while one runs, that
   connection's later commands queue behind it, so replies keep request order.
3. Engine handlers run on the engine's dispatcher thread. The server's handlers only
   hand the event to the loop with ``call_soon_threadsafe`` and return: the dispatcher
   is never blocked by a slow socket.
4. Input is bounded before it is stored (see :mod:`octopus.server.resp`); replies are
   written in one ``write`` per batch of pipelined commands. When a client does not
   read its replies, the server stops reading its requests (backpressure). Pushed
   events cannot wait, so a connection whose unsent output exceeds ``output_limit``
   is dropped, like Redis's client-output-buffer-limit.
5. Nothing received is ever run as Prolog: text arguments are Octopus queries or
   records, parsed by the PLY grammar; the knowledge base is loaded only with
   ``--load`` at start-up.
6. Only the connection that installed a trigger or subscription may remove it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import os
import socket
import stat
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from octopus.engine import Engine, Session
from octopus.errors import EngineClosed, OctopusError
from octopus.events import Event, Mode, Subscription, Trigger

from .commands import OK, VERSION, Commands, _Quit
from .resp import ProtocolError, Push, RequestParser, encode, encode_error
from .wire import mode_text, record_tagged, record_text

__all__ = ["Server", "ServerConfig", "is_loopback"]

log = logging.getLogger("octopus.server")


@dataclass
class ServerConfig:
    """Limits and policies of one server (defaults in brackets)."""

    password: str | None = None          # --requirepass: AUTH needed before any command
    max_clients: int = 10000             # connections beyond are refused with an error
    output_limit: int = 32 << 20         # unsent bytes after which a connection is dropped
    max_args: int = 65536                # arguments in one command
    max_bulk: int = 1 << 20              # bytes in one argument
    max_request: int = 4 << 20           # bytes in one command
    max_inline: int = 64 << 10           # bytes in one inline command line
    max_pipeline: int = 1024             # parsed, unanswered commands per connection
    reply_cache: int = 4096              # GET replies kept while the revision is unchanged


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
        self.commands = 0
        self.protocol_errors = 0
        self.output_limit_disconnections = 0


class Server:
    """A RESP server over one :class:`Engine` (which the caller owns and closes)."""

    def __init__(self, engine: Engine, config: ServerConfig | None = None,
                 connection_class: type[Connection] | None = None) -> None:
        self.engine = engine
        # What a connection is: Connection, or a subclass (octopus.cluster.server's).
        self.connection_class = connection_class or Connection
        self.config = config or ServerConfig()
        self.connections: set[Connection] = set()
        self.stats = _Stats()
        self.ids = itertools.count(1)
        self.addresses: list[str] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._unix_paths: list[str] = []
        self._stop: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        # Placeholder kinds are read with a bound no tighter than the request's own; the
        # engine applies its query-length limit when it compiles the query.
        self.max_query_length = self.config.max_request
        # GET replies by (arguments, format), each with the revision it was read at. The
        # store changes only with a new revision, so a reply read at the current one is
        # what the engine would answer now (see ``Commands.cmd_get`` in commands.py).
        self.replies: dict[tuple[object, ...], tuple[int, bytes]] = {}

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 6380) -> int:
        """Listen on TCP; returns the port (useful with ``port=0``)."""
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: self.connection_class(self), host, port,
                                       reuse_address=True, backlog=1024)
        self._servers.append(srv)
        bound = srv.sockets[0].getsockname()[1]
        self.addresses.append(f"tcp://{host}:{bound}")
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
        srv = await loop.create_unix_server(lambda: self.connection_class(self), sock=sock,
                                            backlog=1024)
        self._servers.append(srv)
        self._unix_paths.append(path)
        self.addresses.append(f"unix://{path}")

    def stop_soon(self) -> None:
        """Ask a server started by :func:`run` to stop (from any thread)."""
        if self._stop is not None:
            loop, stop = self._stop
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))

    async def serve_forever(self) -> None:
        await asyncio.gather(*(s.serve_forever() for s in self._servers))

    async def close(self) -> None:
        """Stop listening and drop every connection (their sessions end)."""
        for s in self._servers:
            s.close()
        for c in list(self.connections):
            c.abort()
        for s in self._servers:
            with contextlib.suppress(Exception):
                await s.wait_closed()
        for p in self._unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(p)

    def info(self, section: str = "") -> str:
        s = self.stats
        sections = {
            "server": [("octopus_version", VERSION), ("process_id", os.getpid()),
                       ("listening", " ".join(self.addresses)),
                       ("uptime_in_seconds", int(time.time() - s.started))],
            "clients": [("connected_clients", len(self.connections)),
                        ("maxclients", self.config.max_clients)],
            "stats": [("total_connections_received", s.connections_received),
                      ("total_commands_processed", s.commands),
                      ("rejected_connections", s.rejected_connections),
                      ("protocol_errors", s.protocol_errors),
                      ("output_limit_disconnections", s.output_limit_disconnections)],
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


# --- one connection ----------------------------------------------------------------------


class Connection(Commands, asyncio.Protocol):
    """One client: a parser, a session, the triggers it installed, its output. Its
    commands are in :class:`~octopus.server.commands.Commands`."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config
        self.id = next(server.ids)
        self.name = ""
        self.proto = 2
        self.tagged = False                     # CLIENT FORMAT TAGGED (the octopus client)
        self.authed = server.config.password is None
        self.parser = RequestParser(max_args=self.config.max_args,
                                    max_bulk=self.config.max_bulk,
                                    max_request=self.config.max_request,
                                    max_inline=self.config.max_inline)
        if not self.authed:
            self.parser.set_limits(max_args=10, max_bulk=16384)
        self.queue: deque[list[bytes]] = deque()
        self.owned: dict[int, Trigger | Subscription] = {}
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[bytes] | None = None
        self.closed = False
        self.closing = False                    # no more commands: QUIT or protocol error
        self.write_paused = False
        self.read_paused = False

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.loop = asyncio.get_running_loop()
        server = self.server
        server.stats.connections_received += 1
        if len(server.connections) >= self.config.max_clients:
            server.stats.rejected_connections += 1
            transport.write(encode_error("ERR", "max number of clients reached"))
            transport.close()
            self.closed = True
            return
        transport.set_write_buffer_limits(high=256 << 10)
        try:
            self.session = server.engine.session()
        except EngineClosed:
            transport.write(encode_error("EngineClosed", "the server is shutting down"))
            transport.close()
            self.closed = True
            return
        server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self.task is not None:
            self.task.cancel()
        self.queue.clear()
        self._end_session()

    def _end_session(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            try:
                session.close()
            except Exception:
                log.exception("closing the session of connection %d", self.id)
        self.owned.clear()

    def data_received(self, data: bytes) -> None:
        if self.closed or self.closing:
            return
        self.parser.feed(data)
        self._drain()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.closed:
            self._drain()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # --- the command loop ------------------------------------------------------------------

    def _drain(self) -> None:
        """Run queued commands in order until one has to wait, writes back up, or none
        are left; write their replies in one go."""
        out: list[bytes] = []
        size = 0
        queue = self.queue
        try:
            while not (self.task or self.write_paused or self.closing):
                if not queue:
                    commands = self.parser.commands(self.config.max_pipeline)
                    if not commands:
                        break
                    queue.extend(commands)
                args = queue.popleft()
                reply = self._execute(args)
                if type(reply) is not bytes:
                    self.task = self.loop.create_task(reply)  # type: ignore[union-attr,arg-type]
                    self.task.add_done_callback(self._task_done)
                    break
                out.append(reply)
                size += len(reply)
                if size > 65536:
                    self.transport.write(b"".join(out))  # type: ignore[union-attr]
                    out.clear()
                    size = 0
        except ProtocolError as e:
            self.server.stats.protocol_errors += 1
            out.append(encode_error("ERR", f"Protocol error: {e}"))
            self.closing = True
        except _Quit:
            out.append(OK)
            self.closing = True
        if out and not self.closed:
            self.transport.write(b"".join(out))  # type: ignore[union-attr]
        if self.closing:
            self.transport.close()  # type: ignore[union-attr]
            return
        self._flow_control()

    def _flow_control(self) -> None:
        backed_up = bool(self.task or self.write_paused or self.queue) and \
            self.parser.buffered > self.config.max_request
        if backed_up and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        elif not backed_up and self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def _task_done(self, task: asyncio.Task[bytes]) -> None:
        self.task = None
        if self.closed or task.cancelled():
            return
        exc = task.exception()
        reply = self._error_reply(exc) if exc is not None else task.result()
        self.transport.write(reply)  # type: ignore[union-attr]
        self._drain()

    # --- events (handlers run on the engine's dispatcher thread) -------------------------

    def _on_trigger_event(self, event: Event) -> None:
        with contextlib.suppress(RuntimeError):   # the loop has closed: nobody to tell
            self.loop.call_soon_threadsafe(self._push, b"trigger", event)  # type: ignore[union-attr]

    def _on_message_event(self, event: Event) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._push, b"message", event)  # type: ignore[union-attr]

    def _push(self, kind: bytes, event: Event) -> None:
        if event.mode & Mode.REMOVED:
            self.owned.pop(event.trigger_id, None)
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        record: object = None
        if event.record is not None:
            record = record_tagged(event.record) if self.tagged else record_text(event.record)
        frame = Push([kind, event.trigger_id, mode_text(event.mode), event.revision, record])
        self.transport.write(encode(frame, self.proto))
        if self.transport.get_write_buffer_size() > self.config.output_limit:
            self.server.stats.output_limit_disconnections += 1
            log.warning("connection %d dropped: %d bytes of output not read (limit %d)",
                        self.id, self.transport.get_write_buffer_size(),
                        self.config.output_limit)
            self.transport.abort()


# --- running a server --------------------------------------------------------------------


def run(engine: Engine, *, host: str | None = None, port: int = 6380,
        unix: str | None = None, config: ServerConfig | None = None,
        allow_remote: bool = False, use_uvloop: bool = True,
        ready: Callable[[Server], None] | None = None,
        connection_class: type[Connection] | None = None) -> None:
    """Serve ``engine`` until interrupted (SIGINT/SIGTERM). TCP on loopback by default;
    with ``unix`` only that socket, unless ``host`` is given as well. A non-loopback
    ``host`` needs ``allow_remote`` and a password."""
    config = config or ServerConfig()
    if host is None and unix is None:
        host = "127.0.0.1"
    if host is not None and not is_loopback(host):
        if not allow_remote:
            raise OctopusError(f"refusing to listen on non-loopback address {host!r} "
                               "without --allow-remote")
        if not config.password:
            raise OctopusError("listening on a non-loopback address needs --requirepass")
    _raise_fd_limit()

    async def main() -> None:
        import signal

        server = Server(engine, config, connection_class)
        if unix is not None:
            await server.start_unix(unix)
        if host is not None:
            await server.start_tcp(host, port)
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        server._stop = (loop, stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        if ready is not None:
            ready(server)
        try:
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

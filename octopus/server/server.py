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
import hmac
import ipaddress
import itertools
import logging
import os
import socket
import stat
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from octopus.engine import Engine, Session
from octopus.errors import (
    EngineClosed,
    NotFound,
    OctopusError,
    TriggerNotFound,
    WaitTimeout,
)
from octopus.events import Event, Mode, Subscription, Trigger
from octopus.record import Atom, Record

from .params import FLOAT_RE, typed_params
from .params import text as _text
from .resp import ProtocolError, Push, RequestParser, encode, encode_error

__all__ = ["Server", "ServerConfig", "is_loopback", "mode_text", "parse_mode"]

log = logging.getLogger("octopus.server")

VERSION = "0.1.0"
OK = b"+OK\r\n"



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


# --- modes, parameters, records on the wire -----------------------------------------------

_MODE_NAMES = ("ON_SET", "ON_DEL", "REMOVED", "ON_PUBLISH")


@lru_cache(maxsize=64)
def mode_text(mode: Mode) -> bytes:
    """``Mode.ON_DEL | Mode.REMOVED`` -> ``b"ON_DEL|REMOVED"``."""
    return "|".join(n for n in _MODE_NAMES if mode & Mode[n]).encode()


def parse_mode(text: bytes | str) -> Mode:
    """The inverse of :func:`mode_text`."""
    if isinstance(text, bytes):
        text = text.decode()
    mode = Mode(0)
    for name in text.split("|"):
        mode |= Mode[name]
    return mode


def tag_value(value: object) -> bytes:
    """A typed attribute value in the TAGGED record format (docs/server.md)."""
    if value is True:
        return b"b1"
    if value is False:
        return b"b0"
    if isinstance(value, Atom):
        return b"a" + str.__str__(value).encode()
    if isinstance(value, str):
        return b"s" + value.encode()
    if isinstance(value, int):
        return b"i%d" % value
    return b"f" + repr(value).encode()


def record_text(record: Record) -> bytes:
    return str(record).encode()


def record_tagged(record: Record) -> list[object]:
    out: list[object] = [record.name.encode(), record.revision]
    for k, v in record.attributes.items():
        out.append(k.encode())
        out.append(tag_value(v))
    return out


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

    def __init__(self, engine: Engine, config: ServerConfig | None = None) -> None:
        self.engine = engine
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
        # what the engine would answer now (see ``Connection.cmd_get``).
        self.replies: dict[tuple[object, ...], tuple[int, bytes]] = {}

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 6380) -> int:
        """Listen on TCP; returns the port (useful with ``port=0``)."""
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: Connection(self), host, port,
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
        srv = await loop.create_unix_server(lambda: Connection(self), sock=sock, backlog=1024)
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


Reply = bytes | Coroutine[Any, Any, bytes]


class _Quit(Exception):
    """Raised by QUIT after its reply: close the connection."""


class Connection(asyncio.Protocol):
    """One client: a parser, a session, the triggers it installed, its output."""

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

    def _execute(self, args: list[bytes]) -> Reply:
        self.server.stats.commands += 1
        name = args[0].upper()
        handler = _COMMANDS.get(name)
        if handler is None:
            return encode_error("ERR", f"unknown command '{_printable(args[0])}'")
        if not self.authed and name not in _BEFORE_AUTH:
            return encode_error("NOAUTH", "Authentication required.")
        try:
            return handler(self, args)
        except (ProtocolError, _Quit):
            raise
        except Exception as e:
            return self._error_reply(e)

    def _error_reply(self, exc: BaseException) -> bytes:
        if isinstance(exc, OctopusError):
            return encode_error(_error_code(exc), str(exc))
        if isinstance(exc, _ArgumentError):
            return encode_error("ERR", str(exc))
        log.exception("internal error on connection %d", self.id, exc_info=exc)
        return encode_error("ERR", f"internal error: {type(exc).__name__}: {exc}")

    # --- helpers ----------------------------------------------------------------------------

    def _session(self) -> Session:
        if self.session is None:
            raise EngineClosed("the connection's session is closed")
        return self.session

    def _query(self, args: list[bytes], i: int = 1) -> tuple[str, tuple[object, ...], list[bytes]]:
        """The query text at ``args[i]``, its parameters, and the remaining arguments."""
        if len(args) <= i:
            raise _ArgumentError(f"wrong number of arguments for '{_printable(args[0])}' "
                                 "command")
        raw = args[i]
        query = _text(raw)
        if b"%" not in raw:
            return query, (), args[i + 1:]
        params, rest = typed_params(query, args[i + 1:], self.server.max_query_length)
        return query, params, rest

    def _record(self, record: Record) -> bytes:
        if self.tagged:
            return encode(record_tagged(record), self.proto)
        text = str(record).encode()
        return b"$%d\r\n%s\r\n" % (len(text), text)

    def _trigger_options(self, rest: list[bytes]) -> Trigger | None:
        if not rest:
            return None
        if len(rest) != 4 or rest[0].upper() != b"TRIGGER":
            raise _ArgumentError(f"unexpected arguments {_printable(b' '.join(rest))!r}; "
                                 "expected TRIGGER SET|DEL|SETDEL ONCE|PERSIST "
                                 "ALWAYS|FOUND|MISSING")
        on = _EVENTS.get(rest[1].upper())
        persist = {b"ONCE": False, b"PERSIST": True}.get(rest[2].upper())
        install_if = {b"ALWAYS": "always", b"FOUND": "found",
                      b"MISSING": "missing"}.get(rest[3].upper())
        if on is None or persist is None or install_if is None:
            raise _ArgumentError("TRIGGER takes SET|DEL|SETDEL ONCE|PERSIST "
                                 "ALWAYS|FOUND|MISSING")
        return Trigger(self._on_trigger_event, on=on, persist=persist,
                       install_if=install_if)  # type: ignore[arg-type]

    def _with_trigger(self, trigger: Trigger | None, call: Callable[[Trigger | None], bytes]
                      ) -> bytes:
        """Run ``call``; with a trigger, reply ``[trigger id or nil, reply or error]``."""
        if trigger is None:
            return call(None)
        try:
            reply = call(trigger)
        except OctopusError as e:
            reply = encode_error(_error_code(e), str(e))
        if trigger.id is None:
            return b"*2\r\n" + (b"_\r\n" if self.proto >= 3 else b"$-1\r\n") + reply
        self.owned[trigger.id] = trigger
        return b"*2\r\n:%d\r\n%s" % (trigger.id, reply)

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

    # --- commands: protocol -------------------------------------------------------------------

    def cmd_ping(self, args: list[bytes]) -> bytes:
        if len(args) == 1:
            return b"+PONG\r\n"
        _arity(args, 2, 2)
        return encode(args[1], self.proto)

    def cmd_echo(self, args: list[bytes]) -> bytes:
        _arity(args, 2, 2)
        return encode(args[1], self.proto)

    def cmd_quit(self, args: list[bytes]) -> bytes:
        self._end_session()                # its records are gone before the reply
        raise _Quit

    def _auth(self, password: bytes) -> bytes | None:
        want = self.config.password
        if want is None:
            return encode_error("ERR", "AUTH called without any password configured")
        if not hmac.compare_digest(password, want.encode()):
            return encode_error("WRONGPASS", "invalid username-password pair")
        self.authed = True
        self.parser.set_limits(max_args=self.config.max_args, max_bulk=self.config.max_bulk)
        return None

    def cmd_auth(self, args: list[bytes]) -> bytes:
        _arity(args, 2, 3)
        return self._auth(args[-1]) or OK

    def cmd_hello(self, args: list[bytes]) -> bytes:
        proto = self.proto
        i = 1
        if len(args) > 1:
            if not args[1].isdigit() or args[1] not in (b"2", b"3"):
                return encode_error("NOPROTO", "unsupported protocol version")
            proto = int(args[1])
            i = 2
        while i < len(args):
            opt = args[i].upper()
            if opt == b"AUTH" and i + 2 < len(args):
                error = self._auth(args[i + 2])
                if error is not None:
                    return error
                i += 3
            elif opt == b"SETNAME" and i + 1 < len(args):
                self.name = _text(args[i + 1], "the client name")
                i += 2
            else:
                raise _ArgumentError(f"syntax error in HELLO option {_printable(args[i])!r}")
        if not self.authed:
            return encode_error("NOAUTH", "HELLO must be called with AUTH when a password "
                                "is required")
        self.proto = proto
        return encode({"server": "octopus", "version": VERSION, "proto": proto,
                       "id": self.id, "mode": "standalone", "role": "master",
                       "modules": []}, proto)

    def cmd_client(self, args: list[bytes]) -> bytes:
        _arity(args, 2, 1 << 30)
        sub = args[1].upper()
        if sub == b"SETNAME":
            _arity(args, 3, 3)
            self.name = _text(args[2], "the client name")
            return OK
        if sub == b"GETNAME":
            return encode(self.name or None, self.proto)
        if sub == b"ID":
            return b":%d\r\n" % self.id
        if sub == b"SETINFO":
            return OK
        if sub == b"FORMAT":
            _arity(args, 3, 3)
            fmt = args[2].upper()
            if fmt not in (b"TEXT", b"TAGGED"):
                raise _ArgumentError("CLIENT FORMAT takes TEXT or TAGGED")
            self.tagged = fmt == b"TAGGED"
            return OK
        raise _ArgumentError(f"unknown CLIENT subcommand '{_printable(args[1])}'")

    def cmd_select(self, args: list[bytes]) -> bytes:
        _arity(args, 2, 2)
        if args[1] != b"0":
            return encode_error("ERR", "octopus has one database: only SELECT 0")
        return OK

    def cmd_command(self, args: list[bytes]) -> bytes:
        return b"*0\r\n"                         # redis-cli asks for command docs

    def cmd_config(self, args: list[bytes]) -> bytes:
        _arity(args, 2, 1 << 30)
        if args[1].upper() != b"GET":
            return encode_error("ERR", "only CONFIG GET is supported")
        return encode({}, self.proto)            # redis-benchmark asks; nothing to tell

    def cmd_info(self, args: list[bytes]) -> bytes:
        _arity(args, 1, 2)
        section = _text(args[1], "the section") if len(args) > 1 else ""
        return encode(self.server.info(section).encode(), self.proto)

    def cmd_revision(self, args: list[bytes]) -> bytes:
        _arity(args, 1, 1)
        return b":%d\r\n" % self.server.engine.revision

    # --- commands: the store ---------------------------------------------------------------

    def cmd_get(self, args: list[bytes]) -> bytes:
        cache = self.server.replies if self.config.reply_cache else None
        engine = self.server.engine
        if cache is not None:
            key = (self.tagged, *args[1:])
            hit = cache.get(key)
            if hit is not None and hit[0] == engine.revision:
                self._session()
                return hit[1]
        q, params, rest = self._query(args)
        session = self._session()
        if not rest:
            # A reply may be kept only if no change completed while it was read: a change
            # bumps the revision before it releases the engine lock, so an unchanged
            # revision around the call means the reply is the state at that revision.
            before = engine.revision
            try:
                reply = self._record(session.get(q, *params))
            except NotFound as e:
                reply = encode_error("NotFound", str(e))
            if cache is not None and engine.revision == before:
                if len(cache) >= self.config.reply_cache:
                    cache.clear()
                cache[key] = (before, reply)
            return reply
        return self._with_trigger(self._trigger_options(rest),
                                  lambda t: self._record(session.get(q, *params, trigger=t)))

    def cmd_names(self, args: list[bytes]) -> bytes:
        q, params, rest = self._query(args)
        session = self._session()
        return self._with_trigger(
            self._trigger_options(rest),
            lambda t: encode(session.get_names(q, *params, trigger=t), self.proto))

    def cmd_getall(self, args: list[bytes]) -> bytes:
        q, params, rest = self._query(args)
        if rest:
            raise _ArgumentError("GETALL takes no options")
        records = self._session().get_all(q, *params)
        return b"*%d\r\n" % len(records) + b"".join(self._record(r) for r in records)

    def cmd_exists(self, args: list[bytes]) -> bytes:
        q, params, rest = self._query(args)
        session = self._session()
        return self._with_trigger(
            self._trigger_options(rest),
            lambda t: b":1\r\n" if session.exists(q, *params, trigger=t) else b":0\r\n")

    def cmd_set(self, args: list[bytes]) -> bytes:
        q, params, rest = self._query(args)
        flags = {"sequential": False, "ephemeral": False}
        while rest and rest[0].upper() in (b"SEQUENTIAL", b"EPHEMERAL"):
            flags[rest.pop(0).decode().lower()] = True
        session = self._session()
        return self._with_trigger(
            self._trigger_options(rest),
            lambda t: self._record(session.set(q, *params, trigger=t, **flags)))

    def cmd_del(self, args: list[bytes]) -> bytes:
        q, params, rest = self._query(args)
        session = self._session()
        return self._with_trigger(
            self._trigger_options(rest),
            lambda t: self._record(session.delete(q, *params, trigger=t)))

    def cmd_wait(self, args: list[bytes]) -> Reply:
        q, params, rest = self._query(args)
        if len(rest) > 1:
            raise _ArgumentError("WAIT takes a query, its parameters and a timeout")
        timeout: float | None = None
        if rest:
            if not FLOAT_RE.match(rest[0]):
                raise _ArgumentError(f"invalid timeout {_printable(rest[0])!r}")
            timeout = float(rest[0])
            if timeout < 0:
                raise _ArgumentError("the timeout must not be negative")
        session = self._session()
        loop = self.loop
        assert loop is not None
        arrived: asyncio.Future[Event] = loop.create_future()

        def settle(event: Event) -> None:
            if not arrived.done():
                arrived.set_result(event)

        def handler(event: Event) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, event)

        trigger = Trigger(handler, on=Mode.ON_SET, install_if="missing")
        try:
            return self._record(session.get(q, *params, trigger=trigger))
        except NotFound:
            pass

        async def wait() -> bytes:
            try:
                event = await asyncio.wait_for(arrived, timeout)
            except TimeoutError:
                raise WaitTimeout(f"no record matching {q!r} within {timeout} s") from None
            finally:
                with contextlib.suppress(TriggerNotFound, EngineClosed):
                    session.remove_trigger(trigger)
            if event.record is None:
                raise EngineClosed("closed while waiting")
            return self._record(event.record)

        return wait()

    def cmd_watch(self, args: list[bytes]) -> bytes:
        q, params, rest = self._query(args)
        on = Mode(0)
        persist = True
        existing = False
        for opt in rest:
            word = opt.upper()
            if word == b"SET":
                on |= Mode.ON_SET
            elif word == b"DEL":
                on |= Mode.ON_DEL
            elif word in (b"PERSIST", b"ONCE"):
                persist = word == b"PERSIST"
            elif word == b"EXISTING":
                existing = True
            else:
                raise _ArgumentError(f"unknown WATCH option {_printable(opt)!r}; "
                                     "expected SET, DEL, PERSIST, ONCE or EXISTING")
        on = on or (Mode.ON_SET | Mode.ON_DEL)
        session = self._session()
        if existing:
            if not persist:
                raise _ArgumentError("WATCH ... EXISTING is always persistent")
            trigger = session.watch_existing(q, self._on_trigger_event, *params, on=on)
        else:
            trigger = session.watch(q, self._on_trigger_event, *params, on=on, persist=persist)
        assert trigger.id is not None
        self.owned[trigger.id] = trigger
        return b":%d\r\n" % trigger.id

    def _owned_id(self, args: list[bytes], kind: type) -> int:
        _arity(args, 2, 2)
        if not args[1].isdigit() or len(args[1]) > 19:
            raise _ArgumentError(f"invalid id {_printable(args[1])!r}")
        qid = int(args[1])
        if not isinstance(self.owned.get(qid), kind):
            what = "trigger" if kind is Trigger else "subscription"
            raise TriggerNotFound(f"no installed {what} {qid} on this connection")
        return qid

    def cmd_unwatch(self, args: list[bytes]) -> bytes:
        self._session().remove_trigger(self._owned_id(args, Trigger))
        return OK

    def cmd_subscribe(self, args: list[bytes]) -> bytes:
        q, params, rest = self._query(args)
        if rest:
            raise _ArgumentError("SUBSCRIBE takes one query and its parameters")
        sub = self._session().subscribe(q, self._on_message_event, *params)
        self.owned[sub.id] = sub
        return b":%d\r\n" % sub.id

    def cmd_unsubscribe(self, args: list[bytes]) -> bytes:
        self._session().unsubscribe(self._owned_id(args, Subscription))
        return OK

    def cmd_publish(self, args: list[bytes]) -> bytes:
        q, params, rest = self._query(args)
        if rest:
            raise _ArgumentError("PUBLISH takes one message and its parameters")
        return b":%d\r\n" % self._session().publish(q, *params)

    def cmd_flush(self, args: list[bytes]) -> Reply:
        _arity(args, 1, 1)
        engine = self.server.engine
        loop = self.loop
        assert loop is not None

        async def flush() -> bytes:
            # Every event queued before now reaches its handler, which queues its push on
            # this loop before the executor's result does: the pushes go out first.
            await loop.run_in_executor(None, engine.flush)
            return OK

        return flush()


class _ArgumentError(Exception):
    """A command's arguments do not fit it (a generic ``ERR`` reply)."""


def _arity(args: list[bytes], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        raise _ArgumentError(f"wrong number of arguments for '{_printable(args[0])}' command")


def _printable(raw: bytes) -> str:
    return raw[:60].decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")


def _error_code(exc: BaseException) -> str:
    return type(exc).__name__


_EVENTS = {b"SET": Mode.ON_SET, b"DEL": Mode.ON_DEL, b"SETDEL": Mode.ON_SET | Mode.ON_DEL}

_COMMANDS: dict[bytes, Callable[[Connection, list[bytes]], Reply]] = {
    name.upper().encode(): getattr(Connection, f"cmd_{name}")
    for name in ("ping", "echo", "quit", "auth", "hello", "client", "select", "command",
                 "config", "info", "revision", "get", "names", "getall", "exists", "set",
                 "del", "wait", "watch", "unwatch", "subscribe", "unsubscribe", "publish",
                 "flush")
}
_BEFORE_AUTH = frozenset({b"AUTH", b"HELLO", b"QUIT"})


# --- running a server --------------------------------------------------------------------


def run(engine: Engine, *, host: str | None = None, port: int = 6380,
        unix: str | None = None, config: ServerConfig | None = None,
        allow_remote: bool = False, use_uvloop: bool = True,
        ready: Callable[[Server], None] | None = None) -> None:
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

        server = Server(engine, config)
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

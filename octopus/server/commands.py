"""The commands of ``octopus serve`` (listed in docs/server.md) as a sans-I/O layer: one
:class:`CommandLayer` per connection turns each parsed command into an *action* and
never touches a socket, an event loop, a thread or a clock (the design of h11).

Actions (what :meth:`CommandLayer.handle` returns):

* ``bytes`` — the reply, ready to write.
* :class:`Call` — an engine call (parsing the query included) to run where the I/O
  layer likes, blocking: ``call.run()``; its result or exception goes back through
  :meth:`CommandLayer.complete`, which encodes it (or asks for the next action).
* :class:`Wait` — ``WAIT``: the I/O layer waits for a record (one implementation for
  everyone: :meth:`octopus.aio.AsyncSession.wait_for`) and completes it with the record
  or the exception.
* :class:`Flush` — ``FLUSH``: wait until every event queued so far has been pushed.
* :class:`AuthFailed` — a wrong password: its reply must be held for a while (the
  server's policy), and completed.
* :class:`Close` — write ``reply`` (if any) and close the connection.
* :class:`SessionOp` — ``SESSION``: make the session resumable, or resume another
  one; the I/O layer owns the table of sessions (octopus.server.sessions) and
  completes it with the reply.

The layer is a state machine in the way h11's connection is: after an action other
than ``bytes``/``Close`` it is *busy* until that action is completed, and handing it a
command meanwhile is a :class:`LayerError`. So commands run strictly in request order,
whichever thread runs them: the I/O layer may handle a whole pipelined batch on an
engine-call thread, as long as one thread at a time drives the layer.

:meth:`CommandLayer.event_frame` (encoding a pushed event) is the exception: it may be
called from the event loop at any time; it only reads the connection's reply format and
removes a finished trigger from :attr:`CommandLayer.owned` (single dict operations).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from octopus.bulk import split_text
from octopus.engine import Engine, Session
from octopus.errors import LimitExceeded, NotFound, OctopusError, QueryError, TriggerNotFound
from octopus.events import Event, Mode, Subscription, Trigger
from octopus.explain import DEFAULT_LIMIT, MAX_LIMIT
from octopus.query.compile import compile_record
from octopus.query.fast import parse_name
from octopus.record import Record
from octopus.rules import RowEvent, RuleWatch

from .cache import Key, ReplyCache
from .config import ServerConfig
from .params import FLOAT_RE, typed_params
from .params import text as _text
from .resp import Push, Simple, encode, encode_error
from .wire import (
    error_line,
    explanation_reply,
    mode_text,
    record_tagged,
    record_text,
    row_reply,
    untag_value,
)

__all__ = [
    "MAX_LOAD_BYTES",
    "MAX_LOAD_LINES",
    "MAX_RULE_WATCHES",
    "OK",
    "VERSION",
    "Action",
    "AuthFailed",
    "Call",
    "Close",
    "CommandLayer",
    "Context",
    "Flush",
    "LayerError",
    "SessionOp",
    "Wait",
    "parser_limits",
]

log = logging.getLogger("octopus.server")

VERSION = "0.1.0"
OK = b"+OK\r\n"

#: derived watches (RWATCH) one connection may have installed at once: each costs work
#: on every write that can change its relation
MAX_RULE_WATCHES = 256
QUEUED = b"+QUEUED\r\n"

# A transaction (MULTI ... EXEC) queues at most this many commands and bytes of
# arguments; past either, the command is refused and EXEC discards the transaction.
MAX_QUEUED = 10_000
MAX_QUEUED_BYTES = 16 << 20
# A read-only transaction answers every read at one revision: it runs again when a change
# committed while it ran, at most this many times.
SNAPSHOT_ATTEMPTS = 50

# LOAD: one request is one all-or-nothing batch, parsed in memory before it is stored
# (~1 KB a record on its way through): at most this many bytes of text and lines.
MAX_LOAD_BYTES = 16 << 20
MAX_LOAD_LINES = 100_000

# A GET longer than this is not looked up in the reply cache: hashing its key would be
# work for the event loop, and such requests are not the repeated ones the cache is for.
CACHED_REQUEST_BYTES = 8192


# --- actions -------------------------------------------------------------------------------


class Call:
    """Run ``run()`` (a blocking engine call; it may raise), then hand the outcome to
    :meth:`CommandLayer.complete`.

    ``name`` is set on a plain ``GET name`` (a bare record name, no options): then
    ``run()`` returns ``(record or None, started, name)``, ``started`` the reply
    cache's epoch before the read (:meth:`ReplyCache.begin`, None without a cache),
    and the I/O layer may instead read that record together with other connections'
    GETs in one store call (:meth:`octopus.core.Core.get_named`) and complete the call
    with the same triple, ``started`` taken before that store call."""

    __slots__ = ("done", "name", "run")

    def __init__(self, run: Callable[[], Any], done: Callable[[Any], Action],
                 name: str | None = None) -> None:
        self.run = run
        self.done = done
        self.name = name

    def __repr__(self) -> str:
        return f"<Call {getattr(self.run, '__qualname__', self.run)}>"


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait for the first record matching ``query`` (now or later), up to ``timeout``
    seconds (None: forever); complete with the record or the exception."""

    query: str
    params: tuple[object, ...]
    timeout: float | None


@dataclass(frozen=True, slots=True)
class Flush:
    """Wait until every event queued so far has been pushed; complete with None."""


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """A wrong password: hold ``reply`` (the server decides how long), then complete."""

    reply: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Write ``reply`` and close the connection. ``warning``: why, for the log (a
    suspected attack), or empty."""

    reply: bytes
    warning: str = ""


@dataclass(frozen=True, slots=True)
class SessionOp:
    """``SESSION``: grant resumption (``resume`` None: ``timeout`` asked, None for the
    server's default), or resume session ``resume`` = (id, secret, events received)."""

    timeout: float | None = None
    resume: tuple[int, bytes, int] | None = None


Action = bytes | Call | Wait | Flush | AuthFailed | Close | SessionOp
Pending = Call | Wait | Flush | AuthFailed | SessionOp
Handler = Callable[[Any, list[bytes]], Action]


class LayerError(RuntimeError):
    """The I/O layer broke the protocol of :class:`CommandLayer` (a bug, not input)."""


class Context(Protocol):
    """What the command layer needs from its server."""

    config: ServerConfig
    engine: Engine
    cache: ReplyCache | None
    max_query_length: int

    def info(self, section: str) -> str: ...


# --- the layer -----------------------------------------------------------------------------


class CommandLayer:
    """The commands of one connection, without I/O (see the module docstring).

    ``on_trigger`` and ``on_message`` become the handlers of the triggers and
    subscriptions this connection installs: they run on the engine's dispatcher thread
    and must only hand the event over (to :meth:`event_frame` on the I/O side).

    Each ``cmd_name`` method is the command ``NAME``; a subclass adds commands by
    defining more (octopus.cluster.server does).
    """

    COMMANDS: ClassVar[dict[bytes, Handler]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.COMMANDS = _command_table(cls)

    def __init__(self, ctx: Context, session: Session, *, conn_id: int,
                 on_trigger: Callable[[Event | RowEvent], None],
                 on_message: Callable[[Event], None]) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.session = session
        self.id = conn_id
        self.name = ""
        self.proto = 2
        self.tagged = False                     # CLIENT FORMAT TAGGED (the octopus client)
        # Redis's reply conventions (GET of nothing is nil, SET answers OK, DEL a count,
        # pub/sub frames as Redis sends them); the octopus client turns them off.
        self.redis = True
        self.mode = 1                           # (tagged, redis) as the reply cache's key
        # Subscriptions made with Redis's conventions, by id: how their messages look.
        self.channels: dict[int, _Channel] = {}
        self._channel_ids: dict[tuple[bytes, ...], int] = {}
        self._active_channels = 0
        # MULTI ... EXEC: the queued commands (None outside a transaction).
        self._queue: list[list[bytes]] | None = None
        self._queued_bytes = 0
        self._queue_error = False
        self.authed = ctx.config.password is None
        self.commands = 0                       # handled so far (INFO sums them)
        self.owned: dict[int, Trigger | Subscription] = {}
        self.rule_watches: dict[int, RuleWatch] = {}    # RWATCH: ids of their own
        self.session_closed = False
        self._on_trigger = on_trigger
        self._on_message = on_message
        self._pending: Pending | None = None
        self._closed = False

    # --- the protocol of the layer -----------------------------------------------------------

    @property
    def busy(self) -> bool:
        """An action is outstanding: complete it before handing the next command."""
        return self._pending is not None

    @property
    def subscriber(self) -> bool:
        """Events may be pushed to this connection (its output-limit class)."""
        return bool(self.owned) or bool(self.rule_watches)

    @property
    def limits(self) -> tuple[int, int, int]:
        """(max_args, max_bulk, max_inline) for the request parser, which depend on
        whether the connection has authenticated."""
        return parser_limits(self.config, self.authed)

    def handle(self, args: list[bytes]) -> Action:
        """The action for one parsed command (a non-empty list of arguments)."""
        if self._pending is not None:
            raise LayerError(f"a command arrived while {self._pending!r} is outstanding")
        if self._closed:
            raise LayerError("a command arrived after the connection was closed")
        self.commands += 1
        name = args[0].upper()
        handler = self.COMMANDS.get(name)
        if handler is None:
            if name in _CROSS_PROTOCOL:
                self._closed = True
                return Close(b"", f"a {_printable(args[0])!r} command, as in an HTTP "
                             "request, was sent to the RESP port; connection closed")
            if self._queue is not None:
                self._queue_error = True        # as Redis: EXEC will refuse to run
            return encode_error("ERR", f"unknown command '{_printable(args[0])}'")
        if not self.authed and name not in _BEFORE_AUTH:
            return encode_error("NOAUTH", "Authentication required.")
        if self._queue is not None and name not in _NOT_QUEUED:
            return self._enqueue(name, args)
        try:
            action = handler(self, args)
        except Exception as e:
            return self._error_reply(e)
        return action if type(action) is bytes else self._track(action)

    def complete(self, pending: Pending, result: Any = None,
                 error: BaseException | None = None) -> Action:
        """The outcome of the outstanding action: its result, or the exception it
        raised. Returns the next action (usually the reply)."""
        if pending is not self._pending:
            raise LayerError(f"completing {pending!r}, but {self._pending!r} is outstanding")
        self._pending = None
        try:
            if error is not None:
                return self._error_reply(error)
            if type(pending) is Call:
                return self._track(pending.done(result))
            if type(pending) is Wait:
                return self._record(result)
            if type(pending) is AuthFailed:
                return pending.reply
            if type(pending) is SessionOp:
                return result  # type: ignore[no-any-return]  # SESSION's reply, made on the loop
            return OK                               # Flush
        except Exception as e:
            return self._error_reply(e)

    def event_frame(self, kind: bytes, event: Event | RowEvent) -> bytes:
        """A pushed event (``kind`` ``b"trigger"`` or ``b"message"``), encoded for this
        connection; forgets the trigger or subscription after its last event. A
        derived watch's :class:`~octopus.RowEvent` (handed over as a trigger's event)
        is a ``row`` push."""
        if type(event) is RowEvent:
            if event.mode & Mode.REMOVED:
                self.rule_watches.pop(event.trigger_id, None)
            return encode(Push([b"row", event.trigger_id, mode_text(event.mode),
                                event.revision,
                                row_reply(event.names, event.row, self.tagged)]), self.proto)
        if self.channels:
            channel = self.channels.get(event.trigger_id)
            if channel is not None:
                return self._channel_frame(channel, event)
        if event.mode & Mode.REMOVED:
            self.owned.pop(event.trigger_id, None)
        record: object = None
        if event.record is not None:
            record = record_tagged(event.record) if self.tagged else record_text(event.record)
        frame = Push([kind, event.trigger_id, mode_text(event.mode), event.revision, record])
        return encode(frame, self.proto)

    def adopt(self, previous: CommandLayer) -> None:
        """Carry ``previous``'s session from now on (``SESSION RESUME``): its session,
        its triggers, subscriptions and derived watches, its handlers. This layer's own
        session must be closed by the caller."""
        self.session = previous.session
        self.owned = previous.owned
        self.rule_watches = previous.rule_watches
        self._on_trigger = previous._on_trigger
        self._on_message = previous._on_message
        previous.session_closed = True      # the old connection must not close it

    def close_session(self) -> None:
        """End the session (blocking: an engine call). Idempotent; never raises."""
        if self.session_closed:
            return
        self.session_closed = True
        try:
            self.session.close()
        except Exception:
            log.exception("closing the session of connection %d", self.id)
        self.owned.clear()
        self.rule_watches.clear()
        self.channels.clear()
        self._channel_ids.clear()
        self._active_channels = 0

    def session_name(self) -> str:
        """The name explanations (WHY) show for this connection's session."""
        return (f"connection {self.id}" + (f" ({self.name})" if self.name else ""))[:200]

    def _renamed(self, reply: bytes) -> Action:
        """Name the session after the client (an engine call), then ``reply``."""
        session, name = self.session, self.session_name()
        return Call(lambda: session.__setattr__("name", name), lambda _: reply)

    # --- helpers ---------------------------------------------------------------------------

    def _track(self, action: Action) -> Action:
        if type(action) is bytes:
            return action
        if type(action) is Close:
            self._closed = True
            return action
        self._pending = action  # type: ignore[assignment]  # a Pending: bytes, Close returned
        return action

    def error_reply(self, exc: BaseException) -> bytes:
        """The reply reporting ``exc`` (what a command that raised it answers)."""
        return self._error_reply(exc)

    def _error_reply(self, exc: BaseException) -> bytes:
        if isinstance(exc, OctopusError):
            return error_reply(exc)
        if isinstance(exc, _ArgumentError):
            return encode_error("ERR", str(exc))
        log.error("internal error on connection %d", self.id, exc_info=exc)
        return encode_error("ERR", f"internal error: {type(exc).__name__}: {exc}")

    def _query(self, args: list[bytes], i: int = 1) -> tuple[str, tuple[object, ...], list[bytes]]:
        """The query text at ``args[i]``, its parameters, and the remaining arguments.
        Parses the query when it has placeholders: call it inside an engine call."""
        if len(args) <= i:
            raise _ArgumentError(f"wrong number of arguments for '{_printable(args[0])}' "
                                 "command")
        raw = args[i]
        query = _text(raw)
        if b"%" not in raw:
            return query, (), args[i + 1:]
        params, rest = typed_params(query, args[i + 1:], self.ctx.max_query_length)
        return query, params, rest

    def _record(self, record: Record, tagged: bool | None = None) -> bytes:
        if self.tagged if tagged is None else tagged:
            return encode(record_tagged(record), self.proto)
        text = record_text(record)
        return b"$%d\r\n%s\r\n" % (len(text), text)

    def _check_room(self) -> None:
        """Refuse a new trigger or subscription past ``max_triggers``."""
        limit = self.config.max_triggers
        if limit and len(self.owned) >= limit:
            raise LimitExceeded(f"this connection has {len(self.owned)} triggers and "
                                f"subscriptions installed (the limit is {limit})")

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
        self._check_room()
        return Trigger(self._on_trigger, on=on, persist=persist,
                       install_if=install_if)  # type: ignore[arg-type]  # a value of InstallIf

    def _store_call(self, args: list[bytes],
                    call: Callable[[str, tuple[object, ...], list[bytes], Trigger | None], Any],
                    encode_result: Callable[[Any], bytes],
                    options: Callable[[list[bytes]], Trigger | None] | None = None) -> Call:
        """A store command that may carry ``TRIGGER ...``: parse and run in ``run``;
        with a trigger the reply is ``[trigger id or nil, reply or error]``."""
        parse_options = options or self._trigger_options

        def run() -> _Outcome:
            q, params, rest = self._query(args)
            trigger = parse_options(rest)
            if trigger is None:
                return _Outcome(None, call(q, params, rest, None), None)
            try:
                return _Outcome(trigger, call(q, params, rest, trigger), None)
            except OctopusError as e:          # the command failed; the trigger may not have
                return _Outcome(trigger, None, e)

        def done(outcome: _Outcome) -> bytes:
            trigger = outcome.trigger
            if trigger is None:
                return encode_result(outcome.value)
            if outcome.error is not None:
                reply = error_reply(outcome.error)
            else:
                reply = encode_result(outcome.value)
            if trigger.id is None:
                return b"*2\r\n" + (b"_\r\n" if self.proto >= 3 else b"$-1\r\n") + reply
            self.owned[trigger.id] = trigger
            return b"*2\r\n:%d\r\n%s" % (trigger.id, reply)

        return Call(run, done)

    # --- commands: protocol -------------------------------------------------------------------

    def cmd_ping(self, args: list[bytes]) -> Action:
        _arity(args, 1, 2)
        if self._active_channels and self.proto == 2:
            # Redis's answer on a subscribed RESP2 connection, where a reply must look
            # like a pub/sub frame (redis-py's PubSub health check reads it so).
            return encode([b"pong", args[1] if len(args) > 1 else b""], 2)
        if len(args) == 1:
            return b"+PONG\r\n"
        return encode(args[1], self.proto)

    def cmd_echo(self, args: list[bytes]) -> Action:
        _arity(args, 2, 2)
        return encode(args[1], self.proto)

    def cmd_quit(self, args: list[bytes]) -> Action:
        # The session ends (its records are gone) before the reply.
        return Call(self.close_session, lambda _: Close(OK))

    def _auth(self, password: bytes, user: bytes = b"default") -> Action | None:
        want = self.config.password
        if want is None:
            return encode_error("ERR", "AUTH called without any password configured")
        # One user exists, Redis's "default" (what --requirepass protects there too);
        # any other name fails like a wrong password, after the same delay.
        right = hmac.compare_digest(password, want.encode())
        if not right or user != b"default":
            return AuthFailed(encode_error("WRONGPASS", "invalid username-password pair"))
        self.authed = True
        return None

    def cmd_auth(self, args: list[bytes]) -> Action:
        _arity(args, 2, 3)
        user = args[1] if len(args) == 3 else b"default"
        return self._auth(args[-1], user) or OK

    def cmd_hello(self, args: list[bytes]) -> Action:
        proto = self.proto
        renamed = False
        i = 1
        if len(args) > 1:
            if not args[1].isdigit() or args[1] not in (b"2", b"3"):
                return encode_error("NOPROTO", "unsupported protocol version")
            proto = int(args[1])
            i = 2
        while i < len(args):
            opt = args[i].upper()
            if opt == b"AUTH" and i + 2 < len(args):
                error = self._auth(args[i + 2], args[i + 1])
                if error is not None:
                    return error
                i += 3
            elif opt == b"SETNAME" and i + 1 < len(args):
                self.name = _text(args[i + 1], "the client name")
                renamed = True
                i += 2
            else:
                raise _ArgumentError(f"syntax error in HELLO option {_printable(args[i])!r}")
        if not self.authed:
            return encode_error("NOAUTH", "HELLO must be called with AUTH when a password "
                                "is required")
        self.proto = proto
        reply = encode({"server": "octopus", "version": VERSION, "proto": proto,
                        "id": self.id, "mode": "standalone", "role": "master",
                        "modules": []}, proto)
        return self._renamed(reply) if renamed else reply

    def cmd_client(self, args: list[bytes]) -> Action:
        _arity(args, 2, 1 << 30)
        sub = args[1].upper()
        if sub == b"SETNAME":
            _arity(args, 3, 3)
            self.name = _text(args[2], "the client name")
            return self._renamed(OK)
        if sub == b"GETNAME":
            return encode(self.name or None, self.proto)
        if sub == b"ID":
            return b":%d\r\n" % self.id
        if sub == b"SETINFO":
            return OK
        if sub == b"FORMAT":
            _arity(args, 3, 4)
            fmt = args[2].upper()
            conventions = args[3].upper() if len(args) > 3 else None
            if fmt not in (b"TEXT", b"TAGGED") or \
                    conventions not in (None, b"REDIS", b"OCTOPUS"):
                raise _ArgumentError("CLIENT FORMAT takes TEXT or TAGGED, then optionally "
                                     "REDIS or OCTOPUS")
            if self.channels:
                raise _ArgumentError("CLIENT FORMAT cannot change the conventions while "
                                     "Redis-style subscriptions are active")
            self.tagged = fmt == b"TAGGED"
            # TAGGED is the octopus client's format: its conventions by default.
            self.redis = not self.tagged if conventions is None else conventions == b"REDIS"
            self.mode = 2 * self.tagged + self.redis
            return OK
        raise _ArgumentError(f"unknown CLIENT subcommand '{_printable(args[1])}'")

    def cmd_select(self, args: list[bytes]) -> Action:
        _arity(args, 2, 2)
        if args[1] != b"0":
            return encode_error("ERR", "octopus has one database: only SELECT 0")
        return OK

    def cmd_command(self, args: list[bytes]) -> Action:
        proto = self.proto
        table = self.COMMANDS
        if len(args) == 1:
            return encode([_command_info(n) for n in sorted(table)], proto)
        sub = args[1].upper()
        if sub == b"COUNT":
            _arity(args, 2, 2)
            return b":%d\r\n" % len(table)
        if sub == b"LIST":
            return encode([n.lower() for n in sorted(table)], proto)
        if sub == b"INFO":
            names = [a.upper() for a in args[2:]] or sorted(table)
            return encode([_command_info(n) if n in table else None for n in names], proto)
        if sub == b"DOCS":
            names = [a.upper() for a in args[2:]] or sorted(table)
            return encode({n.lower(): _command_docs(n) for n in names if n in table}, proto)
        raise _ArgumentError(f"unknown COMMAND subcommand '{_printable(args[1])}'; "
                             "expected COUNT, DOCS, INFO or LIST")

    def cmd_config(self, args: list[bytes]) -> Action:
        _arity(args, 2, 1 << 30)
        if args[1].upper() != b"GET":
            return encode_error("ERR", "only CONFIG GET is supported")
        return encode({}, self.proto)            # redis-benchmark asks; nothing to tell

    def cmd_info(self, args: list[bytes]) -> Action:
        _arity(args, 1, 2)
        section = _text(args[1], "the section") if len(args) > 1 else ""
        proto = self.proto
        return Call(lambda: self.ctx.info(section), lambda text: encode(text.encode(), proto))

    def cmd_revision(self, args: list[bytes]) -> Action:
        _arity(args, 1, 1)
        return b":%d\r\n" % self.ctx.engine.revision

    # --- commands: the store ---------------------------------------------------------------

    def cmd_get(self, args: list[bytes]) -> Action:
        return self._get(args, cached=True)

    def _get(self, args: list[bytes], *, cached: bool) -> Action:
        cache = self.ctx.cache if cached else None
        if cache is not None and sum(map(len, args)) > CACHED_REQUEST_BYTES:
            cache = None
        key = ReplyCache.key(self.mode, args[1:])
        if cache is not None:
            hit = cache.lookup(key)
            if hit is not None:
                return hit
        if len(args) == 2:
            name = bare_name(args[1], self.ctx.max_query_length)
            if name is not None:
                return self._get_named(name, key, cache)
        session = self.session
        tagged = self.tagged
        redis = self.redis

        def get(q: str, params: tuple[object, ...], rest: list[bytes],
                trigger: Trigger | None) -> tuple[Record | None, int | None, None]:
            # The cache's epoch before the read (see ReplyCache); a reply with options
            # (a trigger) is never kept.
            started = cache.begin() if cache is not None and not rest else None
            try:
                record: Record | None = session.get(q, *params, trigger=trigger)
            except NotFound:
                if not redis:
                    raise
                record = None
            return record, started, None

        def reply(result: tuple[Record | None, int | None, None]) -> bytes:
            return self._got(result, key, cache, tagged, self.proto)

        return self._store_call(args, get, reply)

    def _got(self, result: tuple[Record | None, int | None, str | None],
             key: Key, cache: ReplyCache | None, tagged: bool,
             proto: int) -> bytes:
        """A GET's reply: the record (kept in the cache unless a change it may not show
        came while it was read), or nil, Redis's convention, never cached."""
        record, started, name = result
        if record is None:
            return b"_\r\n" if proto >= 3 else b"$-1\r\n"
        encoded = self._record(record, tagged)
        if cache is not None and started is not None:
            cache.store(key, name, started, encoded)
        return encoded

    def _get_named(self, name: str, key: Key,
                   cache: ReplyCache | None) -> Call:
        """``GET name`` of a bare name: what :meth:`_get` does, without parsing a query
        (the name is the whole query), as a call the I/O layer may batch (see
        :class:`Call`)."""
        session = self.session
        tagged = self.tagged
        redis = self.redis
        proto = self.proto

        def get() -> tuple[Record | None, int | None, str]:
            started = cache.begin() if cache is not None else None
            try:
                record: Record | None = session.get(name)
            except NotFound:
                if not redis:
                    raise
                record = None
            return record, started, name

        def reply(result: tuple[Record | None, int | None, str]) -> bytes:
            if result[0] is None and not redis:     # (read in a batch: see Call)
                raise NotFound(f"no record matches {name!r}")
            return self._got(result, key, cache, tagged, proto)

        return Call(get, reply, name)

    def cmd_names(self, args: list[bytes]) -> Action:
        session = self.session
        proto = self.proto
        return self._store_call(
            args, lambda q, p, _, t: session.get_names(q, *p, trigger=t),
            lambda names: encode(names, proto))

    def cmd_getall(self, args: list[bytes]) -> Action:
        session = self.session
        tagged = self.tagged

        def no_options(rest: list[bytes]) -> None:
            if rest:
                raise _ArgumentError("GETALL takes no options")

        def reply(records: list[Record]) -> bytes:
            return b"*%d\r\n" % len(records) + b"".join(self._record(r, tagged)
                                                         for r in records)

        return self._store_call(args, lambda q, p, _, t: session.get_all(q, *p), reply,
                                no_options)

    def cmd_exists(self, args: list[bytes]) -> Action:
        session = self.session
        return self._store_call(
            args, lambda q, p, _, t: session.exists(q, *p, trigger=t),
            lambda found: b":1\r\n" if found else b":0\r\n")

    def cmd_set(self, args: list[bytes]) -> Action:
        session = self.session
        tagged = self.tagged
        if len(args) == 2 and b"%" not in args[1]:
            # The plain SET (a record text; no parameters, flags or trigger): what the
            # general path below does, without parsing options or an outcome object.
            raw = args[1]

            def run() -> Record:
                return session.set(_text(raw))

            if self.redis:
                return Call(run, _ok)
            return Call(run, lambda record: self._record(record, tagged))
        flags = {"sequential": False, "ephemeral": False}

        def options(rest: list[bytes]) -> Trigger | None:
            while rest and rest[0].upper() in (b"SEQUENTIAL", b"EPHEMERAL"):
                flags[rest.pop(0).decode().lower()] = True
            return self._trigger_options(rest)

        def reply(record: Record) -> bytes:
            # Under Redis's conventions a set answers OK, unless its name was made here.
            if self.redis and not flags["sequential"]:
                return OK
            return self._record(record, tagged)

        return self._store_call(
            args, lambda q, p, _, t: session.set(q, *p, trigger=t, **flags), reply, options)

    def cmd_del(self, args: list[bytes]) -> Action:
        session = self.session
        tagged = self.tagged
        if self.redis:                          # Redis's DEL: the number deleted
            def delete(q: str, p: tuple[object, ...], _: list[bytes],
                       t: Trigger | None) -> Record | None:
                try:
                    return session.delete(q, *p, trigger=t)
                except NotFound:
                    return None

            return self._store_call(args, delete,
                                    lambda record: b":0\r\n" if record is None else b":1\r\n")
        return self._store_call(
            args, lambda q, p, _, t: session.delete(q, *p, trigger=t),
            lambda record: self._record(record, tagged))

    def _wait_args(self, args: list[bytes]) -> Wait:
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
        return Wait(q, params, timeout)

    def cmd_wait(self, args: list[bytes]) -> Action:
        if len(args) > 1 and b"%" in args[1]:
            # Typing the parameters parses the query: that is an engine call's work.
            return Call(lambda: self._wait_args(args), lambda wait: wait)
        return self._wait_args(args)

    def cmd_watch(self, args: list[bytes]) -> Action:
        session = self.session
        on_trigger = self._on_trigger

        def options(rest: list[bytes]) -> tuple[Mode, bool, bool]:
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
            if existing and not persist:
                raise _ArgumentError("WATCH ... EXISTING is always persistent")
            return on or (Mode.ON_SET | Mode.ON_DEL), persist, existing

        def run() -> Trigger:
            q, params, rest = self._query(args)
            on, persist, existing = options(rest)
            self._check_room()
            if existing:
                return session.watch_existing(q, on_trigger, *params, on=on)
            return session.watch(q, on_trigger, *params, on=on, persist=persist)

        return Call(run, self._installed)

    def _installed(self, handle: Trigger | Subscription) -> bytes:
        assert handle.id is not None
        self.owned[handle.id] = handle
        return b":%d\r\n" % handle.id

    def _owned_id(self, args: list[bytes], kind: type) -> int:
        _arity(args, 2, 2)
        if not args[1].isdigit() or len(args[1]) > 19:
            raise _ArgumentError(f"invalid id {_printable(args[1])!r}")
        qid = int(args[1])
        if not isinstance(self.owned.get(qid), kind):
            # The engine's own words (a session sees only its own triggers too).
            raise TriggerNotFound(f"no installed trigger {qid!r}" if kind is Trigger
                                  else f"no subscription {qid!r}")
        return qid

    def cmd_unwatch(self, args: list[bytes]) -> Action:
        qid = self._owned_id(args, Trigger)
        session = self.session
        return Call(lambda: session.remove_trigger(qid), lambda _: OK)

    def cmd_subscribe(self, args: list[bytes]) -> Action:
        if self.redis:
            return self._subscribe_channels(args, b"message")
        session = self.session
        on_message = self._on_message

        def run() -> Subscription:
            q, params, rest = self._query(args)
            if rest:
                raise _ArgumentError("SUBSCRIBE takes one query and its parameters")
            self._check_room()
            return session.subscribe(q, on_message, *params)

        return Call(run, self._installed)

    def cmd_psubscribe(self, args: list[bytes]) -> Action:
        if self.redis:
            return self._subscribe_channels(args, b"pmessage")
        return self.cmd_subscribe(args)

    def cmd_punsubscribe(self, args: list[bytes]) -> Action:
        if self.redis:
            return self._unsubscribe_channels(args, b"pmessage")
        return self.cmd_unsubscribe(args)

    def cmd_unsubscribe(self, args: list[bytes]) -> Action:
        if self.redis:
            return self._unsubscribe_channels(args, b"message")
        qid = self._owned_id(args, Subscription)
        session = self.session
        return Call(lambda: session.unsubscribe(qid), lambda _: OK)

    def cmd_publish(self, args: list[bytes]) -> Action:
        session = self.session

        def run() -> int:
            q, params, rest = self._query(args)
            if rest:
                raise _ArgumentError("PUBLISH takes one message and its parameters")
            return session.publish(q, *params)

        return Call(run, lambda n: b":%d\r\n" % n)

    def cmd_load(self, args: list[bytes]) -> Action:
        # LOAD text [text ...]: records, one per line (octopus/bulk.py's format), stored
        # as one all-or-nothing batch; the reply is how many (docs/server.md, "LOAD").
        if len(args) < 2:
            raise _ArgumentError("wrong number of arguments for 'LOAD' command")
        size = sum(map(len, args)) - len(args[0])
        if size > MAX_LOAD_BYTES:
            raise LimitExceeded(f"LOAD of {size} bytes: the limit is {MAX_LOAD_BYTES} bytes "
                                "(octopus load splits a file into such requests)")
        session = self.session

        def run() -> int:
            lines: list[str] = []
            for raw in args[1:]:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    line = len(lines) + raw.count(b"\n", 0, e.start) + 1
                    error = QueryError(f"line {line}: the text is not valid UTF-8")
                    error.line = line               # type: ignore[attr-defined]
                    raise error from None
                lines += split_text(text)
                if len(lines) > MAX_LOAD_LINES:
                    raise LimitExceeded(f"LOAD of more than {MAX_LOAD_LINES} lines")
            return session.load(lines, batch=max(1, len(lines)))

        return Call(run, lambda n: b":%d\r\n" % n)

    def cmd_session(self, args: list[bytes]) -> Action:
        # SESSION [TIMEOUT seconds] | SESSION RESUME id secret received (docs/server.md)
        if len(args) == 1:
            return SessionOp()
        word = args[1].upper()
        if word == b"TIMEOUT" and len(args) == 3:
            if not FLOAT_RE.match(args[2]) or float(args[2]) <= 0:
                raise _ArgumentError(f"invalid session timeout {_printable(args[2])!r}")
            return SessionOp(timeout=float(args[2]))
        if word == b"RESUME" and len(args) == 5:
            sid, received = args[2], args[4]
            if not (sid.isdigit() and received.isdigit()) or len(sid) > 19 or \
                    len(received) > 19:
                raise _ArgumentError("SESSION RESUME takes an id, a secret and the number "
                                     "of events received")
            return SessionOp(resume=(int(sid), args[3], int(received)))
        raise _ArgumentError("SESSION takes no arguments, TIMEOUT seconds, or RESUME id "
                             "secret received")

    def cmd_flush(self, args: list[bytes]) -> Action:
        _arity(args, 1, 1)
        return Flush()

    def cmd_why(self, args: list[bytes]) -> Action:
        """``WHY query [params] [LIMIT n]``: why a WAIT for the query would block."""
        session = self.session

        def run() -> bytes:
            q, params, rest = self._query(args)
            limit = DEFAULT_LIMIT
            if rest:
                if len(rest) != 2 or rest[0].upper() != b"LIMIT" or not rest[1].isdigit() \
                        or not 1 <= int(rest[1][:6]) <= MAX_LIMIT:
                    raise _ArgumentError(f"WHY takes a query, its parameters and LIMIT n "
                                         f"(1 to {MAX_LIMIT})")
                limit = int(rest[1])
            explanation = session.explain_wait(q, *params, limit=limit)
            return encode(explanation_reply(explanation, self.tagged), self.proto)

        return Call(run, lambda reply: reply)

    def cmd_rwatch(self, args: list[bytes]) -> Action:
        """``RWATCH relation [SET] [DEL] [EXISTING] [ARGS value ...]``: watch a relation
        the server's rules declared; each argument a tagged value (``a``, ``s``, ``i``,
        ``f``, ``b``) or ``_`` for any. Arguments are data: never Prolog text."""
        _arity(args, 2, 2 + 3 + 1 + 64)
        relation = _text(args[1], "the relation")
        on = Mode(0)
        existing = False
        values: list[object] = []
        rest = args[2:]
        for i, opt in enumerate(rest):
            word = opt.upper()
            if word == b"SET":
                on |= Mode.ON_SET
            elif word == b"DEL":
                on |= Mode.ON_DEL
            elif word == b"EXISTING":
                existing = True
            elif word == b"ARGS":
                try:
                    values = [untag_value(v) for v in rest[i + 1:]]
                except (ValueError, UnicodeDecodeError) as e:
                    raise _ArgumentError(f"RWATCH ARGS: {e}") from None
                break
            else:
                raise _ArgumentError(f"unknown RWATCH option {_printable(opt)!r}; expected "
                                     "SET, DEL, EXISTING or ARGS value ...")
        if len(self.rule_watches) >= MAX_RULE_WATCHES:
            raise LimitExceeded(f"this connection has {MAX_RULE_WATCHES} derived watches "
                                "installed (the most it may have); RUNWATCH some first")
        session, handler = self.session, self._on_trigger   # rows are handed over as events

        def run() -> RuleWatch:
            return session.watch_relation(relation, handler, *values,
                                          on=on or (Mode.ON_SET | Mode.ON_DEL),
                                          existing=existing)

        def installed(watch: RuleWatch) -> bytes:
            assert watch.id is not None
            self.rule_watches[watch.id] = watch
            return encode([watch.id, list(watch.names)], self.proto)

        return Call(run, installed)

    def cmd_runwatch(self, args: list[bytes]) -> Action:
        _arity(args, 2, 2)
        if not args[1].isdigit() or len(args[1]) > 19:
            raise _ArgumentError(f"invalid id {_printable(args[1])!r}")
        qid = int(args[1])
        watch = self.rule_watches.get(qid)
        if watch is None:
            raise TriggerNotFound(f"no derived watch {qid} on this connection")
        session = self.session

        def removed(_: object) -> bytes:
            self.rule_watches.pop(qid, None)        # now: its REMOVED push comes later
            return OK

        return Call(lambda: session.remove_rule_watch(watch), removed)

    # --- commands: Redis's pub/sub frames -------------------------------------------------

    def _subscribe_channels(self, args: list[bytes], kind: bytes) -> Action:
        """``SUBSCRIBE q [params] [q [params] ...]`` under Redis's conventions: each query
        is a *channel* (its text as sent); the reply is one ``[subscribe, channel,
        count]`` frame per query, and messages arrive as ``[message, channel, record]``
        (``[pmessage, query, record name, record]`` for ``PSUBSCRIBE``). Subscribing to
        the same query and parameters again changes nothing, as in Redis."""
        _arity(args, 2, 1 << 30)
        session = self.session
        on_message = self._on_message

        def run() -> list[tuple[bytes, tuple[bytes, ...], Subscription | None]]:
            wanted: list[tuple[bytes, tuple[bytes, ...], str, tuple[object, ...]]] = []
            i = 1
            while i < len(args):
                q, params, _ = self._query(args, i)
                key = (kind, *args[i:i + 1 + len(params)])
                wanted.append((args[i], key, q, params))
                i += 1 + len(params)
            fresh = {w[1] for w in wanted if w[1] not in self._channel_ids}
            limit = self.config.max_triggers
            if limit and len(self.owned) + len(fresh) > limit:
                raise LimitExceeded(f"this connection has {len(self.owned)} triggers and "
                                    f"subscriptions installed (the limit is {limit})")
            out: list[tuple[bytes, tuple[bytes, ...], Subscription | None]] = []
            made: set[tuple[bytes, ...]] = set()
            for raw, key, q, params in wanted:
                if key in fresh and key not in made:
                    made.add(key)
                    out.append((raw, key, session.subscribe(q, on_message, *params)))
                else:
                    out.append((raw, key, None))
            return out

        def done(subs: list[tuple[bytes, tuple[bytes, ...], Subscription | None]]) -> bytes:
            frames = []
            verb = b"subscribe" if kind == b"message" else b"psubscribe"
            for raw, key, sub in subs:
                if sub is not None:
                    assert sub.id is not None
                    self.owned[sub.id] = sub
                    self.channels[sub.id] = _Channel(kind, raw, key)
                    self._channel_ids[key] = sub.id
                    self._active_channels += 1
                frames.append(encode(Push([verb, raw, self._active_channels]), self.proto))
            return b"".join(frames)

        return Call(run, done)

    def _unsubscribe_channels(self, args: list[bytes], kind: bytes) -> Action:
        """``UNSUBSCRIBE [channel ...]`` under Redis's conventions: the named channels
        (or a subscription's id), or every one of this kind; one ``[unsubscribe,
        channel, count]`` frame per channel named, as Redis answers."""
        session = self.session
        verb = b"unsubscribe" if kind == b"message" else b"punsubscribe"
        active = [(qid, ch) for qid, ch in list(self.channels.items())
                  if ch.active and ch.kind == kind]
        targets: list[tuple[bytes | None, list[int]]] = []
        if len(args) == 1:
            targets = [(ch.channel, [qid]) for qid, ch in active]
        for raw in args[1:]:
            ids = [qid for qid, ch in active if ch.channel == raw]
            if not ids and raw.isdigit() and len(raw) <= 19 and \
                    any(qid == int(raw) for qid, _ in active):
                ids = [int(raw)]
                raw = self.channels[ids[0]].channel
            targets.append((raw, ids))
        if not targets:
            targets = [(None, [])]

        def run() -> None:
            for _, ids in targets:
                for qid in ids:
                    # TriggerNotFound: it ended meanwhile (the session closed).
                    with contextlib.suppress(TriggerNotFound):
                        session.unsubscribe(qid)

        def done(_: None) -> bytes:
            frames = []
            for raw, ids in targets:
                for qid in ids:
                    channel = self.channels.get(qid)
                    if channel is not None and channel.active:
                        # Its REMOVED event forgets it (event_frame): until then its
                        # messages still need their Redis frame.
                        channel.active = False
                        self._active_channels -= 1
                        self._channel_ids.pop(channel.key, None)
                frames.append(encode(Push([verb, raw, self._active_channels]), self.proto))
            return b"".join(frames)

        return Call(run, done)

    def _channel_frame(self, channel: _Channel, event: Event) -> bytes:
        if event.mode & Mode.REMOVED:
            self.channels.pop(event.trigger_id, None)
            self.owned.pop(event.trigger_id, None)
            return b""                          # the UNSUBSCRIBE reply said it
        record = event.record
        assert record is not None
        data: object = record_tagged(record) if self.tagged else record_text(record)
        if channel.kind == b"pmessage":
            frame = Push([b"pmessage", channel.channel, record.name.encode(), data])
        else:
            frame = Push([b"message", channel.channel, data])
        return encode(frame, self.proto)

    # --- commands: transactions ------------------------------------------------------------

    def cmd_multi(self, args: list[bytes]) -> Action:
        _arity(args, 1, 1)
        if self._queue is not None:
            return encode_error("ERR", "MULTI calls can not be nested")
        self._queue = []
        self._queued_bytes = 0
        self._queue_error = False
        return OK

    def cmd_discard(self, args: list[bytes]) -> Action:
        _arity(args, 1, 1)
        if self._queue is None:
            return encode_error("ERR", "DISCARD without MULTI")
        self._queue = None
        return OK

    def _enqueue(self, name: bytes, args: list[bytes]) -> bytes:
        """A command inside MULTI: queued, or refused (and the transaction with it)."""
        queue = self._queue
        assert queue is not None
        size = sum(map(len, args))
        error: str | None = None
        if name not in _TX_READS and name not in _TX_WRITES:
            error = (f"'{_printable(args[0])}' cannot run in a transaction: octopus runs "
                     "SET, or GET, EXISTS, NAMES, GETALL and REVISION there "
                     "(docs/server.md)")
        elif len(args) < 2 and name != b"REVISION":
            error = f"wrong number of arguments for '{_printable(args[0])}' command"
        elif queue and (name in _TX_WRITES) != (queue[0][0].upper() in _TX_WRITES):
            error = ("a transaction either writes (SET) or reads (GET, EXISTS, NAMES, "
                     "GETALL, REVISION), not both (docs/server.md)")
        elif len(queue) >= MAX_QUEUED or self._queued_bytes + size > MAX_QUEUED_BYTES:
            error = (f"the transaction is longer than {MAX_QUEUED} commands or "
                     f"{MAX_QUEUED_BYTES} bytes")
        if error is not None:
            self._queue_error = True
            return encode_error("ERR", error)
        queue.append(args)
        self._queued_bytes += size
        return QUEUED

    def cmd_exec(self, args: list[bytes]) -> Action:
        _arity(args, 1, 1)
        queue, self._queue = self._queue, None
        if queue is None:
            return encode_error("ERR", "EXEC without MULTI")
        if self._queue_error:
            return encode_error("EXECABORT", "Transaction discarded because of previous "
                                "errors.")
        if not queue:
            return b"*0\r\n"
        if queue[0][0].upper() in _TX_WRITES:
            return self._exec_writes(queue)
        return self._exec_reads(queue)

    def _exec_writes(self, queue: list[list[bytes]]) -> Call:
        """Every SET of the transaction in one atomic batch (``Session.set_many``): all or
        nothing, consecutive revisions in queue order, events after the commit."""
        session = self.session
        max_length = self.ctx.max_query_length

        def run() -> int:
            records: list[Record] = []
            for n, args in enumerate(queue, start=1):
                try:
                    q, params, rest = self._query(args)
                    if rest:
                        raise _ArgumentError("a SET in a transaction takes no options "
                                             "(SEQUENTIAL, EPHEMERAL, TRIGGER)")
                    compiled = compile_record(q, params, max_length=max_length)
                    if compiled.conditions:
                        raise QueryError("a SET in a transaction cannot have conditions "
                                         "(the batch is applied without looking)")
                except (OctopusError, _ArgumentError) as e:
                    e.args = (f"command {n} of the transaction: {e}",)
                    raise
                records.append(Record(compiled.name, compiled.attributes))
            return session.set_many(records, batch=len(records))

        return Call(run, lambda n: b"*%d\r\n" % n + OK * n)

    def _exec_reads(self, queue: list[list[bytes]]) -> Call:
        """Every read of the transaction at one revision: run again while a change
        commits in the middle (optimistic, as the reply cache's reasoning: a change
        bumps the revision before it releases the engine)."""
        engine = self.ctx.engine

        def run() -> bytes:
            for n, args in enumerate(queue, start=1):       # bad input: nothing is read
                if args[0].upper() == b"REVISION":
                    _arity(args, 1, 1)
                    continue
                try:
                    _, _, rest = self._query(args)
                except (OctopusError, _ArgumentError) as e:
                    e.args = (f"command {n} of the transaction: {e}",)
                    raise
                if rest:
                    raise _ArgumentError(f"command {n} of the transaction: reads in a "
                                         "transaction take no options")
            for _ in range(SNAPSHOT_ATTEMPTS):
                revision = engine.revision
                replies = [self._run_inline(args) for args in queue]
                if engine.revision == revision:
                    return b"*%d\r\n" % len(replies) + b"".join(replies)
            raise LimitExceeded(f"the store changed while each of {SNAPSHOT_ATTEMPTS} "
                                "attempts read the transaction; nothing was answered")

        return Call(run, lambda reply: reply)

    def _run_inline(self, args: list[bytes]) -> bytes:
        """One read command's reply, run here and now (inside an engine call)."""
        handler = self.COMMANDS[args[0].upper()]
        try:
            action = handler(self, args)
            if type(action) is Call:
                action = action.done(action.run())
        except Exception as e:
            return self._error_reply(e)
        assert type(action) is bytes
        return action


def bare_name(raw: bytes, max_length: int) -> str | None:
    """``raw`` as a record name if it is a bare name (the whole query, nothing to
    parse: ``hw.pci.device.7``), else None. Such a name is what the query parser would
    make of it (octopus.query.fast.parse_name is the parser's own fast path), so
    reading the record by that name answers the query."""
    if len(raw) > max_length or not raw.isascii():
        return None
    name = raw.decode("ascii")
    return name if parse_name(name) is not None else None


def error_reply(exc: OctopusError) -> bytes:
    """``exc`` as a RESP error reply, in the format of :func:`octopus.server.wire.error_line`."""
    return b"-%s\r\n" % error_line(exc).encode("utf-8", "replace")


@dataclass(slots=True)
class _Channel:
    """A subscription made under Redis's conventions."""

    kind: bytes                     # b"message" or b"pmessage"
    channel: bytes                  # the query as sent: the frames' channel or pattern
    key: tuple[bytes, ...]          # kind, query and parameters: one subscription each
    active: bool = True             # False once unsubscribed (until its REMOVED event)


def _command_info(name: bytes) -> list[object]:
    """``COMMAND INFO``'s entry: name, arity, flags, key positions (none: a query is not
    a key), ACL categories, tips, key specs, subcommands."""
    arity, flags, _, group, _ = _DOCS.get(name, (-1, (), "", "octopus", ()))
    return [name.lower(), arity, [Simple(f) for f in flags], 0, 0, 0,
            [Simple("@" + group)], [], [], []]


def _command_docs(name: bytes) -> dict[str, object]:
    """``COMMAND DOCS``'s entry, in Redis's shape (redis-cli builds its hints from it)."""
    _, _, summary, group, arguments = _DOCS.get(name, (-1, (), "", "octopus", ()))
    docs: dict[str, object] = {"summary": summary, "since": "0.1.0", "group": group}
    if arguments:
        out = []
        for arg in arguments:
            optional = arg.startswith("[")
            word = arg.strip("[]")
            multiple = word.endswith("...")
            word = word.rstrip(". ")
            entry: dict[str, object] = {"name": word.lower(), "type": "string"}
            flags = ([Simple("optional")] if optional else []) + \
                    ([Simple("multiple")] if multiple else [])
            if flags:
                entry["flags"] = flags
            out.append(entry)
        docs["arguments"] = out
    return docs


def _command_table(cls: type[CommandLayer]) -> dict[bytes, Handler]:
    """Every ``cmd_name`` method of ``cls`` as the command ``NAME``."""
    return {attr[4:].upper().encode(): getattr(cls, attr)
            for attr in dir(cls) if attr.startswith("cmd_")}


def parser_limits(config: ServerConfig, authed: bool) -> tuple[int, int, int]:
    """(max_args, max_bulk, max_inline) of a connection's requests: smaller before
    AUTH, as Redis limits unauthenticated clients."""
    c = config
    if authed:
        return c.max_args, c.max_bulk, c.max_inline
    return (min(c.unauth_max_args, c.max_args), min(c.unauth_max_bulk, c.max_bulk),
            min(c.unauth_max_inline, c.max_inline))


@dataclass(slots=True)
class _Outcome:
    trigger: Trigger | None
    value: Any
    error: OctopusError | None


def _ok(_: object) -> bytes:
    return OK


class _ArgumentError(Exception):
    """A command's arguments do not fit it (a generic ``ERR`` reply)."""


def _arity(args: list[bytes], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        raise _ArgumentError(f"wrong number of arguments for '{_printable(args[0])}' command")


def _printable(raw: bytes) -> str:
    return raw[:60].decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")


_EVENTS = {b"SET": Mode.ON_SET, b"DEL": Mode.ON_DEL, b"SETDEL": Mode.ON_SET | Mode.ON_DEL}

# Redis-style arity (negative: at least), flags, summary, group, arguments: COMMAND's data.
_DOCS: dict[bytes, tuple[int, tuple[str, ...], str, str, tuple[str, ...]]] = {
    b"GET": (-2, ("readonly",), "The first record matching a query (nil if none)", "octopus",
             ("query", "[param ...]", "[trigger]")),
    b"NAMES": (-2, ("readonly",), "The names of the records matching a query", "octopus",
               ("query", "[param ...]", "[trigger]")),
    b"GETALL": (-2, ("readonly",), "The records matching a query", "octopus",
                ("query", "[param ...]")),
    b"EXISTS": (-2, ("readonly", "fast"), "Whether a record matches a query", "octopus",
                ("query", "[param ...]", "[trigger]")),
    b"SET": (-2, ("write",), "Store a record (its comparisons are preconditions)", "octopus",
             ("record", "[param ...]", "[sequential]", "[ephemeral]", "[trigger]")),
    b"DEL": (-2, ("write",), "Delete the named record if it matches", "octopus",
             ("query", "[param ...]", "[trigger]")),
    b"LOAD": (-2, ("write",), "Store records given as text, one per line, all or nothing; "
              "the count", "octopus", ("text", "[text ...]")),
    b"WAIT": (-2, ("readonly", "blocking"), "The first record matching a query, now or later",
              "octopus", ("query", "[param ...]", "[timeout]")),
    b"WATCH": (-2, ("readonly",), "Install a trigger; its events are pushed", "octopus",
               ("query", "[param ...]", "[set]", "[del]", "[persist|once]", "[existing]")),
    b"UNWATCH": (2, ("readonly",), "Remove a trigger", "octopus", ("id",)),
    b"SUBSCRIBE": (-2, ("pubsub",), "Receive the published messages matching queries",
                   "pubsub", ("query", "[param ...]", "[query ...]")),
    b"PSUBSCRIBE": (-2, ("pubsub",), "SUBSCRIBE whose messages also name the record",
                    "pubsub", ("query", "[param ...]", "[query ...]")),
    b"UNSUBSCRIBE": (-1, ("pubsub",), "End subscriptions", "pubsub", ("[channel ...]",)),
    b"PUNSUBSCRIBE": (-1, ("pubsub",), "End PSUBSCRIBE subscriptions", "pubsub",
                      ("[pattern ...]",)),
    b"PUBLISH": (-2, ("pubsub", "fast"), "Deliver a message (a record never stored)",
                 "pubsub", ("message", "[param ...]")),
    b"WHY": (-2, ("readonly",), "Why a WAIT for the query would block: records, sessions",
             "octopus", ("query", "[param ...]", "[limit n]")),
    b"RWATCH": (-2, ("readonly",), "Watch a relation the server's rules declared; rows pushed",
                "octopus", ("relation", "[set]", "[del]", "[existing]", "[args value ...]")),
    b"RUNWATCH": (2, ("readonly",), "Remove a derived watch", "octopus", ("id",)),
    b"FLUSH": (1, (), "Answer once every event queued so far has been pushed", "octopus", ()),
    b"SESSION": (-1, (), "A resumable session: TIMEOUT seconds, or RESUME id secret received",
                 "connection", ("[subcommand]", "[arg ...]")),
    b"REVISION": (1, ("readonly", "fast"), "The store's revision", "octopus", ()),
    b"MULTI": (1, ("fast",), "Start a transaction", "transactions", ()),
    b"EXEC": (1, (), "Run the queued commands atomically", "transactions", ()),
    b"DISCARD": (1, ("fast",), "Forget the queued commands", "transactions", ()),
    b"PING": (-1, ("fast", "stale"), "PONG, or the message", "connection", ("[message]",)),
    b"ECHO": (2, ("fast",), "The message", "connection", ("message",)),
    b"QUIT": (1, ("fast",), "End the session, then close the connection", "connection", ()),
    b"AUTH": (-2, ("fast", "no_auth"), "Authenticate", "connection", ("[username]", "password")),
    b"HELLO": (-1, ("fast", "no_auth"), "Handshake: protocol, authentication, name",
               "connection", ("[protover]", "[auth]", "[setname]")),
    b"CLIENT": (-2, (), "SETNAME, GETNAME, ID, SETINFO, FORMAT", "connection",
                ("subcommand", "[arg ...]")),
    b"SELECT": (2, ("fast",), "Only database 0 exists", "connection", ("index",)),
    b"COMMAND": (-1, (), "The commands: COUNT, DOCS, INFO, LIST", "server", ("[subcommand]",)),
    b"CONFIG": (-2, (), "CONFIG GET answers an empty map", "server", ("subcommand",)),
    b"INFO": (-1, (), "Server, clients, stats and store figures", "server", ("[section]",)),
}

CommandLayer.COMMANDS = _command_table(CommandLayer)
_BEFORE_AUTH = frozenset({b"AUTH", b"HELLO", b"QUIT"})
# Run at once inside MULTI (the rest is queued or refused).
_NOT_QUEUED = frozenset({b"EXEC", b"DISCARD", b"MULTI", b"QUIT"})
_TX_WRITES = frozenset({b"SET"})
_TX_READS = frozenset({b"GET", b"EXISTS", b"NAMES", b"GETALL", b"REVISION"})
# The first words of an HTTP request (a web page's POST to the loopback port, whose body
# would otherwise be run as commands): Redis closes such connections, and so do we.
_CROSS_PROTOCOL = frozenset({b"POST", b"HOST:"})

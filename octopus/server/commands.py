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

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from octopus.engine import Engine, Session
from octopus.errors import LimitExceeded, OctopusError, TriggerNotFound
from octopus.events import Event, Mode, Subscription, Trigger
from octopus.record import Record

from .cache import ReplyCache
from .config import ServerConfig
from .params import FLOAT_RE, typed_params
from .params import text as _text
from .resp import Push, encode, encode_error
from .wire import mode_text, record_tagged, record_text

__all__ = [
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

# A GET longer than this is not looked up in the reply cache: hashing its key would be
# work for the event loop, and such requests are not the repeated ones the cache is for.
CACHED_REQUEST_BYTES = 8192


# --- actions -------------------------------------------------------------------------------


class Call:
    """Run ``run()`` (a blocking engine call; it may raise), then hand the outcome to
    :meth:`CommandLayer.complete`."""

    __slots__ = ("done", "run")

    def __init__(self, run: Callable[[], Any], done: Callable[[Any], Action]) -> None:
        self.run = run
        self.done = done

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
                 on_trigger: Callable[[Event], None],
                 on_message: Callable[[Event], None]) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.session = session
        self.id = conn_id
        self.name = ""
        self.proto = 2
        self.tagged = False                     # CLIENT FORMAT TAGGED (the octopus client)
        self.authed = ctx.config.password is None
        self.commands = 0                       # handled so far (INFO sums them)
        self.owned: dict[int, Trigger | Subscription] = {}
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
        return bool(self.owned)

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
            return encode_error("ERR", f"unknown command '{_printable(args[0])}'")
        if not self.authed and name not in _BEFORE_AUTH:
            return encode_error("NOAUTH", "Authentication required.")
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
                return result  # type: ignore[no-any-return]
            return OK                               # Flush
        except Exception as e:
            return self._error_reply(e)

    def event_frame(self, kind: bytes, event: Event) -> bytes:
        """A pushed event (``kind`` ``b"trigger"`` or ``b"message"``), encoded for this
        connection; forgets the trigger or subscription after its last event."""
        if event.mode & Mode.REMOVED:
            self.owned.pop(event.trigger_id, None)
        record: object = None
        if event.record is not None:
            record = record_tagged(event.record) if self.tagged else record_text(event.record)
        frame = Push([kind, event.trigger_id, mode_text(event.mode), event.revision, record])
        return encode(frame, self.proto)

    def adopt(self, previous: CommandLayer) -> None:
        """Carry ``previous``'s session from now on (``SESSION RESUME``): its session,
        its triggers and subscriptions, its handlers. This layer's own session must be
        closed by the caller."""
        self.session = previous.session
        self.owned = previous.owned
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

    # --- helpers ---------------------------------------------------------------------------

    def _track(self, action: Action) -> Action:
        if type(action) is bytes:
            return action
        if type(action) is Close:
            self._closed = True
            return action
        self._pending = action  # type: ignore[assignment]
        return action

    def error_reply(self, exc: BaseException) -> bytes:
        """The reply reporting ``exc`` (what a command that raised it answers)."""
        return self._error_reply(exc)

    def _error_reply(self, exc: BaseException) -> bytes:
        if isinstance(exc, OctopusError):
            return encode_error(_error_code(exc), str(exc))
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
        text = str(record).encode()
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
                       install_if=install_if)  # type: ignore[arg-type]

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
                reply = encode_error(_error_code(outcome.error), str(outcome.error))
            else:
                reply = encode_result(outcome.value)
            if trigger.id is None:
                return b"*2\r\n" + (b"_\r\n" if self.proto >= 3 else b"$-1\r\n") + reply
            self.owned[trigger.id] = trigger
            return b"*2\r\n:%d\r\n%s" % (trigger.id, reply)

        return Call(run, done)

    # --- commands: protocol -------------------------------------------------------------------

    def cmd_ping(self, args: list[bytes]) -> Action:
        if len(args) == 1:
            return b"+PONG\r\n"
        _arity(args, 2, 2)
        return encode(args[1], self.proto)

    def cmd_echo(self, args: list[bytes]) -> Action:
        _arity(args, 2, 2)
        return encode(args[1], self.proto)

    def cmd_quit(self, args: list[bytes]) -> Action:
        # The session ends (its records are gone) before the reply.
        return Call(self.close_session, lambda _: Close(OK))

    def _auth(self, password: bytes) -> Action | None:
        want = self.config.password
        if want is None:
            return encode_error("ERR", "AUTH called without any password configured")
        if not hmac.compare_digest(password, want.encode()):
            return AuthFailed(encode_error("WRONGPASS", "invalid username-password pair"))
        self.authed = True
        return None

    def cmd_auth(self, args: list[bytes]) -> Action:
        _arity(args, 2, 3)
        return self._auth(args[-1]) or OK

    def cmd_hello(self, args: list[bytes]) -> Action:
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

    def cmd_client(self, args: list[bytes]) -> Action:
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

    def cmd_select(self, args: list[bytes]) -> Action:
        _arity(args, 2, 2)
        if args[1] != b"0":
            return encode_error("ERR", "octopus has one database: only SELECT 0")
        return OK

    def cmd_command(self, args: list[bytes]) -> Action:
        return b"*0\r\n"                         # redis-cli asks for command docs

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
        engine = self.ctx.engine
        key: tuple[object, ...] = (self.tagged, *args[1:])
        if cache is not None:
            hit = cache.lookup(key, engine.revision)
            if hit is not None:
                return hit
        session = self.session
        tagged = self.tagged

        def get(q: str, params: tuple[object, ...], rest: list[bytes],
                trigger: Trigger | None) -> tuple[Record, int, int]:
            # A reply may be kept only if no change completed while it was read: a change
            # bumps the revision before it releases the engine lock, so an unchanged
            # revision around the call means the reply is the state at that revision.
            # A reply with options (a trigger) is never kept.
            before = engine.revision if not rest else -1
            record = session.get(q, *params, trigger=trigger)
            return record, before, engine.revision

        def reply(result: tuple[Record, int, int]) -> bytes:
            record, before, after = result
            encoded = self._record(record, tagged)
            if cache is not None and before == after:
                cache.store(key, before, encoded)
            return encoded

        return self._store_call(args, get, reply)

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
        flags = {"sequential": False, "ephemeral": False}

        def options(rest: list[bytes]) -> Trigger | None:
            while rest and rest[0].upper() in (b"SEQUENTIAL", b"EPHEMERAL"):
                flags[rest.pop(0).decode().lower()] = True
            return self._trigger_options(rest)

        return self._store_call(
            args, lambda q, p, _, t: session.set(q, *p, trigger=t, **flags),
            lambda record: self._record(record, tagged), options)

    def cmd_del(self, args: list[bytes]) -> Action:
        session = self.session
        tagged = self.tagged
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
            what = "trigger" if kind is Trigger else "subscription"
            raise TriggerNotFound(f"no installed {what} {qid} on this connection")
        return qid

    def cmd_unwatch(self, args: list[bytes]) -> Action:
        qid = self._owned_id(args, Trigger)
        session = self.session
        return Call(lambda: session.remove_trigger(qid), lambda _: OK)

    def cmd_subscribe(self, args: list[bytes]) -> Action:
        session = self.session
        on_message = self._on_message

        def run() -> Subscription:
            q, params, rest = self._query(args)
            if rest:
                raise _ArgumentError("SUBSCRIBE takes one query and its parameters")
            self._check_room()
            return session.subscribe(q, on_message, *params)

        return Call(run, self._installed)

    def cmd_unsubscribe(self, args: list[bytes]) -> Action:
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

CommandLayer.COMMANDS = _command_table(CommandLayer)
_BEFORE_AUTH = frozenset({b"AUTH", b"HELLO", b"QUIT"})
# The first words of an HTTP request (a web page's POST to the loopback port, whose body
# would otherwise be run as commands): Redis closes such connections, and so do we.
_CROSS_PROTOCOL = frozenset({b"POST", b"HOST:"})

"""The commands of ``octopus serve`` (listed in docs/server.md), as :class:`Commands`, the
mixin that gives a :class:`~octopus.server.server.Connection` its command handlers.

Each ``cmd_*`` method turns one request's arguments into its reply: encoded bytes, or a
coroutine for a command that waits (``WAIT``, ``FLUSH``), which the connection runs as a
task. :meth:`Commands._execute` finds the handler in :data:`_COMMANDS`, refuses commands
before AUTH, and turns exceptions into error replies. Handlers never write to the
transport: the connection writes their replies, in order, and the events they subscribe
it to (see the theory of operation in :mod:`octopus.server.server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from octopus.engine import Session
from octopus.errors import (
    EngineClosed,
    NotFound,
    OctopusError,
    TriggerNotFound,
    WaitTimeout,
)
from octopus.events import Event, Mode, Subscription, Trigger
from octopus.explain import DEFAULT_LIMIT, MAX_LIMIT
from octopus.record import Record
from octopus.rules import RowEvent, RuleWatch

from .params import FLOAT_RE, typed_params
from .params import text as _text
from .resp import ProtocolError, RequestParser, encode, encode_error
from .wire import explanation_reply, record_tagged, untag_value

if TYPE_CHECKING:
    from .server import Server, ServerConfig

__all__ = ["MAX_RULE_WATCHES", "OK", "VERSION", "Commands", "Reply"]

log = logging.getLogger("octopus.server")

VERSION = "0.1.0"
OK = b"+OK\r\n"

Reply = bytes | Coroutine[Any, Any, bytes]

#: derived watches (RWATCH) one connection may have installed at once: each costs work
#: on every write that can change its relation
MAX_RULE_WATCHES = 256


class _Quit(Exception):
    """Raised by QUIT after its reply: close the connection."""


class Commands:
    """The command handlers of one connection. The connection sets the attributes
    declared here and provides the three methods declared after them."""

    server: Server
    config: ServerConfig
    id: int
    name: str
    proto: int
    tagged: bool                            # CLIENT FORMAT TAGGED (the octopus client)
    authed: bool
    parser: RequestParser
    session: Session | None
    owned: dict[int, Trigger | Subscription]
    rule_watches: dict[int, RuleWatch]      # RWATCH: their own ids, apart from triggers
    loop: asyncio.AbstractEventLoop | None

    _end_session: Callable[[], None]        # closes the session (QUIT, before its reply)
    _on_trigger_event: Callable[[Event], None]   # handlers of the triggers installed here
    _on_message_event: Callable[[Event], None]   # and of the subscriptions
    _on_row_event: Callable[[RowEvent], None]    # and of the derived watches

    # --- dispatch -----------------------------------------------------------------------------

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

    def _name_session(self) -> None:
        """Explanations (WHY) name a connection's session ``connection <id>`` and the
        name the client gave itself."""
        if self.session is not None:
            name = f"connection {self.id}" + (f" ({self.name})" if self.name else "")
            with contextlib.suppress(OctopusError):
                self.session.name = name[:200]

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
                self._name_session()
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
            self._name_session()
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

    def cmd_why(self, args: list[bytes]) -> bytes:
        """``WHY query [params] [LIMIT n]``: why a WAIT for the query would block."""
        q, params, rest = self._query(args)
        limit = DEFAULT_LIMIT
        if rest:
            if len(rest) != 2 or rest[0].upper() != b"LIMIT" or not rest[1].isdigit() \
                    or not 1 <= int(rest[1][:6]) <= MAX_LIMIT:
                raise _ArgumentError(f"WHY takes a query, its parameters and LIMIT n "
                                     f"(1 to {MAX_LIMIT})")
            limit = int(rest[1])
        explanation = self._session().explain_wait(q, *params, limit=limit)
        return encode(explanation_reply(explanation, self.tagged), self.proto)

    def cmd_rwatch(self, args: list[bytes]) -> bytes:
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
            raise _ArgumentError(f"this connection has {MAX_RULE_WATCHES} derived watches "
                                 "installed (the most it may have); RUNWATCH some first")
        watch = self._session().watch_relation(relation, self._on_row_event, *values,
                                               on=on or (Mode.ON_SET | Mode.ON_DEL),
                                               existing=existing)
        assert watch.id is not None
        self.rule_watches[watch.id] = watch
        return encode([watch.id, list(watch.names)], self.proto)

    def cmd_runwatch(self, args: list[bytes]) -> bytes:
        _arity(args, 2, 2)
        if not args[1].isdigit() or len(args[1]) > 19:
            raise _ArgumentError(f"invalid id {_printable(args[1])!r}")
        watch = self.rule_watches.get(int(args[1]))
        if watch is None:
            raise TriggerNotFound(f"no derived watch {int(args[1])} on this connection")
        self._session().remove_rule_watch(watch)
        self.rule_watches.pop(int(args[1]), None)     # now: its REMOVED push comes later
        return OK

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

_COMMANDS: dict[bytes, Callable[[Commands, list[bytes]], Reply]] = {
    name.upper().encode(): getattr(Commands, f"cmd_{name}")
    for name in ("ping", "echo", "quit", "auth", "hello", "client", "select", "command",
                 "config", "info", "revision", "get", "names", "getall", "exists", "set",
                 "del", "wait", "watch", "unwatch", "subscribe", "unsubscribe", "publish",
                 "flush", "why", "rwatch", "runwatch")
}
_BEFORE_AUTH = frozenset({b"AUTH", b"HELLO", b"QUIT"})

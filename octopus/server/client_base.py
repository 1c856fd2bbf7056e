"""What the sync :class:`~octopus.server.client.Client` and the asyncio
:class:`~octopus.server.async_client.AsyncClient` share, none of it doing I/O: server
URLs, each Session call as a command with the decoder of its reply (:class:`_Requests`),
typed records and events from TAGGED replies and pushes, server errors mapped back to
the exceptions of :mod:`octopus.errors`, and the per-connection state (:class:`_Base`).
How the clients behave is in the docstring of :mod:`octopus.server.client`.
"""

from __future__ import annotations

import enum
import re
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeAlias, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from octopus.errors import (
    EngineClosed,
    OctopusError,
    QueryError,
    SessionExpired,
    TriggerNotFound,
)
from octopus.events import Event, Handler, Mode, Subscription, Trigger
from octopus.explain import Holding, SessionInfo, WaitExplanation, check_limit
from octopus.query.ast import bind
from octopus.query.parser import parse
from octopus.record import Atom, Record, Value
from octopus.rules import (
    RowEvent,
    RowHandler,
    RuleWatch,
    check_arg,
    check_on,
    check_relation_name,
)

from .resp import ProtocolError, Push, ReplyError, encode_command
from .wire import error_from_line

__all__ = ["DEFAULT_URL", "EVENT_PUSHES", "AuthenticationError", "ConnectionState", "decode_event",
           "decode_record", "error_from_reply", "parse_url", "redact_url", "tls_context",
           "url_options"]

DEFAULT_URL = "tcp://127.0.0.1:6380"
# A handler and the event it takes: an Event (trigger, subscription) or a RowEvent
# (derived watch). The pair is what the type says; each half alone is not.
Delivery: TypeAlias = tuple[Callable[[Any], Any], Event | RowEvent]
_NO_LIMIT = 1 << 40


class AuthenticationError(OctopusError):
    """Raised when the server refuses the password (or wants one that was not given)."""


class ConnectionState(enum.StrEnum):
    """What a client's listeners are told (as kazoo's ``KazooState``).

    CONNECTED: the session is usable (after a resume: its ephemeral records, locks,
    triggers and subscriptions are as they were, and the events missed follow).
    SUSPENDED: the connection dropped; the client is reconnecting and the session may
    still be resumed: hold off on anything that needs the lock you hold.
    LOST: the session ended (it expired, or could not be resumed): its ephemeral
    records and locks are gone, the client is closed.
    """

    CONNECTED = "CONNECTED"
    SUSPENDED = "SUSPENDED"
    LOST = "LOST"


# --- the wire format ----------------------------------------------------------------------


_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs",
                "ssl_check_hostname")
_URL_OPTIONS = ("username", "password", *_TLS_OPTIONS)


def parse_url(url: str) -> tuple[str, Any]:
    """``unix:///path`` -> ("unix", path); ``tcp://host:port`` (or ``redis://``) ->
    ("tcp", (host, port)); ``rediss://host:port`` -> ("tls", (host, port)). Credentials
    and options in the URL are in :func:`url_options`."""
    if not isinstance(url, str):
        raise QueryError(f"a server URL must be a str, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme == "unix":
        # unix://[user:pass@]/path: the credentials are before the path.
        path = unquote(parts.netloc.rpartition("@")[2] + parts.path)
        if not path:
            raise QueryError(f"no socket path in {redact_url(url)!r}")
        return "unix", path
    if parts.scheme in ("tcp", "redis", "rediss"):
        try:
            port = parts.port or 6380
        except ValueError:
            raise QueryError(f"invalid port in {redact_url(url)!r}") from None
        kind = "tls" if parts.scheme == "rediss" else "tcp"
        return kind, (parts.hostname or "127.0.0.1", port)
    raise QueryError(f"unsupported server URL {redact_url(url)!r}: use unix:///path, "
                     "tcp://host:port or rediss://host:port (TLS)")


def url_options(url: str) -> dict[str, str]:
    """The credentials and options a URL carries: ``username`` and ``password``
    (``redis://user:pass@host``, ``redis://:pass@host``, ``unix:///path?password=...``),
    and for ``rediss://`` the TLS files and checks, named as redis-py names them
    (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs=none|required``,
    ``ssl_check_hostname=true|false``). An unknown option is a :class:`QueryError`."""
    parse_url(url)
    parts = urlsplit(url)
    options: dict[str, str] = {}
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else None
    if userinfo is not None:
        user, colon, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if colon:
            options["password"] = unquote(password)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _URL_OPTIONS:
            raise QueryError(f"unknown option {key!r} in the server URL (known: "
                             f"{', '.join(_URL_OPTIONS)})")
        if key in _TLS_OPTIONS and parts.scheme != "rediss":
            raise QueryError(f"the option {key!r} needs a rediss:// (TLS) URL")
        options[key] = value
    return options


_USERINFO_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/?#]*):[^@/?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*")


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs); otherwise
    exactly as written."""
    if not isinstance(url, str):
        return repr(url)
    url = _USERINFO_PASSWORD.sub(r"\1:***@", url, count=1)
    return _QUERY_PASSWORD.sub(r"\1***", url)


def _flag(options: dict[str, str], key: str, true: str, false: str) -> bool:
    value = options.get(key, true).lower()
    if value not in (true, false):
        raise QueryError(f"the URL option {key} must be {true} or {false}, got {value!r}")
    return value == true


def tls_context(url: str, context: ssl.SSLContext | None = None) -> ssl.SSLContext | None:
    """The TLS context to connect to ``url`` with: ``context`` if given, else one made
    from the URL's options; None for a URL without TLS. Files that cannot be read are
    an ``OSError``."""
    kind, _ = parse_url(url)
    if kind != "tls":
        return None
    if context is not None:
        return context
    from .tls import client_context

    options = url_options(url)
    verify = _flag(options, "ssl_cert_reqs", "required", "none")
    check = _flag(options, "ssl_check_hostname", "true", "false")
    return client_context(options.get("ssl_ca_certs"), options.get("ssl_certfile"),
                          options.get("ssl_keyfile"), verify=verify, check_hostname=check)


def _param_text(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _query_args(q: object, params: tuple[object, ...]) -> list[Any]:
    """The query and its parameters as command arguments; bad parameters raise here,
    exactly as the engine would."""
    if not isinstance(q, str):
        raise QueryError(f"a query must be a str, got {type(q).__name__}")
    if not params:
        return [q]
    bind(parse(q, max_length=_NO_LIMIT), params)
    return [q, *(_param_text(p) for p in params)]


def error_from_reply(reply: ReplyError) -> OctopusError:
    """The exception a server error reply stands for (the format: octopus.server.wire)."""
    if reply.code in ("NOAUTH", "WRONGPASS"):
        return AuthenticationError(str(reply))
    exc = error_from_line(str(reply))
    return OctopusError(str(reply)) if exc is None else exc


def _check(reply: Any) -> Any:
    if type(reply) is ReplyError:
        raise error_from_reply(reply)
    return reply


_Installed = TypeVar("_Installed", Trigger, Subscription)
# What a request's reply decodes to (the return type of the client call that sends it).
R = TypeVar("R")


def _checked(reply: Any, obj: _Installed) -> _Installed:
    """``obj`` once the server installed it; the server's error (a refused query) else."""
    _check(reply)
    return obj


def _value(tagged: bytes) -> Value:
    tag, body = tagged[:1], tagged[1:]
    if tag == b"s":
        return body.decode()
    if tag == b"i":
        return int(body)
    if tag == b"a":
        return Atom(body.decode())
    if tag == b"f":
        return float(body)
    if tag == b"b":
        return body == b"1"
    raise ProtocolError(f"unknown value tag {tagged[:10]!r}")


def decode_record(reply: Any) -> Record:
    """A record in the TAGGED format: ``[name, revision, key, value, ...]``."""
    reply = _check(reply)
    it = iter(reply[2:])
    attrs = {k.decode(): _value(v) for k, v in zip(it, it, strict=True)}
    return Record(reply[0].decode(), attrs, reply[1])


def _decode_names(reply: Any) -> list[str]:
    return [n.decode() for n in _check(reply)]


def _decode_records(reply: Any) -> list[Record]:
    return [decode_record(r) for r in _check(reply)]


def _decode_bool(reply: Any) -> bool:
    return bool(_check(reply))


def _decode_int(reply: Any) -> int:
    return int(_check(reply))


def _decode_float(reply: Any) -> float:
    value = _check(reply)
    return float(value.decode() if isinstance(value, bytes) else value)


def _decode_text(reply: Any) -> str:
    text: bytes = _check(reply)
    return text.decode()


def _decode_ok(reply: Any) -> None:
    _check(reply)


def _decode_session(reply: Any) -> SessionInfo | None:
    if reply is None:
        return None
    sid, name = reply
    return SessionInfo(int(sid), None if name is None else name.decode())


def decode_explanation(reply: Any) -> WaitExplanation:
    """``WHY``'s reply (docs/server.md) as a :class:`~octopus.explain.WaitExplanation`."""
    query, matching, record, unmet, waiters, truncated, exact = _check(reply)
    return WaitExplanation(
        query.decode(),
        tuple(Holding(decode_record(r), _decode_session(s)) for r, s in matching),
        None if record is None else decode_record(record),
        tuple(u.decode() for u in unmet),
        tuple(w for w in (_decode_session(x) for x in waiters) if w is not None),
        bool(truncated), None if exact is None else exact.decode())


def _row_arg(value: object) -> str:
    """A derived watch's argument as a tagged value (RWATCH ... ARGS)."""
    if value is None:
        return "_"
    if value is True or value is False:
        return "b1" if value else "b0"
    if isinstance(value, str):
        return "a" + value                # an identifier, as in-process
    if isinstance(value, int):
        return f"i{value}"
    return "f" + repr(value)


def decode_row_event(push: Push) -> RowEvent:
    """``[b"row", id, mode, revision, [names, values] or nil]`` -> RowEvent."""
    _, qid, mode, revision, row = push
    event_mode = Mode(0)
    for name in mode.decode().split("|"):
        event_mode |= Mode[name]
    if row is None:
        return RowEvent(event_mode, None, (), qid, revision)
    names, values = row
    return RowEvent(event_mode, tuple(_value(v) for v in values),
                    tuple(n.decode() for n in names), qid, revision)


def decode_event(push: Push) -> tuple[bytes, Event]:
    """``[kind, id, mode, revision, record]`` -> (kind, Event)."""
    kind, qid, mode, revision, record = push
    event_mode = Mode(0)
    for name in mode.decode().split("|"):
        event_mode |= Mode[name]
    rec = decode_record(record) if record is not None else None
    return kind, Event(event_mode, rec, qid, revision)


_ON = {Mode.ON_SET: "SET", Mode.ON_DEL: "DEL", Mode.ON_SET | Mode.ON_DEL: "SETDEL"}

#: The pushes a resumable session numbers (sessions.py): a resuming client says how
#: many of them it has read, so it must count every one, a derived watch's rows too.
EVENT_PUSHES = frozenset({b"trigger", b"message", b"row"})


class _Request(Generic[R]):
    """One command: its bytes, how to decode its reply, and what to do with a trigger.

    ``idempotent``: sending it twice is harmless (reads), so a call in flight when the
    connection drops is sent again after the session resumes; any other call in flight
    then fails with an "outcome unknown" error. ``undo``: given the reply of a call whose
    caller gave up waiting, the command that takes its effect back (None: nothing to
    undo)."""

    __slots__ = ("data", "decode", "idempotent", "obj", "query", "undo")

    def __init__(self, args: list[Any], decode: Callable[[Any], R],
                 obj: Trigger | Subscription | RuleWatch | None = None, *,
                 idempotent: bool = False) -> None:
        self.data = encode_command(args)
        self.decode = decode
        self.obj = obj
        self.query = args[1] if obj is not None else None
        self.idempotent = idempotent
        self.undo: Callable[[Any], list[Any] | None] | None = None
        if obj is not None:
            self.undo = self._uninstall

    def _uninstall(self, reply: Any) -> list[Any] | None:
        obj = self.obj
        qid = None if obj is None else _installed_id(reply, obj)
        if qid is None:
            return None
        if isinstance(obj, RuleWatch):
            return ["RUNWATCH", str(qid)]
        return ["UNSUBSCRIBE" if isinstance(obj, Subscription) else "UNWATCH", str(qid)]


def _undo_entry(reply: Any) -> list[Any] | None:
    """A sequential ephemeral record nobody learnt the name of (its caller gave up):
    delete it, or it would hold its place in a queue (a lock's) for the session's life."""
    if isinstance(reply, list) and reply and isinstance(reply[0], bytes):
        return ["DEL", "%n", reply[0].decode()]
    return None


def _check_trigger(trigger: Trigger | None) -> None:
    if trigger is None:
        return
    if not isinstance(trigger, Trigger):
        raise QueryError(f"trigger must be an octopus.Trigger, got {type(trigger).__name__}")
    if trigger.installed:
        raise QueryError("this Trigger object is already installed; make a new one")


def _triggered(cmd: str, q: str, params: tuple[object, ...], decode: Callable[[Any], R],
               trigger: Trigger | None, extra: tuple[str, ...] = ()) -> _Request[R]:
    """A store command, with the trigger options when a trigger is given."""
    args = [cmd, *_query_args(q, params), *extra]
    if trigger is None:
        return _Request(args, decode, idempotent=cmd in _READS)
    _check_trigger(trigger)
    args += ["TRIGGER", _ON[trigger.on], "PERSIST" if trigger.persist else "ONCE",
             trigger.install_if.upper()]

    def decode_pair(reply: Any) -> R:
        return decode(_check(reply)[1])

    return _Request(args, decode_pair, trigger)


_READS = frozenset({"GET", "NAMES", "EXISTS"})


class _Requests:
    """The commands of the API, shared by the sync and async clients."""

    @staticmethod
    def get(q: str, params: tuple[object, ...], trigger: Trigger | None) -> _Request[Record]:
        return _triggered("GET", q, params, decode_record, trigger)

    @staticmethod
    def get_names(q: str, params: tuple[object, ...],
                  trigger: Trigger | None) -> _Request[list[str]]:
        return _triggered("NAMES", q, params, _decode_names, trigger)

    @staticmethod
    def get_all(q: str, params: tuple[object, ...]) -> _Request[list[Record]]:
        return _Request(["GETALL", *_query_args(q, params)], _decode_records, idempotent=True)

    @staticmethod
    def exists(q: str, params: tuple[object, ...], trigger: Trigger | None) -> _Request[bool]:
        return _triggered("EXISTS", q, params, _decode_bool, trigger)

    @staticmethod
    def set(rec: str, params: tuple[object, ...], sequential: bool, ephemeral: bool,
            trigger: Trigger | None) -> _Request[Record]:
        extra = (("SEQUENTIAL",) if sequential else ()) + (("EPHEMERAL",) if ephemeral else ())
        request = _triggered("SET", rec, params, decode_record, trigger, extra)
        if sequential and ephemeral and trigger is None:
            request.undo = _undo_entry
        return request

    @staticmethod
    def delete(q: str, params: tuple[object, ...], trigger: Trigger | None) -> _Request[Record]:
        return _triggered("DEL", q, params, decode_record, trigger)

    @staticmethod
    def watch(q: str, handler: Handler, params: tuple[object, ...], on: Mode, persist: bool,
              existing: bool) -> _Request[Trigger]:
        trigger = Trigger(handler, on=on, persist=persist)
        flags = [*(("SET",) if on & Mode.ON_SET else ()), *(("DEL",) if on & Mode.ON_DEL else ()),
                 "PERSIST" if persist else "ONCE", *(("EXISTING",) if existing else ())]
        return _Request(["WATCH", *_query_args(q, params), *flags],
                        lambda reply: _checked(reply, trigger), trigger)

    @staticmethod
    def remove_trigger(trigger: Trigger | int) -> _Request[None]:
        qid = trigger.id if isinstance(trigger, Trigger) else trigger
        if isinstance(qid, bool) or not isinstance(qid, int) or qid < 0:
            raise TriggerNotFound(f"no installed trigger {qid!r}")
        return _Request(["UNWATCH", str(qid)], _decode_ok)

    @staticmethod
    def subscribe(q: str, handler: Handler,
                  params: tuple[object, ...]) -> _Request[Subscription]:
        if not callable(handler):
            raise QueryError("a subscription's handler must be callable")
        sub = Subscription(handler, q, 0)
        return _Request(["SUBSCRIBE", *_query_args(q, params)],
                        lambda reply: _checked(reply, sub), sub)

    @staticmethod
    def unsubscribe(subscription: Subscription | int) -> _Request[None]:
        qid = subscription.id if isinstance(subscription, Subscription) else subscription
        if isinstance(qid, bool) or not isinstance(qid, int) or qid < 0:
            raise TriggerNotFound(f"no subscription {qid!r}")
        return _Request(["UNSUBSCRIBE", str(qid)], _decode_ok)

    @staticmethod
    def publish(message: str, params: tuple[object, ...]) -> _Request[int]:
        return _Request(["PUBLISH", *_query_args(message, params)], _decode_int)

    @staticmethod
    def explain_wait(q: str, params: tuple[object, ...],
                     limit: int) -> _Request[WaitExplanation]:
        limit = check_limit(limit)
        return _Request(["WHY", *_query_args(q, params), "LIMIT", str(limit)],
                        decode_explanation)

    @staticmethod
    def watch_relation(relation: str, handler: RowHandler, args: tuple[object, ...],
                       on: Mode, existing: bool) -> _Request[RuleWatch]:
        check_relation_name(relation)
        if not callable(handler):
            raise QueryError("a rule watch's handler must be callable")
        values = [check_arg(a, f"argument {i + 1}") for i, a in enumerate(args)]
        watch = RuleWatch(handler, f"{relation}/{len(values)}" if values else relation,
                          check_on(on))
        flags = [*(("SET",) if on & Mode.ON_SET else ()),
                 *(("DEL",) if on & Mode.ON_DEL else ()),
                 *(("EXISTING",) if existing else ())]
        if values:
            flags += ["ARGS", *(_row_arg(v) for v in values)]

        def decode(reply: Any) -> RuleWatch:
            _check(reply)
            return watch

        return _Request(["RWATCH", relation, *flags], decode, watch)

    @staticmethod
    def remove_rule_watch(watch: RuleWatch | int) -> _Request[None]:
        qid = watch.id if isinstance(watch, RuleWatch) else watch
        if isinstance(qid, bool) or not isinstance(qid, int) or qid < 0:
            raise TriggerNotFound(f"no installed rule watch {qid!r}")
        return _Request(["RUNWATCH", str(qid)], _decode_ok)


def _installed_id(reply: Any, obj: Trigger | Subscription | RuleWatch) -> int | None:
    """The id the server gave ``obj`` (None if it was not installed)."""
    if type(reply) is ReplyError:
        return None
    if isinstance(obj, Subscription) or isinstance(reply, int):
        return reply if isinstance(reply, int) else None
    return reply[0] if isinstance(reply, list) and reply[0] is not None else None


class _Base:
    """State shared by both clients: the URL, the FIFO, the installed handlers."""

    def __init__(self, url: str, password: str | None, name: str | None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = redact_url(url)       # for messages: never the password
        self._address = parse_url(url)
        options = url_options(url)
        # An explicit password wins over the URL's (the caller said it last).
        self._password = password if password is not None else options.get("password")
        self._username = options.get("username", "default")
        self._ssl_context = ssl_context
        self._tls = tls_context(url, ssl_context)
        self._name = name
        self._pending: deque[Any] = deque()
        self._handlers: dict[int, Trigger | Subscription] = {}
        self._rows: dict[int, RuleWatch] = {}           # derived watches (RWATCH)
        self._closed = False
        self._quitting = False
        self._lost: str | None = None
        self._expired = False           # the session ended while disconnected

    def _handshake(self) -> list[_Request[Any]]:
        hello = ["HELLO", "3"]
        if self._password is not None:
            hello += ["AUTH", self._username, self._password]
        if self._name:
            hello += ["SETNAME", self._name]
        return [_Request(hello, _check), _Request(["CLIENT", "FORMAT", "TAGGED"], _check)]

    def _on_reply(self, request: _Request[Any], reply: Any) -> None:
        """Runs where replies are read, before the next frame: registers triggers."""
        obj = request.obj
        if obj is None:
            return
        if isinstance(obj, RuleWatch):
            if type(reply) is not ReplyError:
                obj.id, obj.names = int(reply[0]), tuple(n.decode() for n in reply[1])
                obj._remove = self._unwatch_rule
                self._rows[obj.id] = obj
            return
        qid = _installed_id(reply, obj)
        if qid is None:
            return
        obj.id = qid
        if isinstance(obj, Trigger):
            obj.query = request.query
        self._handlers[qid] = obj

    def _unwatch_rule(self, watch: RuleWatch) -> None:
        """``watch.remove()``: the sync client sends RUNWATCH; the async one cannot
        block, so its watches are removed with ``await client.remove_rule_watch(w)``."""
        raise OctopusError("remove a derived watch of an AsyncClient with "
                           "`await client.remove_rule_watch(watch)`")

    def _event(self, push: Push) -> Delivery | None:
        if push[0] == b"row":
            row = decode_row_event(push)
            if row.mode & Mode.REMOVED:
                watch = self._rows.pop(row.trigger_id, None)
                if watch is not None:
                    watch._remove = None
            else:
                watch = self._rows.get(row.trigger_id)
            return None if watch is None else (watch.handler, row)
        _, event = decode_event(push)
        if event.mode & Mode.REMOVED:
            obj = self._handlers.pop(event.trigger_id, None)
        else:
            obj = self._handlers.get(event.trigger_id)
        return None if obj is None else (obj.handler, event)

    def _removed_events(self) -> list[Delivery]:
        """The last events of every handler when the connection ends."""
        handlers, self._handlers = self._handlers, {}
        rows, self._rows = self._rows, {}
        for watch in rows.values():
            watch._remove = None
        return [(obj.handler, Event(Mode.REMOVED, None, qid, 0))
                for qid, obj in sorted(handlers.items())] + \
            [(w.handler, RowEvent(Mode.REMOVED, None, w.names, qid, 0))
             for qid, w in sorted(rows.items())]

    def _closed_error(self) -> EngineClosed:
        if self._expired and not self._quitting:
            return SessionExpired(f"the session with {self.url} was lost: {self._lost}")
        if self._lost is not None and not self._quitting:
            return EngineClosed(f"the connection to {self.url} was lost: {self._lost}")
        return EngineClosed("the client is closed")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.url} {state}>"


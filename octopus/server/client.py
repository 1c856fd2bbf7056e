"""``octopus.connect(url)``: the engine's API over the network, and its asyncio twin.

:class:`Client` has the methods of :class:`octopus.Session` with the same signatures,
results and exceptions, so code written against a session (the recipes among it) runs
unchanged against a server. :class:`AsyncClient` is the same API with ``await``.

How it works (the protocol is in docs/server.md):

1. One connection is one server-side session: ``session()`` opens another connection,
   ``close()`` ends it (the server deletes its ephemeral records, triggers and
   subscriptions before it answers ``QUIT``).
2. The connection speaks RESP3 with records in the TAGGED format, so records, events
   and errors come back typed: a ``NotFound`` on the server is a :class:`NotFound` here.
3. Requests are pipelined: any number of threads (or tasks) may call at once; replies
   come back in order and are matched to their callers by a FIFO.
4. Events arrive as RESP3 pushes. The sync client runs handlers on its own dispatcher
   thread (as the engine does), the async client on its event loop; events of one
   trigger arrive in order. A trigger is registered when its reply is read, before the
   next frame, so no event can arrive for an unknown trigger.
5. When the connection is lost, every pending call raises :class:`EngineClosed` and
   every trigger and subscription gets its final ``REMOVED`` event, as when a session
   closes.
6. Parameters are checked locally with the query's placeholders, so a wrong type is the
   same ``ParameterError`` as in-process; they travel as text and the server types them
   again by the same placeholders.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from octopus import errors
from octopus.errors import (
    EngineClosed,
    NotFound,
    OctopusError,
    ParseError,
    QueryError,
    TriggerNotFound,
    WaitTimeout,
)
from octopus.events import Dispatcher, Event, Handler, Mode, Subscription, Trigger
from octopus.query.ast import bind
from octopus.query.parser import parse
from octopus.recipes import Barrier, Election, Lock, NameService, ReadWriteLock, Semaphore
from octopus.record import Atom, Record, Value

from .resp import ProtocolError, Push, ReplyError, encode_command, reply_parser

__all__ = ["AsyncClient", "AuthenticationError", "Client", "connect", "connect_async",
           "parse_url"]

DEFAULT_URL = "tcp://127.0.0.1:6380"
_NO_LIMIT = 1 << 40


class AuthenticationError(OctopusError):
    """Raised when the server refuses the password (or wants one that was not given)."""


# --- the wire format, without I/O --------------------------------------------------------


def parse_url(url: str) -> tuple[str, Any]:
    """``unix:///path`` -> ("unix", path); ``tcp://host:port`` -> ("tcp", (host, port))."""
    if not isinstance(url, str):
        raise QueryError(f"a server URL must be a str, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise QueryError(f"no socket path in {url!r}")
        return "unix", path
    if parts.scheme in ("tcp", "redis"):
        try:
            port = parts.port or 6380
        except ValueError:
            raise QueryError(f"invalid port in {url!r}") from None
        return "tcp", (parts.hostname or "127.0.0.1", port)
    raise QueryError(f"unsupported server URL {url!r}: use unix:///path or tcp://host:port")


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


_ERRORS: dict[str, type[OctopusError]] = {
    name: getattr(errors, name) for name in errors.__all__
}
_PARSE_POSITION = re.compile(r"^(.*) at line (\d+), column (\d+)$", re.S)


def error_from_reply(reply: ReplyError) -> OctopusError:
    """The exception a server error reply stands for."""
    code, message = reply.code, reply.message
    if code == "ParseError":
        m = _PARSE_POSITION.match(message)
        if m:
            return ParseError(m.group(1), line=int(m.group(2)), column=int(m.group(3)),
                              text="")
    if code in ("NOAUTH", "WRONGPASS"):
        return AuthenticationError(str(reply))
    cls = _ERRORS.get(code)
    if cls is None:
        return OctopusError(str(reply))
    return cls(message)


def _check(reply: Any) -> Any:
    if type(reply) is ReplyError:
        raise error_from_reply(reply)
    return reply


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


def _decode_ok(reply: Any) -> None:
    _check(reply)


def decode_event(push: Push) -> tuple[bytes, Event]:
    """``[kind, id, mode, revision, record]`` -> (kind, Event)."""
    kind, qid, mode, revision, record = push
    event_mode = Mode(0)
    for name in mode.decode().split("|"):
        event_mode |= Mode[name]
    rec = decode_record(record) if record is not None else None
    return kind, Event(event_mode, rec, qid, revision)


_ON = {Mode.ON_SET: "SET", Mode.ON_DEL: "DEL", Mode.ON_SET | Mode.ON_DEL: "SETDEL"}


class _Request:
    """One command: its bytes, how to decode its reply, and what to do with a trigger."""

    __slots__ = ("data", "decode", "obj", "query")

    def __init__(self, args: list[Any], decode: Callable[[Any], Any],
                 obj: Trigger | Subscription | None = None) -> None:
        self.data = encode_command(args)
        self.decode = decode
        self.obj = obj
        self.query = args[1] if obj is not None else None


def _check_trigger(trigger: Trigger | None) -> None:
    if trigger is None:
        return
    if not isinstance(trigger, Trigger):
        raise QueryError(f"trigger must be an octopus.Trigger, got {type(trigger).__name__}")
    if trigger.installed:
        raise QueryError("this Trigger object is already installed; make a new one")


def _triggered(cmd: str, q: str, params: tuple[object, ...], decode: Callable[[Any], Any],
               trigger: Trigger | None, extra: tuple[str, ...] = ()) -> _Request:
    """A store command, with the trigger options when a trigger is given."""
    args = [cmd, *_query_args(q, params), *extra]
    if trigger is None:
        return _Request(args, decode)
    _check_trigger(trigger)
    args += ["TRIGGER", _ON[trigger.on], "PERSIST" if trigger.persist else "ONCE",
             trigger.install_if.upper()]

    def decode_pair(reply: Any) -> Any:
        return decode(_check(reply)[1])

    return _Request(args, decode_pair, trigger)


class _Requests:
    """The commands of the API, shared by the sync and async clients."""

    @staticmethod
    def get(q: str, params: tuple[object, ...], trigger: Trigger | None) -> _Request:
        return _triggered("GET", q, params, decode_record, trigger)

    @staticmethod
    def get_names(q: str, params: tuple[object, ...], trigger: Trigger | None) -> _Request:
        return _triggered("NAMES", q, params, _decode_names, trigger)

    @staticmethod
    def get_all(q: str, params: tuple[object, ...]) -> _Request:
        return _Request(["GETALL", *_query_args(q, params)], _decode_records)

    @staticmethod
    def exists(q: str, params: tuple[object, ...], trigger: Trigger | None) -> _Request:
        return _triggered("EXISTS", q, params, _decode_bool, trigger)

    @staticmethod
    def set(rec: str, params: tuple[object, ...], sequential: bool, ephemeral: bool,
            trigger: Trigger | None) -> _Request:
        extra = (("SEQUENTIAL",) if sequential else ()) + (("EPHEMERAL",) if ephemeral else ())
        return _triggered("SET", rec, params, decode_record, trigger, extra)

    @staticmethod
    def delete(q: str, params: tuple[object, ...], trigger: Trigger | None) -> _Request:
        return _triggered("DEL", q, params, decode_record, trigger)

    @staticmethod
    def watch(q: str, handler: Handler, params: tuple[object, ...], on: Mode, persist: bool,
              existing: bool) -> _Request:
        trigger = Trigger(handler, on=on, persist=persist)
        flags = [*(("SET",) if on & Mode.ON_SET else ()), *(("DEL",) if on & Mode.ON_DEL else ()),
                 "PERSIST" if persist else "ONCE", *(("EXISTING",) if existing else ())]
        return _Request(["WATCH", *_query_args(q, params), *flags],
                        lambda reply: trigger, trigger)

    @staticmethod
    def remove_trigger(trigger: Trigger | int) -> _Request:
        qid = trigger.id if isinstance(trigger, Trigger) else trigger
        if isinstance(qid, bool) or not isinstance(qid, int) or qid < 0:
            raise TriggerNotFound(f"no installed trigger {qid!r}")
        return _Request(["UNWATCH", str(qid)], _decode_ok)

    @staticmethod
    def subscribe(q: str, handler: Handler, params: tuple[object, ...]) -> _Request:
        if not callable(handler):
            raise QueryError("a subscription's handler must be callable")
        sub = Subscription(handler, q, 0)
        return _Request(["SUBSCRIBE", *_query_args(q, params)], lambda reply: sub, sub)

    @staticmethod
    def unsubscribe(subscription: Subscription | int) -> _Request:
        qid = subscription.id if isinstance(subscription, Subscription) else subscription
        if isinstance(qid, bool) or not isinstance(qid, int) or qid < 0:
            raise TriggerNotFound(f"no subscription {qid!r}")
        return _Request(["UNSUBSCRIBE", str(qid)], _decode_ok)

    @staticmethod
    def publish(message: str, params: tuple[object, ...]) -> _Request:
        return _Request(["PUBLISH", *_query_args(message, params)], _decode_int)


def _installed_id(reply: Any, obj: Trigger | Subscription) -> int | None:
    """The id the server gave ``obj`` (None if it was not installed)."""
    if type(reply) is ReplyError:
        return None
    if isinstance(obj, Subscription) or isinstance(reply, int):
        return reply if isinstance(reply, int) else None
    return reply[0] if isinstance(reply, list) and reply[0] is not None else None


class _Base:
    """State shared by both clients: the URL, the FIFO, the installed handlers."""

    def __init__(self, url: str, password: str | None, name: str | None) -> None:
        self.url = url
        self._address = parse_url(url)
        self._password = password
        self._name = name
        self._pending: deque[Any] = deque()
        self._handlers: dict[int, Trigger | Subscription] = {}
        self._closed = False
        self._quitting = False
        self._lost: str | None = None

    def _handshake(self) -> list[_Request]:
        hello = ["HELLO", "3"]
        if self._password is not None:
            hello += ["AUTH", "default", self._password]
        if self._name:
            hello += ["SETNAME", self._name]
        return [_Request(hello, _check), _Request(["CLIENT", "FORMAT", "TAGGED"], _check)]

    def _on_reply(self, request: _Request, reply: Any) -> None:
        """Runs where replies are read, before the next frame: registers triggers."""
        obj = request.obj
        if obj is None:
            return
        qid = _installed_id(reply, obj)
        if qid is None:
            return
        obj.id = qid
        if isinstance(obj, Trigger):
            obj.query = request.query
        self._handlers[qid] = obj

    def _event(self, push: Push) -> tuple[Handler, Event] | None:
        _, event = decode_event(push)
        if event.mode & Mode.REMOVED:
            obj = self._handlers.pop(event.trigger_id, None)
        else:
            obj = self._handlers.get(event.trigger_id)
        return None if obj is None else (obj.handler, event)

    def _removed_events(self) -> list[tuple[Handler, Event]]:
        """The last events of every handler when the connection ends."""
        handlers, self._handlers = self._handlers, {}
        return [(obj.handler, Event(Mode.REMOVED, None, qid, 0))
                for qid, obj in sorted(handlers.items())]

    def _closed_error(self) -> EngineClosed:
        if self._lost is not None and not self._quitting:
            return EngineClosed(f"the connection to {self.url} was lost: {self._lost}")
        return EngineClosed("the client is closed")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.url} {state}>"


def _open_socket(address: tuple[str, Any], timeout: float | None) -> socket.socket:
    kind, where = address
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(where)
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection(where, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    return sock


# --- the threaded client ------------------------------------------------------------------------


class _Pending:
    __slots__ = ("done", "error", "request", "value")

    def __init__(self, request: _Request) -> None:
        self.request = request
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class Client(_Base):
    """A connection to an Octopus server with the API of :class:`octopus.Session`.

    Thread-safe; a context manager. Handlers run on the client's dispatcher thread.
    """

    def __init__(self, url: str = DEFAULT_URL, *, password: str | None = None,
                 name: str | None = None, timeout: float | None = 10.0) -> None:
        super().__init__(url, password, name)
        self._timeout = timeout
        try:
            self._sock = _open_socket(self._address, timeout)
        except OSError as e:
            raise EngineClosed(f"cannot connect to {url}: {e}") from e
        self._send_lock = threading.Lock()
        self._parser = reply_parser()
        self._dispatcher = Dispatcher("octopus-client-events")
        self._reader = threading.Thread(target=self._read_loop, name="octopus-client-reader",
                                        daemon=True)
        self._reader.start()
        try:
            for reply in self._call_many(self._handshake()):
                if isinstance(reply, BaseException):
                    raise reply
        except BaseException:
            self._shutdown("handshake failed")
            raise

    # --- I/O ----------------------------------------------------------------------------

    def _call(self, request: _Request) -> Any:
        pending = _Pending(request)
        with self._send_lock:
            if self._closed:
                raise self._closed_error()
            self._pending.append(pending)
            try:
                self._sock.sendall(request.data)
            except OSError as e:
                self._lost = self._lost or str(e)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.value

    def _call_many(self, requests: list[_Request]) -> list[Any]:
        """Pipeline ``requests``; each result or exception, in order."""
        pendings = [_Pending(r) for r in requests]
        with self._send_lock:
            if self._closed:
                raise self._closed_error()
            self._pending.extend(pendings)
            with contextlib.suppress(OSError):
                self._sock.sendall(b"".join(r.data for r in requests))
        out = []
        for p in pendings:
            p.done.wait()
            out.append(p.error if p.error is not None else p.value)
        return out

    def _read_loop(self) -> None:
        parser = self._parser
        reason = "the server closed the connection"
        try:
            while True:
                data = self._sock.recv(1 << 16)
                if not data:
                    break
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    if type(reply) is Push:
                        delivery = self._event(reply)
                        if delivery is not None:
                            self._dispatcher.put(*delivery)
                        continue
                    pending = self._pending.popleft()
                    self._on_reply(pending.request, reply)
                    try:
                        pending.value = pending.request.decode(reply)
                    except Exception as e:
                        pending.error = e
                    pending.done.set()
        except OSError as e:
            reason = str(e)
        except Exception as e:           # a protocol error: the stream is unusable
            reason = f"{type(e).__name__}: {e}"
        self._shutdown(reason)

    def _shutdown(self, reason: str) -> None:
        with self._send_lock:
            if not self._closed:
                self._closed = True
                if self._lost is None:
                    self._lost = reason
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            pending, self._pending = list(self._pending), deque()
        error = self._closed_error()
        for p in pending:
            if not p.done.is_set():
                p.error = error
                p.done.set()
        self._dispatcher.put_many(self._removed_events())
        self._dispatcher.stop(timeout=None)

    # --- the store ----------------------------------------------------------------------

    def get(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        """The first record matching ``q`` in natural name order; NotFound if none."""
        return self._call(_Requests.get(q, params, trigger))  # type: ignore[no-any-return]

    def get_names(self, q: str, *params: object, trigger: Trigger | None = None) -> list[str]:
        """All names matching ``q``, in natural order (``[]`` if none)."""
        return self._call(_Requests.get_names(q, params, trigger))  # type: ignore[no-any-return]

    def get_all(self, q: str, *params: object) -> list[Record]:
        """All records matching ``q``, in natural name order."""
        return self._call(_Requests.get_all(q, params))  # type: ignore[no-any-return]

    def exists(self, q: str, *params: object, trigger: Trigger | None = None) -> bool:
        """Whether any record matches ``q``."""
        return self._call(_Requests.exists(q, params, trigger))  # type: ignore[no-any-return]

    def set(self, rec: str, *params: object, sequential: bool = False, ephemeral: bool = False,
            trigger: Trigger | None = None) -> Record:
        """Store (replace) a record; see :meth:`octopus.Session.set`. Ephemeral records
        belong to this connection."""
        return self._call(  # type: ignore[no-any-return]
            _Requests.set(rec, params, sequential, ephemeral, trigger))

    def delete(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        """Delete the named record if it matches ``q``; return it. NotFound otherwise."""
        return self._call(_Requests.delete(q, params, trigger))  # type: ignore[no-any-return]

    # --- triggers, waiting, publish/subscribe ---------------------------------------------

    def watch(self, q: str, handler: Handler, *params: object,
              on: Mode = Mode.ON_SET | Mode.ON_DEL, persist: bool = True) -> Trigger:
        """Install a trigger on ``q`` for future changes; returns it."""
        return self._call(  # type: ignore[no-any-return]
            _Requests.watch(q, handler, params, on, persist, existing=False))

    def watch_existing(self, q: str, handler: Handler, *params: object,
                       on: Mode = Mode.ON_SET | Mode.ON_DEL) -> Trigger:
        """ON_SET events for every current match (natural name order), then future changes."""
        return self._call(  # type: ignore[no-any-return]
            _Requests.watch(q, handler, params, on, True, existing=True))

    def remove_trigger(self, trigger: Trigger | int) -> None:
        """Remove an installed trigger; its handler gets a last event with mode REMOVED."""
        self._call(_Requests.remove_trigger(trigger))

    def wait_for(self, q: str, *params: object, timeout: float | None = None) -> Record:
        """The first record matching ``q`` now, else the first one set later
        (WaitTimeout after ``timeout`` seconds). Must not be called from a handler."""
        if threading.current_thread() is self._dispatcher.thread:
            raise OctopusError("wait_for from an event handler would deadlock the dispatcher")
        arrived = threading.Event()
        events: list[Event] = []

        def handler(event: Event) -> None:
            events.append(event)
            arrived.set()

        trigger = Trigger(handler, on=Mode.ON_SET, install_if="missing")
        try:
            return self.get(q, *params, trigger=trigger)
        except NotFound:
            pass
        try:
            if not arrived.wait(timeout):
                raise WaitTimeout(f"no record matching {q!r} within {timeout} s")
        finally:
            with contextlib.suppress(TriggerNotFound, EngineClosed):
                self.remove_trigger(trigger)
        record = events[0].record
        if record is None:
            raise self._closed_error() if self._closed else EngineClosed("closed while waiting")
        return record

    def subscribe(self, q: str, handler: Handler, *params: object) -> Subscription:
        """Receive every message published from now on that matches ``q``."""
        return self._call(_Requests.subscribe(q, handler, params))  # type: ignore[no-any-return]

    def unsubscribe(self, subscription: Subscription | int) -> None:
        """End a subscription; its handler gets a last event with mode REMOVED."""
        self._call(_Requests.unsubscribe(subscription))

    def publish(self, message: str, *params: object) -> int:
        """Deliver ``message`` to every matching subscription; return how many."""
        return self._call(_Requests.publish(message, params))  # type: ignore[no-any-return]

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event the server queued so far has been handled here.
        Returns at once when called from a handler."""
        if threading.current_thread() is self._dispatcher.thread:
            return True
        if not self._closed:
            with contextlib.suppress(EngineClosed):   # lost meanwhile: no more events
                self._call(_Request(["FLUSH"], _decode_ok))
        return self._dispatcher.flush(timeout)

    # --- recipes: the same factories as Session (records belong to this connection) -----

    def lock(self, name: str, identifier: str | None = None) -> Lock:
        """A FIFO lock with fencing tokens (:mod:`octopus.recipes.lock`)."""
        return Lock(self, name, identifier)

    def rwlock(self, name: str, identifier: str | None = None) -> ReadWriteLock:
        """A reader/writer lock (:mod:`octopus.recipes.rwlock`)."""
        return ReadWriteLock(self, name, identifier)

    def barrier(self, name: str, n: int) -> Barrier:
        """A double barrier for ``n`` parties (:mod:`octopus.recipes.barrier`)."""
        return Barrier(self, name, n)

    def semaphore(self, name: str, value: int = 1) -> Semaphore:
        """A counting semaphore (:mod:`octopus.recipes.semaphore`)."""
        return Semaphore(self, name, value)

    def election(self, name: str, identifier: str | None = None) -> Election:
        """A leader election (:mod:`octopus.recipes.election`)."""
        return Election(self, name, identifier)

    @property
    def names(self) -> NameService:
        """The name service (:mod:`octopus.recipes.names`)."""
        return NameService(self)

    # --- sessions ---------------------------------------------------------------------------

    def session(self) -> Client:
        """A new session: another connection to the same server (a context manager)."""
        if self._closed:
            raise self._closed_error()
        return Client(self.url, password=self._password, name=self._name,
                      timeout=self._timeout)

    @property
    def revision(self) -> int:
        """The server's current revision."""
        return self._call(_Request(["REVISION"], _decode_int))  # type: ignore[no-any-return]

    @property
    def closed(self) -> bool:
        return self._closed

    def info(self) -> str:
        """The server's INFO text."""
        return self._call(_Request(["INFO"], lambda r: _check(r).decode()))  # type: ignore[no-any-return]

    def close(self) -> None:
        """End the session: the server deletes its ephemeral records and removes its
        triggers and subscriptions before this returns (each handler gets REMOVED)."""
        if self._closed:
            return
        self._quitting = True
        with contextlib.suppress(OctopusError):
            self._call(_Request(["QUIT"], _check))
        self._shutdown("closed")
        if threading.current_thread() is not self._reader:
            self._reader.join(5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str = DEFAULT_URL, *, password: str | None = None, name: str | None = None,
            timeout: float | None = 10.0) -> Client:
    """Connect to an Octopus server: ``unix:///path`` or ``tcp://host:port``."""
    return Client(url, password=password, name=name, timeout=timeout)


# --- the asyncio client ------------------------------------------------------------------------


class _AsyncProtocol(asyncio.Protocol):
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.parser = reply_parser()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        client = self.client
        try:
            while (reply := self.parser.gets()) is not False:
                if type(reply) is Push:
                    delivery = client._event(reply)
                    if delivery is not None:
                        client._deliver(*delivery)
                    continue
                request, future = client._pending.popleft()
                client._on_reply(request, reply)
                if future.done():
                    continue
                try:
                    future.set_result(request.decode(reply))
                except Exception as e:
                    future.set_exception(e)
        except Exception as e:
            client._lost_connection(f"{type(e).__name__}: {e}")
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost_connection(str(exc) if exc else "the server closed the connection")


class AsyncClient(_Base):
    """The asyncio twin of :class:`Client`: the same methods, awaited. Handlers run on the
    event loop, in order; a handler that returns an awaitable is run as a task, and
    ``flush()`` waits for those tasks too. Create with :func:`connect_async`."""

    def __init__(self, url: str, password: str | None, name: str | None) -> None:
        super().__init__(url, password, name)
        self._transport: asyncio.Transport | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    async def _open(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        kind, where = self._address
        try:
            if kind == "unix":
                coro = loop.create_unix_connection(lambda: _AsyncProtocol(self), where)
            else:
                coro = loop.create_connection(lambda: _AsyncProtocol(self), *where)
            transport, _ = await asyncio.wait_for(coro, timeout)
        except (OSError, TimeoutError) as e:
            raise EngineClosed(f"cannot connect to {self.url}: {e}") from e
        self._transport = transport  # type: ignore[assignment]
        for request in self._handshake():
            try:
                await self._call(request)
            except BaseException:
                await self.close()
                raise

    def _call(self, request: _Request) -> asyncio.Future[Any]:
        if self._closed:
            raise self._closed_error()
        future = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        self._transport.write(request.data)  # type: ignore[union-attr]
        return future

    def _deliver(self, handler: Handler, event: Event) -> None:
        try:
            result = handler(event)
        except Exception:
            import logging

            logging.getLogger("octopus.client").exception(
                "handler of trigger %s raised on %s event", event.trigger_id, event.mode)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _lost_connection(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._lost = self._lost or reason
        error = self._closed_error()
        pending, self._pending = self._pending, deque()
        for _, future in pending:
            if not future.done():
                future.set_exception(error)
        for handler, event in self._removed_events():
            self._deliver(handler, event)

    # --- the API --------------------------------------------------------------------------

    async def get(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        return await self._call(_Requests.get(q, params, trigger))  # type: ignore[no-any-return]

    async def get_names(self, q: str, *params: object,
                        trigger: Trigger | None = None) -> list[str]:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.get_names(q, params, trigger))

    async def get_all(self, q: str, *params: object) -> list[Record]:
        return await self._call(_Requests.get_all(q, params))  # type: ignore[no-any-return]

    async def exists(self, q: str, *params: object, trigger: Trigger | None = None) -> bool:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.exists(q, params, trigger))

    async def set(self, rec: str, *params: object, sequential: bool = False,
                  ephemeral: bool = False, trigger: Trigger | None = None) -> Record:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.set(rec, params, sequential, ephemeral, trigger))

    async def delete(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.delete(q, params, trigger))

    async def watch(self, q: str, handler: Handler, *params: object,
                    on: Mode = Mode.ON_SET | Mode.ON_DEL, persist: bool = True) -> Trigger:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.watch(q, handler, params, on, persist, existing=False))

    async def watch_existing(self, q: str, handler: Handler, *params: object,
                             on: Mode = Mode.ON_SET | Mode.ON_DEL) -> Trigger:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.watch(q, handler, params, on, True, existing=True))

    async def remove_trigger(self, trigger: Trigger | int) -> None:
        await self._call(_Requests.remove_trigger(trigger))

    async def wait_for(self, q: str, *params: object, timeout: float | None = None) -> Record:
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[Event] = loop.create_future()

        def handler(event: Event) -> None:
            if not arrived.done():
                arrived.set_result(event)

        trigger = Trigger(handler, on=Mode.ON_SET, install_if="missing")
        try:
            return await self.get(q, *params, trigger=trigger)
        except NotFound:
            pass
        try:
            event = await asyncio.wait_for(asyncio.shield(arrived), timeout)
        except TimeoutError:
            raise WaitTimeout(f"no record matching {q!r} within {timeout} s") from None
        finally:
            with contextlib.suppress(TriggerNotFound, EngineClosed):
                await self.remove_trigger(trigger)
        if event.record is None:
            raise self._closed_error() if self._closed else EngineClosed("closed while waiting")
        return event.record

    async def subscribe(self, q: str, handler: Handler, *params: object) -> Subscription:
        return await self._call(  # type: ignore[no-any-return]
            _Requests.subscribe(q, handler, params))

    async def unsubscribe(self, subscription: Subscription | int) -> None:
        await self._call(_Requests.unsubscribe(subscription))

    async def publish(self, message: str, *params: object) -> int:
        return await self._call(_Requests.publish(message, params))  # type: ignore[no-any-return]

    async def flush(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._flush(), timeout)
        except TimeoutError:
            return False
        return True

    async def _flush(self) -> None:
        await self._call(_Request(["FLUSH"], _decode_ok))
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def session(self) -> AsyncClient:
        if self._closed:
            raise self._closed_error()
        return await connect_async(self.url, password=self._password, name=self._name)

    async def revision(self) -> int:
        """The server's current revision (a coroutine here, a property on Client)."""
        return await self._call(_Request(["REVISION"], _decode_int))  # type: ignore[no-any-return]

    @property
    def closed(self) -> bool:
        return self._closed

    async def info(self) -> str:
        return await self._call(  # type: ignore[no-any-return]
            _Request(["INFO"], lambda r: _check(r).decode()))

    async def close(self) -> None:
        if not self._closed:
            self._quitting = True
            with contextlib.suppress(OctopusError):
                await self._call(_Request(["QUIT"], _check))
            self._lost_connection("closed")
        if self._transport is not None:
            self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect_async(url: str = DEFAULT_URL, *, password: str | None = None,
                        name: str | None = None, timeout: float | None = 10.0) -> AsyncClient:
    """Connect an :class:`AsyncClient` (``await octopus.connect_async(url)``)."""
    client = AsyncClient(url, password, name)
    await client._open(timeout)
    return client

"""``octopus.connect(url)``: the engine's API over the network, as a threaded client.

:class:`Client` has the methods of :class:`octopus.Session` with the same signatures,
results and exceptions, so code written against a session (the recipes among it) runs
unchanged against a server. :class:`~octopus.server.async_client.AsyncClient` (in its own
module) is the same API with ``await``; :mod:`octopus.server.client_base` is what the
two share, without I/O.

How both work (the protocol is in docs/server.md):

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
5. When the session ends (``close()``, or lost: see 8), every pending call raises
   :class:`EngineClosed` (:class:`SessionExpired` when it expired) and every trigger and
   subscription gets its final ``REMOVED`` event, as when a session closes. A client
   given several URLs of a cluster fails over to another node instead (docs/cluster.md).
6. Parameters are checked locally with the query's placeholders, so a wrong type is the
   same ``ParameterError`` as in-process; they travel as text and the server types them
   again by the same placeholders.
7. **The session outlives a blip** (docs/server.md): at connect the client asks for a
   resumable session (``SESSION TIMEOUT session_timeout``) and gets its id and secret.
   When the connection drops the server keeps the session for that long; the client
   (its reader thread, or a task of the async client) reconnects with backoff and
   sends ``SESSION RESUME id secret n``, where n counts the event frames it has read,
   so the server sends the missed ones exactly once, in order, before anything else.
   Listeners hear SUSPENDED, then CONNECTED (or LOST). Calls made meanwhile wait;
   reads in flight are sent again, other calls in flight raise :class:`Unavailable`.
8. The session is LOST when it cannot be resumed: the server expired it (not resumed
   within its timeout, or its missed events no longer all kept), or the client gave up
   after the timeout; the client is then closed.
9. **Timeouts**: ``timeout`` bounds connecting and the handshake; ``socket_timeout``
   every call (no reply within it: :class:`WaitTimeout`, and the connection is deemed
   dead and resumed); a deadline set with :func:`octopus.deadline.within` (``wait_for``,
   ``Lock.acquire``) bounds the calls made under it, at least
   :data:`~octopus.deadline.MIN_CALL` each. A call abandoned that way leaves nothing
   behind when that can be known: a trigger installed late is removed, a sequential
   ephemeral record set late (a lock's entry) is deleted.
10. **Health**: when nothing arrived for ``health_check_interval`` (a third of the
    session timeout by default) the idle client sends PING; TCP connections have
    keepalive. A call or PING unanswered for ``socket_timeout`` drops the connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from octopus.bulk import load_requests, shifted
from octopus.deadline import budget, within
from octopus.errors import (
    EngineClosed,
    OctopusError,
    QueryError,
    Unavailable,
    WaitTimeout,
)
from octopus.events import Dispatcher, Event, Handler, Mode, Subscription, Trigger
from octopus.explain import DEFAULT_LIMIT, WaitExplanation
from octopus.recipes.factories import RecipeFactories
from octopus.record import Record
from octopus.rules import RowHandler, RuleWatch
from octopus.waiting import check_timeout, wait_for

from .client_base import (
    DEFAULT_URL,
    EVENT_PUSHES,
    ConnectionState,
    R,
    _Base,
    _check,
    _decode_float,
    _decode_int,
    _decode_ok,
    _decode_text,
    _Request,
    _Requests,
    parse_url,
    redact_url,
    tls_context,
    url_options,
)
from .resp import Push, ReplyError, reply_parser
from .sessions import keepalive
from .tls import TLSSocket

__all__ = ["Client", "connect"]

log = logging.getLogger("octopus.client")


def _urls(url: str | Sequence[str]) -> list[str]:
    """One URL, several separated by commas, or a list of them."""
    if isinstance(url, str):
        urls = [u.strip() for u in url.split(",") if u.strip()]
    elif isinstance(url, Sequence) and all(isinstance(u, str) for u in url):
        urls = [u.strip() for u in url]
    else:
        raise QueryError(f"a server URL must be a str or a list of str, got {url!r}")
    if not urls:
        raise QueryError("no server URL given")
    for u in urls:
        url_options(u)              # the scheme, and the options of every URL, checked now
    return urls


def _listener_call(listener: Callable[[ConnectionState], None],
                   state: ConnectionState) -> Handler:
    def call(_: Event) -> None:
        try:
            listener(state)
        except Exception:
            log.exception("connection-state listener %r raised on %s", listener, state.value)

    return call


_STATE_EVENT = Event(Mode.REMOVED, None, 0, 0)    # a placeholder: listeners get the state


def _roundtrip(sock: socket.socket, requests: list[_Request[Any]]) -> tuple[list[Any], Any]:
    """Send ``requests`` on a fresh connection and read their replies (the handshake,
    before the reader thread reads that socket): each result or exception, and the
    parser, which may hold what followed (pushed events after a resume)."""
    sock.sendall(b"".join(r.data for r in requests))
    parser = reply_parser()
    replies: list[Any] = []
    while len(replies) < len(requests):
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        parser.feed(data)
        while len(replies) < len(requests) and (reply := parser.gets()) is not False:
            if type(reply) is Push:
                continue
            request = requests[len(replies)]
            try:
                replies.append(request.decode(reply))
            except Exception as e:
                replies.append(e)
    return replies, parser


def _open_socket(address: tuple[str, Any], timeout: float | None,
                 tls: ssl.SSLContext | None = None) -> Any:
    """A connected socket (a :class:`TLSSocket` for a ``rediss://`` address)."""
    kind, where = address
    sock: Any
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
        keepalive(sock)
        if tls is not None:
            sock = TLSSocket(sock, tls, where[0])
    return sock


def _ignore(reply: Any) -> None:
    return None


def _session_grant(reply: Any) -> tuple[int, str, float] | None:
    """A single server's SESSION reply (a map): id, secret, timeout in seconds."""
    reply = _check(reply)
    if not isinstance(reply, dict):
        return None
    return (int(reply[b"id"]), reply[b"secret"].decode(), reply[b"timeout_ms"] / 1000)


# --- the threaded client ------------------------------------------------------------------------


class _Pending:
    __slots__ = ("abandoned", "done", "error", "request", "sent", "value")

    def __init__(self, request: _Request[Any], abandoned: bool = False) -> None:
        self.request = request
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.sent = 0.0
        self.abandoned = abandoned          # nobody waits for its reply any more


class Client(_Base, RecipeFactories):
    """A connection to an Octopus server with the API of :class:`octopus.Session`.

    Thread-safe; a context manager. Handlers and listeners run on the client's
    dispatcher thread. The session's lifetime and the timeouts are in the module's
    docstring (points 7 to 10).
    """

    def __init__(self, url: str | Sequence[str] = DEFAULT_URL, *, password: str | None = None,
                 name: str | None = None, timeout: float | None = 10.0,
                 socket_timeout: float | None = 10.0, session_timeout: float | None = 5.0,
                 health_check_interval: float | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        urls = _urls(url)
        self._urls = urls
        self._timeout = check_timeout(timeout, "timeout")
        self._socket_timeout = check_timeout(socket_timeout, "socket_timeout") or None
        self._session_timeout = check_timeout(session_timeout, "session_timeout")
        self._health = check_timeout(health_check_interval, "health_check_interval")
        self._seen = 0                                  # the highest revision seen
        self._resume: tuple[int, str, int] | None = None   # a replica's lease, secret, TTL
        self._session: tuple[int, str, float] | None = None  # id, secret, timeout (granted)
        self._events = 0                # event frames read (the resume point)
        self._listeners: list[Callable[[ConnectionState], None]] = []
        self._suspended = False
        self._unsent: list[_Pending] = []   # calls made while suspended, and reads to redo
        self._drop_reason: str | None = None
        self._heard = time.monotonic()
        self._send_lock = threading.Lock()
        self._dispatcher = Dispatcher("octopus-client-events")
        failures = []
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        with within(deadline):
            for i, u in enumerate(urls):
                super().__init__(u, password, name, ssl_context)
                try:
                    self._sock, self._parser = self._open(self._address, first=True,
                                                          ask_session=len(urls) == 1)
                    self._urls = urls[i:] + urls[:i]
                    break
                except (OSError, WaitTimeout) as e:
                    failures.append(f"{self.url}: {str(e) or type(e).__name__}")
                except BaseException:
                    self._dispatcher.stop(timeout=None)
                    raise
            else:
                self._dispatcher.stop(timeout=None)
                raise EngineClosed(f"cannot connect to {', '.join(failures)}")
        self._reader = threading.Thread(target=self._read_loop, name="octopus-client-reader",
                                        daemon=True)
        self._reader.start()
        if len(self._urls) > 1:
            try:
                self._resume = self._resumable()
            except BaseException:
                self._shutdown("handshake failed")
                raise

    def _open(self, address: tuple[str, Any], *, first: bool,
              ask_session: bool) -> tuple[socket.socket, Any]:
        """A connected, handshaken socket and its parser, within the current budget:
        opened (``first``) or resuming this client's session."""
        limit, _ = budget(self._timeout)
        if limit is not None and limit <= 0:
            raise WaitTimeout("no time left to connect")
        sock = _open_socket(address, limit, self._tls)
        try:
            requests = self._handshake()
            if first and ask_session and self._session_timeout:
                requests.append(_Request(["SESSION", "TIMEOUT", repr(self._session_timeout)],
                                         lambda r: r))
            elif not first:
                assert self._session is not None
                sid, secret, _ = self._session
                requests.append(_Request(["SESSION", "RESUME", str(sid), secret,
                                          str(self._events)], _decode_ok))
            limit, _ = budget(self._timeout)
            sock.settimeout(limit)
            try:
                replies, parser = _roundtrip(sock, requests)
            except TimeoutError:
                raise WaitTimeout(f"no answer from {self.url} within the connect "
                                  "timeout") from None
            for reply in replies[:len(requests) - (1 if len(requests) > 2 else 0)]:
                if isinstance(reply, BaseException):
                    raise reply
            if len(requests) > 2:
                last = replies[-1]
                if first:
                    if type(last) is not ReplyError:   # else: no resumable sessions there
                        self._session = _session_grant(last)
                elif isinstance(last, BaseException):
                    raise last
            sock.settimeout(self._socket_timeout)
            return sock, parser
        except BaseException:
            sock.close()
            raise

    def _resumable(self) -> tuple[int, str, int] | None:
        """Ask for a resumable session (a cluster replica grants one); None from a
        server that is not a replica (there is nothing to fail over to)."""
        try:
            reply = self._call(_Request(["SESSION"], _check))
        except QueryError:
            return None
        if isinstance(reply, dict):        # a single server's session: resumed there
            self._session = _session_grant(reply)
            return None
        lease, secret, ttl = reply
        return int(lease), secret.decode(), int(ttl)

    # --- connection states -------------------------------------------------------------

    def add_listener(self, listener: Callable[[ConnectionState], None]) -> None:
        """Call ``listener(state)`` on every change of the connection's state (see
        :class:`ConnectionState`). Listeners run on the client's dispatcher thread (the
        thread of the handlers), in order with the events; they must not block."""
        if not callable(listener):
            raise QueryError("a listener must be callable")
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[ConnectionState], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _tell(self, state: ConnectionState) -> None:
        for listener in list(self._listeners):
            self._dispatcher.put(_listener_call(listener, state), _STATE_EVENT)

    @property
    def state(self) -> ConnectionState:
        if self._closed:
            return ConnectionState.LOST
        return ConnectionState.SUSPENDED if self._suspended else ConnectionState.CONNECTED

    # --- I/O ----------------------------------------------------------------------------

    def _send_locked(self, pendings: list[_Pending]) -> None:
        """Send (the send lock held); a failed send drops the connection, and the reader
        then deals with what was in flight."""
        now = time.monotonic()
        for p in pendings:
            p.sent = now
        self._pending.extend(pendings)
        try:
            self._sock.sendall(b"".join(p.request.data for p in pendings))
        except OSError as e:
            self._drop_locked(f"sending failed: {str(e) or type(e).__name__}")

    def _drop_locked(self, reason: str) -> None:
        """Declare the connection dead: the reader sees it end and reconnects."""
        if self._suspended or self._closed:
            return
        self._drop_reason = self._drop_reason or reason
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _send_internal(self, request: _Request[Any]) -> None:
        """Send a request nobody waits for (a health check, an undo)."""
        with self._send_lock:
            if not self._closed and not self._suspended:
                self._send_locked([_Pending(request, abandoned=True)])

    def _call(self, request: _Request[R]) -> R:
        pending = _Pending(request)
        limit, by_deadline = budget(self._socket_timeout)
        with self._send_lock:
            if self._closed:
                raise self._closed_error()
            if self._suspended:
                self._unsent.append(pending)
            else:
                self._send_locked([pending])
        if not pending.done.wait(limit):
            with self._send_lock:
                if not pending.done.is_set():
                    pending.abandoned = True
                    if pending in self._unsent:
                        self._unsent.remove(pending)
                    elif not by_deadline:
                        self._drop_locked(f"no reply within {limit:g} s")
                    raise WaitTimeout(f"no reply from {self.url} within {limit:g} s")
        if pending.error is not None:
            raise pending.error
        return cast(R, pending.value)       # request.decode's, stored by the reader thread

    def _read_loop(self) -> None:
        while True:
            reason = self._read_replies()
            if self._quitting or self._closed:
                break
            if self._session is not None:
                if self._reconnect(reason):
                    continue
                break
            if self._resume is None or not self._fail_over(reason):
                break
        self._shutdown(reason)

    def _read_replies(self) -> str:
        """Read until the connection ends or is found dead; why it ended."""
        parser = self._parser
        sock = self._sock
        reason = "the server closed the connection"
        tick = self._health or 1.0
        if self._health is None and self._session is not None:
            tick = max(min(self._session[2] / 3, 5.0), 0.05)
        try:
            data = b""
            while True:
                if data:
                    parser.feed(data)
                while (reply := parser.gets()) is not False:
                    self._heard = time.monotonic()
                    self._reply(reply)
                ready, _, _ = select.select([sock], [], [], tick)
                if not ready:
                    if not self._check_health(tick):
                        return self._drop_reason or "the server stopped answering"
                    data = b""
                    continue
                data = sock.recv(1 << 16)
                if not data:
                    break
        except (OSError, ValueError) as e:
            reason = str(e) or type(e).__name__
        except Exception as e:           # a protocol error: the stream is unusable
            reason = f"{type(e).__name__}: {e}"
        return self._drop_reason or reason

    def _reply(self, reply: Any) -> None:
        if type(reply) is Push:
            if reply and reply[0] in EVENT_PUSHES:
                self._events += 1
            delivery = self._event(reply)
            if delivery is not None:
                self._dispatcher.put(*delivery)
            return
        pending = self._pending.popleft()
        request = pending.request
        self._on_reply(request, reply)
        if pending.abandoned:
            undo = request.undo
            if undo is not None and type(reply) is not ReplyError:
                args = undo(reply)
                if args is not None:
                    self._send_internal(_Request(args, _ignore))
            return
        try:
            value = pending.value = request.decode(reply)
            if type(value) is Record and value.revision > self._seen:
                self._seen = value.revision
        except Exception as e:
            pending.error = e
        pending.done.set()

    def _check_health(self, tick: float) -> bool:
        """Nothing arrived for ``tick`` seconds: False if the connection is dead (a call
        waited more than ``socket_timeout``); else send a PING when idle."""
        now = time.monotonic()
        with self._send_lock:
            oldest = self._pending[0].sent if self._pending else None
        limit = self._socket_timeout
        if oldest is not None:
            if limit is not None and now - oldest > limit:
                self._drop_reason = self._drop_reason or f"no reply within {limit:g} s"
                return False
        elif self._session is not None or self._health is not None:
            self._send_internal(_Request(["PING"], _ignore))
        return True

    def _reconnect(self, reason: str) -> bool:
        """Resume the session on a new connection (the reader thread; callers wait
        meanwhile). False when it cannot be resumed: the session is lost."""
        assert self._session is not None
        sid, _, session_timeout = self._session
        lost_at = time.monotonic()
        with self._send_lock:
            self._suspended = True
            in_flight, self._pending = list(self._pending), deque()
            with contextlib.suppress(OSError):
                self._sock.close()
            unknown = Unavailable(
                f"the connection to {self.url} was lost ({reason}) with the call in "
                "flight: its outcome is unknown; the client is resuming its session")
            redo = []
            for p in in_flight:
                if p.abandoned or p.done.is_set():
                    continue
                if p.request.idempotent:
                    redo.append(p)
                else:
                    p.error = unknown
                    p.done.set()
            self._unsent[:0] = redo
        log.info("connection to %s lost (%s); resuming session %d", self.url, reason, sid)
        self._tell(ConnectionState.SUSPENDED)
        # The server counts the timeout from when it noticed the loss, which may be later.
        deadline = lost_at + session_timeout + 1.0
        delay = 0.02
        while not self._closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return self._session_lost(f"{reason}; not resumed within "
                                          f"{session_timeout:g} s")
            try:
                with within(time.monotonic() + min(left, self._timeout or left)):
                    sock, parser = self._open(self._address, first=False, ask_session=True)
            except (OSError, WaitTimeout):
                time.sleep(min(delay * (0.5 + random.random()), max(left, 0)))
                delay = min(delay * 2, 1.0)
                continue
            except EngineClosed as e:
                return self._session_lost(f"{reason}; {e}")
            except OctopusError as e:
                return self._session_lost(f"{reason}; the server refused to resume: {e}")
            with self._send_lock:
                if self._closed:            # close() was called meanwhile
                    sock.close()
                    return False
                self._sock, self._parser = sock, parser
                self._drop_reason = None
                self._suspended = False
                self._heard = time.monotonic()
                resend = [p for p in self._unsent if not p.abandoned and not p.done.is_set()]
                self._unsent = []
                if resend:
                    self._send_locked(resend)
            log.info("session %d resumed on %s after %.3f s", sid, self.url,
                        time.monotonic() - lost_at)
            self._tell(ConnectionState.CONNECTED)
            return True
        return False

    def _session_lost(self, why: str) -> bool:
        self._expired = True
        self._lost = why
        log.info("session lost: %s", why)
        return False

    def _fail_over(self, reason: str) -> bool:
        """Move the session to another server (see point 5 of the module's docstring);
        False if none took it. Runs on the reader thread; callers wait meanwhile."""
        assert self._resume is not None
        lease, secret, ttl = self._resume
        lost = self.url
        with self._send_lock:
            pending, self._pending = list(self._pending), deque()
            with contextlib.suppress(OSError):
                self._sock.close()
        error = Unavailable(f"the connection to {lost} was lost ({reason}) with the call in "
                            "flight: its outcome is unknown; the client is failing over")
        for p in pending:
            if not p.abandoned:
                p.error = error
                p.done.set()
        self._dispatcher.put_many(self._removed_events())
        log.warning("connection to %s lost (%s); failing over", lost, reason)
        deadline = time.monotonic() + ttl
        with self._send_lock:
            while time.monotonic() < deadline and not self._closed:
                for i in range(1, len(self._urls) + 1):
                    url = self._urls[i % len(self._urls)]
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        sock = _open_socket(parse_url(url), min(left, 2.0),
                                            tls_context(url, self._ssl_context))
                    except OSError:
                        continue
                    try:
                        sock.settimeout(max(left, 1.0))
                        replies, parser = _roundtrip(sock, [
                            *self._handshake(),
                            _Request(["SESSION", "RESUME", str(lease), secret], _decode_ok),
                            _Request(["SYNC", str(self._seen)], _decode_int)])
                        sock.settimeout(self._socket_timeout)
                    except OSError:
                        sock.close()
                        continue
                    errors = [r for r in replies if isinstance(r, BaseException)]
                    if errors:
                        sock.close()
                        if isinstance(errors[0], EngineClosed):
                            self._lost = f"{reason}; the session could not be resumed: " \
                                         f"{errors[0]}"
                            return False
                        continue
                    self._sock = sock
                    self._parser = parser
                    self._drop_reason = None
                    self.url = redact_url(url)
                    self._address = parse_url(url)
                    self._tls = tls_context(url, self._ssl_context)
                    self._urls = self._urls[i % len(self._urls):] + \
                        self._urls[:i % len(self._urls)]
                    self._lost = None
                    log.warning("failed over from %s to %s; session resumed", lost, self.url)
                    return True
                time.sleep(0.1)
        self._lost = f"{reason}; no other server took the session within {ttl} s"
        return False

    def _shutdown(self, reason: str) -> None:
        with self._send_lock:
            first = not self._closed
            if first:
                self._closed = True
                if self._lost is None:
                    self._lost = reason
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            pending, self._pending = list(self._pending), deque()
            pending += self._unsent
            self._unsent = []
        error = self._closed_error()
        for p in pending:
            if not p.done.is_set():
                p.error = error
                p.done.set()
        self._dispatcher.put_many(self._removed_events())
        if first:
            self._tell(ConnectionState.LOST)
        self._dispatcher.stop(timeout=None)

    # --- the store ----------------------------------------------------------------------

    def get(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        """The first record matching ``q`` in natural name order; NotFound if none."""
        return self._call(_Requests.get(q, params, trigger))

    def get_names(self, q: str, *params: object, trigger: Trigger | None = None) -> list[str]:
        """All names matching ``q``, in natural order (``[]`` if none)."""
        return self._call(_Requests.get_names(q, params, trigger))

    def get_all(self, q: str, *params: object) -> list[Record]:
        """All records matching ``q``, in natural name order."""
        return self._call(_Requests.get_all(q, params))

    def exists(self, q: str, *params: object, trigger: Trigger | None = None) -> bool:
        """Whether any record matches ``q``."""
        return self._call(_Requests.exists(q, params, trigger))

    def set(self, rec: str, *params: object, sequential: bool = False, ephemeral: bool = False,
            trigger: Trigger | None = None) -> Record:
        """Store (replace) a record; see :meth:`octopus.Session.set`. Ephemeral records
        belong to this connection."""
        return self._call(
            _Requests.set(rec, params, sequential, ephemeral, trigger))

    def delete(self, q: str, *params: object, trigger: Trigger | None = None) -> Record:
        """Delete the named record if it matches ``q``; return it. NotFound otherwise."""
        return self._call(_Requests.delete(q, params, trigger))

    def load(self, source: str | os.PathLike[str] | Iterable[str], *, batch: int = 10_000,
             progress: Callable[[int], None] | None = None) -> int:
        """Store the records of a file (a path, or a binary file object) or of lines of
        text with the server's ``LOAD``: requests of about ``batch`` records (at most
        512 KiB), one at a time, each all or nothing; return how many were stored.
        Errors as :meth:`octopus.Session.load`: ``line`` counts in the whole input,
        ``loaded`` the records stored by earlier requests."""
        total = 0
        try:
            for first, text in load_requests(source, batch):
                try:
                    total += self._call(_Request([b"LOAD", text], _decode_int))
                except OctopusError as e:
                    raise shifted(e, first - 1, total) from None
                if progress is not None:
                    progress(total)
        except OctopusError as e:
            if not hasattr(e, "loaded"):
                e.loaded = total      # type: ignore[attr-defined]
            raise
        return total

    # --- triggers, waiting, publish/subscribe ---------------------------------------------

    def watch(self, q: str, handler: Handler, *params: object,
              on: Mode = Mode.ON_SET | Mode.ON_DEL, persist: bool = True) -> Trigger:
        """Install a trigger on ``q`` for future changes; returns it."""
        return self._call(
            _Requests.watch(q, handler, params, on, persist, existing=False))

    def watch_existing(self, q: str, handler: Handler, *params: object,
                       on: Mode = Mode.ON_SET | Mode.ON_DEL) -> Trigger:
        """ON_SET events for every current match (natural name order), then future changes."""
        return self._call(
            _Requests.watch(q, handler, params, on, True, existing=True))

    def remove_trigger(self, trigger: Trigger | int) -> None:
        """Remove an installed trigger; its handler gets a last event with mode REMOVED."""
        self._call(_Requests.remove_trigger(trigger))

    def wait_for(self, q: str, *params: object, timeout: float | None = None) -> Record:
        """The first record matching ``q`` now, else the first one set later
        (WaitTimeout after ``timeout`` seconds). Must not be called from a handler."""
        if threading.current_thread() is self._dispatcher.thread:
            raise OctopusError("wait_for from an event handler would deadlock the dispatcher")
        seconds = check_timeout(timeout)
        try:
            with within(None if seconds is None else time.monotonic() + seconds):
                return wait_for(self, q, params, timeout)
        except EngineClosed:
            raise self._closed_error() if self._closed else EngineClosed(
                "closed while waiting") from None

    def subscribe(self, q: str, handler: Handler, *params: object) -> Subscription:
        """Receive every message published from now on that matches ``q``."""
        return self._call(_Requests.subscribe(q, handler, params))

    def unsubscribe(self, subscription: Subscription | int) -> None:
        """End a subscription; its handler gets a last event with mode REMOVED."""
        self._call(_Requests.unsubscribe(subscription))

    def publish(self, message: str, *params: object) -> int:
        """Deliver ``message`` to every matching subscription; return how many."""
        return self._call(_Requests.publish(message, params))

    def explain_wait(self, q: str, *params: object,
                     limit: int = DEFAULT_LIMIT) -> WaitExplanation:
        """Why ``wait_for(q)`` would block, or not (as :meth:`octopus.Session.explain_wait`;
        sessions of the server's connections are named ``connection <id>``)."""
        return self._call(
            _Requests.explain_wait(q, params, limit))

    def watch_relation(self, relation: str, handler: RowHandler, *args: object,
                       on: Mode = Mode.ON_SET | Mode.ON_DEL,
                       existing: bool = False) -> RuleWatch:
        """Watch a relation declared by the server's loaded rules (``RWATCH``), its
        arguments sent as data (None: any value; a str is an identifier). The handler
        gets :class:`~octopus.RowEvent` values, as in-process."""
        return self._call(
            _Requests.watch_relation(relation, handler, args, on, existing))

    def remove_rule_watch(self, watch: RuleWatch | int) -> None:
        """Remove a derived watch of this connection; its handler gets REMOVED."""
        self._call(_Requests.remove_rule_watch(watch))

    def _unwatch_rule(self, watch: RuleWatch) -> None:
        self.remove_rule_watch(watch)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event the server queued so far has been handled here.
        Returns at once when called from a handler."""
        if threading.current_thread() is self._dispatcher.thread:
            return True
        if not self._closed:
            with contextlib.suppress(EngineClosed):   # lost meanwhile: no more events
                self._call(_Request(["FLUSH"], _decode_ok, idempotent=True))
        return self._dispatcher.flush(timeout)

    def on_handler_thread(self) -> bool:
        """Whether the caller is a handler of this connection's events (its dispatcher
        thread): a wait there could never see the event that ends it."""
        return threading.current_thread() is self._dispatcher.thread

    # --- consistency (docs/cluster.md) ----------------------------------------------------

    def sync(self, timeout: float | None = None) -> int:
        """See :meth:`octopus.Session.sync`: the server waits until it has applied every
        change committed before the call (within its own write timeout; ``timeout``
        bounds it in-process only). A server that is not a replica answers its
        revision."""
        try:
            revision: int = self._call(_Request(["SYNC"], _decode_int))
        except OctopusError as e:
            if "unknown command" not in str(e):
                raise
            revision = self._call(_Request(["REVISION"], _decode_int))
        self._seen = max(self._seen, revision)
        return revision

    def staleness(self) -> float:
        """See :meth:`octopus.Session.staleness` (of the server this client talks to)."""
        try:
            return self._call(_Request(["STALENESS"], _decode_float))
        except OctopusError as e:
            if "unknown command" not in str(e):
                raise
            return 0.0

    # --- sessions ---------------------------------------------------------------------------

    def session(self) -> Client:
        """A new session: another connection to the same server (a context manager);
        with several URLs, it fails over as this one does."""
        if self._closed:
            raise self._closed_error()
        return Client(self._urls, password=self._password, name=self._name,
                      timeout=self._timeout, socket_timeout=self._socket_timeout,
                      session_timeout=self._session_timeout,
                      health_check_interval=self._health)

    @property
    def revision(self) -> int:
        """The server's current revision."""
        return self._call(
            _Request(["REVISION"], _decode_int, idempotent=True))

    @property
    def closed(self) -> bool:
        return self._closed

    def info(self) -> str:
        """The server's INFO text."""
        return self._call(
            _Request(["INFO"], _decode_text, idempotent=True))

    def close(self) -> None:
        """End the session: the server deletes its ephemeral records and removes its
        triggers and subscriptions before this returns (each handler gets REMOVED)."""
        if self._closed:
            return
        self._quitting = True
        if not self._suspended:             # else the server lets the session expire
            with contextlib.suppress(OctopusError):
                self._call(_Request(["QUIT"], _check))
        self._shutdown("closed")
        if threading.current_thread() is not self._reader:
            self._reader.join(5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str | Sequence[str] = DEFAULT_URL, *, password: str | None = None,
            name: str | None = None, timeout: float | None = 10.0,
            socket_timeout: float | None = 10.0, session_timeout: float | None = 5.0,
            health_check_interval: float | None = None,
            ssl_context: ssl.SSLContext | None = None) -> Client:
    """Connect to an Octopus server: ``unix:///path``, ``tcp://host:port`` or
    ``rediss://host:port`` (TLS; ``ssl_context`` replaces the one made from the URL's
    options). A password may be in the URL (``redis://:secret@host``,
    ``unix:///path?password=secret``); ``password`` wins over it. Several URLs (a list,
    or comma-separated) name servers of one cluster: the client connects to the first
    that answers and fails over to the others (see :class:`Client`).

    ``timeout``: seconds to connect and shake hands. ``socket_timeout``: seconds a call
    waits for its reply before the connection is deemed dead (None: for ever).
    ``session_timeout``: how long the server keeps the session after the connection
    drops, for the client to resume it (the server caps it; None: the session ends with
    the connection). ``health_check_interval``: seconds of silence before a PING (None:
    a third of the session timeout)."""
    return Client(url, password=password, name=name, timeout=timeout,
                  socket_timeout=socket_timeout, session_timeout=session_timeout,
                  health_check_interval=health_check_interval, ssl_context=ssl_context)


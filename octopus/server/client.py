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
5. When the connection is lost, every pending call raises :class:`EngineClosed` and
   every trigger and subscription gets its final ``REMOVED`` event, as when a session
   closes.
6. Parameters are checked locally with the query's placeholders, so a wrong type is the
   same ``ParameterError`` as in-process; they travel as text and the server types them
   again by the same placeholders.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from octopus.errors import (
    EngineClosed,
    OctopusError,
    QueryError,
    Unavailable,
)
from octopus.events import Dispatcher, Handler, Mode, Subscription, Trigger
from octopus.recipes.factories import RecipeFactories
from octopus.record import Record
from octopus.waiting import wait_for

from .client_base import (
    DEFAULT_URL,
    _Base,
    _check,
    _decode_float,
    _decode_int,
    _decode_ok,
    _Request,
    _Requests,
    parse_url,
    redact_url,
    tls_context,
    url_options,
)
from .resp import Push, reply_parser
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


def _roundtrip(sock: socket.socket, requests: list[_Request]) -> list[Any]:
    """Send ``requests`` on a fresh connection and read their replies (for the
    fail-over handshake, before the reader thread reads that socket)."""
    sock.sendall(b"".join(r.data for r in requests))
    parser = reply_parser()
    replies: list[Any] = []
    while len(replies) < len(requests):
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        parser.feed(data)
        while (reply := parser.gets()) is not False:
            if type(reply) is Push:
                continue
            request = requests[len(replies)]
            try:
                replies.append(request.decode(reply))
            except Exception as e:
                replies.append(e)
    return replies


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
        if tls is not None:
            sock = TLSSocket(sock, tls, where[0])
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


class Client(_Base, RecipeFactories):
    """A connection to an Octopus server with the API of :class:`octopus.Session`.

    Thread-safe; a context manager. Handlers run on the client's dispatcher thread.
    """

    def __init__(self, url: str | Sequence[str] = DEFAULT_URL, *, password: str | None = None,
                 name: str | None = None, timeout: float | None = 10.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        urls = _urls(url)
        self._urls = urls
        self._timeout = timeout
        self._seen = 0                                  # the highest revision seen
        self._resume: tuple[int, str, int] | None = None   # lease, secret, TTL
        failures = []
        for i, u in enumerate(urls):
            super().__init__(u, password, name, ssl_context)
            try:
                self._sock = _open_socket(self._address, timeout, self._tls)
                self._urls = urls[i:] + urls[:i]
                break
            except OSError as e:
                failures.append(f"{self.url}: {e}")
        else:
            raise EngineClosed(f"cannot connect to {', '.join(failures)}")
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
            if len(self._urls) > 1:
                self._resume = self._resumable()
        except BaseException:
            self._shutdown("handshake failed")
            raise

    def _resumable(self) -> tuple[int, str, int] | None:
        """Ask for a resumable session (a cluster replica grants one); None from a
        server that is not a replica (there is nothing to fail over to)."""
        try:
            lease, secret, ttl = self._call(_Request(["SESSION"], _check))
        except QueryError:
            return None
        return int(lease), secret.decode(), int(ttl)

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
        while True:
            reason = self._read_replies()
            if self._resume is None or self._quitting or self._closed \
                    or not self._fail_over(reason):
                break
        self._shutdown(reason)

    def _read_replies(self) -> str:
        """Read until the connection ends; why it ended."""
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
                        value = pending.value = pending.request.decode(reply)
                        if type(value) is Record and value.revision > self._seen:
                            self._seen = value.revision
                    except Exception as e:
                        pending.error = e
                    pending.done.set()
        except OSError as e:
            reason = str(e)
        except Exception as e:           # a protocol error: the stream is unusable
            reason = f"{type(e).__name__}: {e}"
        return reason

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
                        replies = _roundtrip(sock, [
                            *self._handshake(),
                            _Request(["SESSION", "RESUME", str(lease), secret], _decode_ok),
                            _Request(["SYNC", str(self._seen)], _decode_int)])
                        sock.settimeout(None)
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
                    self._parser = reply_parser()
                    self.url = redact_url(url)
                    self._address = parse_url(url)
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
        try:
            return wait_for(self, q, params, timeout)
        except EngineClosed:
            raise self._closed_error() if self._closed else EngineClosed(
                "closed while waiting") from None

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
            return self._call(_Request(["STALENESS"], _decode_float))  # type: ignore[no-any-return]
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


def connect(url: str | Sequence[str] = DEFAULT_URL, *, password: str | None = None,
            name: str | None = None, timeout: float | None = 10.0,
            ssl_context: ssl.SSLContext | None = None) -> Client:
    """Connect to an Octopus server: ``unix:///path``, ``tcp://host:port`` or
    ``rediss://host:port`` (TLS; ``ssl_context`` replaces the one made from the URL's
    options). A password may be in the URL (``redis://:secret@host``,
    ``unix:///path?password=secret``); ``password`` wins over it. Several URLs (a list,
    or comma-separated) name servers of one cluster: the client connects to the first
    that answers and fails over to the others (see :class:`Client`)."""
    return Client(url, password=password, name=name, timeout=timeout,
                  ssl_context=ssl_context)


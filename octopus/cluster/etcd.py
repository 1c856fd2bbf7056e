"""A small etcd v3 client over etcd's own JSON gateway (``/v3/...`` on the client port).

Why this client rather than a gRPC library (the measurements are in docs/cluster.md):
every etcd since 3.3 serves the same API as JSON over HTTP/1.1 beside gRPC, so this
module needs nothing but the standard library — no grpcio, no generated protobuf code
whose runtime version must match (etcd-sdk-python and aetcd pin generated code against
a protobuf runtime), nothing that breaks after ``fork()`` as grpcio's threads do. The
engine calls etcd from ordinary threads, so blocking HTTP fits; a write costs what etcd's
Raft round and fsync cost either way (measured: the same put rate as grpcio within the
noise of this machine). What the gateway lacks is a bidirectional stream, so a watch
cannot be asked for a progress report; docs/cluster.md says how the replica does
without one.

Guarantees:

- Every request has a timeout. A request that could not be sent (connection refused,
  reset before sending) moves on to the next endpoint and is tried again there.
- A request that may have reached etcd is retried only when it is idempotent (reads,
  status, keep-alive, revoke). A write whose answer was lost raises
  :class:`~octopus.errors.Unavailable` saying its outcome is unknown: retrying a
  compare-and-set blindly could apply it twice.
- etcd's errors come back typed: :class:`Compacted` (the revision asked for is gone),
  :class:`LeaseNotFound`, :class:`~octopus.errors.Unavailable` (no leader, timeouts,
  every endpoint down) and :class:`EtcdError` for the rest.

Keys and values are bytes here; the gateway's base64 is done and undone in this module.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from octopus.errors import OctopusError, QueryError, Unavailable

__all__ = [
    "Compacted",
    "Etcd",
    "EtcdError",
    "LeaseNotFound",
    "NotWritten",
    "OutcomeUnknown",
    "Watch",
    "b64",
    "prefix_end",
    "unb64",
]

#: Error texts etcd gives when it cannot serve a request now (mapped to Unavailable).
_UNAVAILABLE_TEXTS = ("no leader", "proposal dropped", "timed out", "deadline exceeded",
                      "leader changed", "not capable", "too many requests", "stopped", "unhealthy",
                      "connection refused", "unavailable")


class EtcdError(OctopusError):
    """etcd refused a request (the message is etcd's)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class Compacted(EtcdError):
    """The revision asked for has been compacted away (``compact_revision`` is the
    oldest revision etcd still has)."""

    def __init__(self, message: str, compact_revision: int = 0) -> None:
        super().__init__(message, 11)
        self.compact_revision = compact_revision


class LeaseNotFound(EtcdError):
    """The lease does not exist (it expired or was revoked)."""


class NotWritten(Unavailable):
    """A write that etcd certainly did not make (it could not be sent, or etcd refused
    it before proposing it): safe to try again."""


class OutcomeUnknown(Unavailable):
    """A write whose answer was lost: etcd may or may not have made it."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _parse_endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url.strip())
    if parts.scheme != "http" or not parts.hostname:
        raise QueryError(f"an etcd endpoint must be http://host:port, got {url!r} (TLS "
                         "endpoints are not supported; run the client port on loopback or "
                         "behind a TLS proxy)")
    try:
        port = parts.port or 2379
    except ValueError:
        raise QueryError(f"invalid port in etcd endpoint {url!r}") from None
    return parts.hostname, port


def parse_endpoints(endpoints: str | Sequence[str]) -> list[str]:
    """``"http://a:2379,http://b:2379"`` or a list of URLs, checked."""
    if isinstance(endpoints, str):
        endpoints = [e for e in endpoints.split(",") if e.strip()]
    urls = [str(e).strip() for e in endpoints]
    if not urls:
        raise QueryError("no etcd endpoint given")
    for url in urls:
        _parse_endpoint(url)
    return urls


class _Sent(Exception):
    """The request may have reached etcd before the connection failed."""


class _NotSent(OSError):
    """The request could not be sent whole: etcd cannot have acted on it."""


class _Connection:
    """One keep-alive HTTP/1.1 connection for unary requests. etcd's gateway answers
    every unary call with a Content-Length; parsing only what is needed costs a tenth of
    http.client's header parsing, which dominated a write's CPU time."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.head = f"Host: {host}:{port}\r\nContent-Type: application/json\r\n".encode()
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionResetError("etcd closed the connection")
        self.buf += data

    def request(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        """(status, body); _NotSent when the request could not be sent whole."""
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
                              % (path.encode(), self.head, len(body), body))
        except OSError as e:
            self.buf.clear()
            raise _NotSent(e.errno, f"could not send the request: {e}") from e
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = bytes(self.buf[:end]).lower()
        del self.buf[:end + 4]
        status = int(head[9:12])
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            if b"transfer-encoding: chunked" not in head:
                raise http.client.HTTPException("etcd sent a reply of unknown length")
            return status, self._chunked()
        eol = head.find(b"\r\n", at + 2)
        length = int(head[at + 17:eol if eol > 0 else len(head)])
        while len(self.buf) < length:
            self._fill()
        data = bytes(self.buf[:length])
        del self.buf[:length]
        return status, data

    def _chunked(self) -> bytes:
        """A body in HTTP/1.1 chunks (Go sends large replies so)."""
        body = bytearray()
        buf = self.buf
        while True:
            while (eol := buf.find(b"\r\n")) < 0:
                self._fill()
            size = int(buf[:eol].split(b";")[0], 16)
            while len(buf) < eol + 2 + size + 2:
                self._fill()
            body += buf[eol + 2:eol + 2 + size]
            del buf[:eol + 2 + size + 2]     # a last chunk of size 0 has no trailers here
            if size == 0:
                return bytes(body)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Etcd:
    """Requests to an etcd cluster through one of its endpoints at a time.

    Thread-safe: each thread keeps its own keep-alive connection. When an endpoint
    fails, every thread moves to the next one.
    """

    def __init__(self, endpoints: str | Sequence[str], *, timeout: float = 5.0) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self._addresses = [_parse_endpoint(u) for u in self.endpoints]
        self.timeout = timeout
        self._current = 0
        self._local = threading.local()
        self._closed = False
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()

    # --- endpoints -------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to now."""
        return self.endpoints[self._current]

    def rotate(self, failed: int | None = None) -> None:
        """Move every thread on to the next endpoint (if ``failed`` is still current)."""
        with self._lock:
            if failed is None or failed == self._current:
                self._current = (self._current + 1) % len(self.endpoints)

    def _connection(self, index: int, timeout: float) -> _Connection:
        conns: dict[int, _Connection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get(index)
        if conn is None:
            host, port = self._addresses[index]
            conn = _Connection(host, port, timeout)
            conns[index] = conn
            with self._lock:
                self._connections.add(conn)
        return conn

    def _drop(self, index: int) -> None:
        conns = getattr(self._local, "conns", {})
        conn = conns.pop(index, None)
        if conn is not None:
            conn.close()
            with self._lock:
                self._connections.discard(conn)

    def close(self) -> None:
        """Close every connection (threads reconnect if they call again)."""
        self._closed = True
        with self._lock:
            conns, self._connections = list(self._connections), set()
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()

    # --- requests --------------------------------------------------------------------

    def _post_once(self, index: int, path: str, body: bytes, timeout: float) -> Any:
        conn = self._connection(index, timeout)   # an OSError here: nothing was sent
        try:
            status, data = conn.request(path, body, timeout)
        except _NotSent:
            self._drop(index)
            raise
        except (OSError, http.client.HTTPException, ValueError) as e:
            # etcd acts on a request once it has all of it: from here on, the outcome of
            # a failed request is unknown.
            self._drop(index)
            raise _Sent(f"{type(e).__name__}: {e}") from e
        try:
            reply = json.loads(data) if data else {}
        except ValueError:
            raise EtcdError(f"etcd sent a reply that is not JSON ({status}): "
                            f"{data[:200]!r}") from None
        if status != 200 or ("error" in reply and "header" not in reply):
            raise _error(reply, status)
        return reply

    def post(self, path: str, request: dict[str, Any], *, idempotent: bool,
             timeout: float | None = None) -> Any:
        """POST ``request`` as JSON to ``path``; the decoded reply. See the module's
        guarantees for what is retried."""
        if self._closed:
            raise Unavailable("the etcd client is closed")
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        body = json.dumps(request, separators=(",", ":")).encode()
        tried = 0
        errors: list[str] = []
        while True:
            index = self._current
            left = deadline - time.monotonic()
            if left <= 0:
                kind = Unavailable if idempotent else NotWritten
                raise kind(f"etcd did not answer within {timeout:g} s: "
                           f"{'; '.join(errors[-3:]) or 'timed out'}")
            try:
                return self._post_once(index, path, body, left)
            except _Sent as e:
                if not idempotent:
                    self.rotate(index)
                    raise OutcomeUnknown(f"lost the connection to etcd at "
                                      f"{self.endpoints[index]} after sending a write; its "
                                      f"outcome is unknown ({e})") from None
                errors.append(f"{self.endpoints[index]}: {e}")
            except (OSError, http.client.HTTPException) as e:
                errors.append(f"{self.endpoints[index]}: {type(e).__name__}: {e}")
            except Unavailable as e:
                if not idempotent:
                    unknown = any(t in str(e) for t in ("timed out", "deadline", "leader changed"))
                    kind = OutcomeUnknown if unknown else NotWritten
                    raise kind(f"{e} (at {self.endpoints[index]}"
                               + ("; the write's outcome is unknown)" if unknown
                                  else "; nothing was written)")) from None
                errors.append(f"{self.endpoints[index]}: {e}")
            self.rotate(index)
            tried += 1
            if tried % len(self.endpoints) == 0:
                # Every endpoint failed once: pause a little before the next round, but
                # never past the deadline.
                time.sleep(min(0.05 * tried, max(deadline - time.monotonic(), 0), 0.5))

    # --- the KV API ------------------------------------------------------------------

    def range(self, key: bytes, range_end: bytes | None = None, *, revision: int = 0,
              limit: int = 0, serializable: bool = False, count_only: bool = False,
              keys_only: bool = False, timeout: float | None = None) -> Any:
        req: dict[str, Any] = {"key": b64(key)}
        if range_end is not None:
            req["range_end"] = b64(range_end)
        if revision:
            req["revision"] = revision
        if limit:
            req["limit"] = limit
        if serializable:
            req["serializable"] = True
        if count_only:
            req["count_only"] = True
        if keys_only:
            req["keys_only"] = True
        return self.post("/v3/kv/range", req, idempotent=True, timeout=timeout)

    def put(self, key: bytes, value: bytes, *, lease: int = 0,
            timeout: float | None = None) -> Any:
        req: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            req["lease"] = str(lease)
        return self.post("/v3/kv/put", req, idempotent=False, timeout=timeout)

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None, *,
            timeout: float | None = None) -> Any:
        req: dict[str, Any] = {"compare": compare, "success": success}
        if failure:
            req["failure"] = failure
        return self.post("/v3/kv/txn", req, idempotent=not success, timeout=timeout)

    def compact(self, revision: int, *, physical: bool = True) -> Any:
        return self.post("/v3/kv/compaction", {"revision": revision, "physical": physical},
                         idempotent=True)

    # --- leases ----------------------------------------------------------------------

    def lease_grant(self, ttl: int, *, timeout: float | None = None) -> tuple[int, int]:
        """A new lease: (id, granted TTL). Retried: a lease granted twice costs one
        lease that nobody keeps alive, which expires by itself."""
        reply = self.post("/v3/lease/grant", {"TTL": ttl}, idempotent=True, timeout=timeout)
        if reply.get("error"):
            raise EtcdError(str(reply["error"]))
        return int(reply["ID"]), int(reply.get("TTL", ttl))

    def lease_revoke(self, lease: int, *, timeout: float | None = None) -> int:
        """Revoke ``lease``, deleting its keys; the revision of the deletion."""
        try:
            reply = self.post("/v3/lease/revoke", {"ID": str(lease)}, idempotent=True,
                              timeout=timeout)
        except LeaseNotFound:
            return 0
        return int(reply["header"].get("revision", 0))

    def lease_keepalive(self, lease: int, *, timeout: float | None = None) -> int:
        """Refresh ``lease``; its remaining TTL, or 0 when it no longer exists."""
        reply = self.post("/v3/lease/keepalive", {"ID": str(lease)}, idempotent=True,
                          timeout=timeout)
        result = reply.get("result", reply)
        if "error" in reply and "result" not in reply:
            raise _error(reply["error"] if isinstance(reply["error"], dict) else reply, 500)
        return int(result.get("TTL", 0))

    def lease_ttl(self, lease: int, *, timeout: float | None = None) -> int:
        """The remaining TTL of ``lease``; -1 when it does not exist."""
        reply = self.post("/v3/lease/timetolive", {"ID": str(lease)}, idempotent=True,
                          timeout=timeout)
        return int(reply.get("TTL", -1))

    # --- the cluster -----------------------------------------------------------------

    def status(self, endpoint: int | None = None, *, timeout: float = 1.0) -> Any:
        """The status of one member (the current endpoint by default), without moving
        on to another endpoint when it fails."""
        index = self._current if endpoint is None else endpoint
        try:
            return self._post_once(index, "/v3/maintenance/status", b"{}", timeout)
        except _Sent as e:
            raise Unavailable(f"{self.endpoints[index]}: {e}") from None
        except (OSError, http.client.HTTPException) as e:
            raise Unavailable(f"{self.endpoints[index]}: {type(e).__name__}: {e}") from None

    # --- etcd's own lock API (for comparison in bench/cluster.py) ---------------------

    def lock(self, name: bytes, lease: int, *, timeout: float | None = None) -> bytes:
        """Acquire etcd's lock ``name`` for ``lease`` (v3lock); the owner key."""
        reply = self.post("/v3/lock/lock", {"name": b64(name), "lease": str(lease)},
                          idempotent=False, timeout=timeout)
        return unb64(reply["key"])

    def unlock(self, key: bytes, *, timeout: float | None = None) -> None:
        self.post("/v3/lock/unlock", {"key": b64(key)}, idempotent=True, timeout=timeout)

    # --- watching --------------------------------------------------------------------

    def watch(self, key: bytes, range_end: bytes, start_revision: int, *,
              connect_timeout: float | None = None) -> Watch:
        """A stream of watch responses for the keys in [key, range_end) from
        ``start_revision``, from the current endpoint."""
        index = self._current
        host, port = self._addresses[index]
        request = {"create_request": {"key": b64(key), "range_end": b64(range_end),
                                      "start_revision": start_revision,
                                      "progress_notify": True}}
        return Watch(self.endpoints[index], index, host, port, request,
                     connect_timeout or self.timeout)


def _error(reply: Any, status: int) -> EtcdError | Unavailable:
    message = str(reply.get("message") or reply.get("error") or f"HTTP {status}")
    code = int(reply.get("code", 0) or 0)
    lowered = message.lower()
    if "compacted" in lowered:
        return Compacted(message)
    if "lease not found" in lowered:
        return LeaseNotFound(message, code)
    if code in (4, 14) or status in (502, 503, 504) or \
            any(text in lowered for text in _UNAVAILABLE_TEXTS):
        return Unavailable(f"etcd: {message}")
    return EtcdError(f"etcd: {message}", code)


class Watch:
    """One watch stream. Iterate it for responses (dicts: ``header``, ``events``,
    ``compact_revision``, ``canceled``); :meth:`close` from any thread ends the
    iteration (with an OSError in the iterating thread, which should expect one).

    The stream is read straight from the socket (HTTP/1.1 chunks, one JSON message per
    line): http.client's line reading over chunks cost more than applying the change."""

    def __init__(self, endpoint: str, index: int, host: str, port: int,
                 request: dict[str, Any], connect_timeout: float) -> None:
        self.endpoint = endpoint
        self.index = index
        self._closed = False
        self._buf = bytearray()
        self._sock = socket.create_connection((host, port), connect_timeout)
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            body = json.dumps(request).encode()
            self._sock.sendall(b"POST /v3/watch HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: "
                               b"application/json\r\nContent-Length: %d\r\n\r\n%s"
                               % (host.encode(), port, len(body), body))
            while (end := self._buf.find(b"\r\n\r\n")) < 0:
                self._fill()
            head = bytes(self._buf[:end]).lower()
            del self._buf[:end + 4]
            status = int(head[9:12])
            if status != 200 or b"transfer-encoding: chunked" not in head:
                self._sock.settimeout(1.0)
                with contextlib.suppress(OSError):
                    while len(self._buf) < 65536:
                        self._fill()
                text = bytes(self._buf).decode(errors="replace")
                try:
                    reply = json.loads(text[text.find("{"):]) if "{" in text else {}
                except ValueError:
                    reply = {"error": text[:200]}
                raise _error(reply if isinstance(reply, dict) else {}, status)
        except BaseException:
            self.close()
            raise
        # A quiet stream is normal; a dead peer is found by the health checks (which
        # close the watch) and by TCP keep-alive.
        self._sock.settimeout(None)
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def _fill(self) -> None:
        data = self._sock.recv(1 << 16)
        if not data:
            raise ConnectionResetError(f"etcd at {self.endpoint} ended the watch stream")
        self._buf += data

    def _lines(self) -> Iterator[bytes]:
        """The stream's lines, across chunk boundaries."""
        pending = bytearray()
        buf = self._buf
        while not self._closed:
            while (eol := buf.find(b"\r\n")) < 0:
                self._fill()
            size = int(buf[:eol].split(b";")[0], 16)
            if size == 0:
                raise ConnectionResetError(f"etcd at {self.endpoint} ended the watch stream")
            while len(buf) < eol + 2 + size + 2:
                self._fill()
            pending += buf[eol + 2:eol + 2 + size]
            del buf[:eol + 2 + size + 2]
            while (nl := pending.find(b"\n")) >= 0:
                line = bytes(pending[:nl])
                del pending[:nl + 1]
                yield line

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for raw in self._lines():
            line = raw.strip()
            if not line:
                continue
            message = json.loads(line)
            if "error" in message and "result" not in message:
                raise _error(message["error"] if isinstance(message["error"], dict)
                             else message, 500)
            result = message.get("result", message)
            if result.get("canceled") and int(result.get("compact_revision", 0) or 0):
                raise Compacted("the watch's start revision has been compacted",
                                int(result["compact_revision"]))
            if result.get("canceled"):
                reason = result.get("cancel_reason") or "etcd canceled the watch"
                raise _error({"message": reason}, 500)
            yield result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()

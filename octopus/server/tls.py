"""TLS for ``octopus serve`` and its clients (docs/server.md, *TLS*).

- :func:`server_context`: the server's context from ``--tls-cert``/``--tls-key``, and
  with ``--tls-ca`` a demand for a client certificate signed by that CA (mutual TLS).
- :func:`client_context`: a client's context: the system's trusted CAs, or the CA file
  given, with the server's certificate and host name checked; a client certificate
  when the server asks for one.
- :class:`TLSSocket`: a TLS connection for the threaded client, whose reader thread
  receives while other threads send. An ``ssl.SSLSocket`` may not be used by two
  threads at once (OpenSSL's rule: an ``SSL`` object is not thread-safe, and a read
  may need to write), so the TLS state is an ``ssl.SSLObject`` over memory buffers,
  touched only under a lock, while the socket's own send and receive stay
  concurrent. A sender blocked on a full socket never holds that lock, so the reader
  can always drain the replies that unblock it.

Both sides accept TLS 1.2 and 1.3 only.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

__all__ = ["TLSSocket", "client_context", "server_context"]


def server_context(cert: str, key: str | None = None, ca: str | None = None) -> ssl.SSLContext:
    """The server's context; raises ``OSError`` or ``ssl.SSLError`` for a file that
    cannot be read or a key that does not match its certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if ca is not None:
        ctx.load_verify_locations(cafile=ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(ca: str | None = None, cert: str | None = None, key: str | None = None,
                   *, verify: bool = True, check_hostname: bool = True) -> ssl.SSLContext:
    """A client's context. ``verify=False`` accepts any server certificate (as
    ``redis-cli --insecure``): the traffic is encrypted but the server is not
    authenticated."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif not check_hostname:
        ctx.check_hostname = False
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


class TLSSocket:
    """The part of ``socket.socket`` the threaded client uses (``sendall``, ``recv``,
    ``settimeout``, ``shutdown``, ``close``), over TLS. Construct with a connected
    socket; the handshake runs in the constructor, within the socket's timeout."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext,
                 server_hostname: str | None) -> None:
        self._sock = sock
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=False,
                                     server_hostname=server_hostname)
        self._lock = threading.Lock()          # the SSLObject and both buffers
        self._send_lock = threading.Lock()     # the order of records on the socket
        try:
            self._handshake()
        except BaseException:
            sock.close()
            raise

    def _handshake(self) -> None:
        while True:
            try:
                self._tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                data = self._sock.recv(1 << 16)
                if not data:
                    raise ConnectionResetError("the server closed the connection during the "
                                               "TLS handshake") from None
                self._in.write(data)

    def _flush(self) -> None:
        """Send what the TLS state produced (in order with the senders)."""
        with self._send_lock:
            with self._lock:
                data = self._out.read()
            if data:
                self._sock.sendall(data)

    def sendall(self, data: bytes) -> None:
        with self._send_lock:
            with self._lock:
                self._tls.write(data)
                out = self._out.read()
            self._sock.sendall(out)

    def recv(self, size: int) -> bytes:
        """The plaintext of every whole record received so far, waiting for one if
        there is none; ``b""`` at the end of the stream.

        All of it, even more than ``size``: a caller that waits with ``select`` on
        :meth:`fileno` must find nothing left decrypted-but-unread here, where
        ``select`` cannot see it. It is bounded by what one ``recv`` of the socket
        brought in (64 KiB) and the partial record before it."""
        while True:
            with self._lock:
                chunks: list[bytes] = []
                ended = False
                try:
                    while True:
                        chunk = self._tls.read(size)
                        if not chunk:
                            ended = True
                            break
                        chunks.append(chunk)
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLZeroReturnError:
                    ended = True    # the end: what came before it, then b"" next time
                if chunks:
                    return b"".join(chunks)
                if ended:
                    return b""
                # A read may have produced records to send (an alert, a key update):
                # they stay buffered and leave with the next send, in order.
            data = self._sock.recv(1 << 16)
            if not data:
                with self._lock:
                    self._in.write_eof()
                    try:
                        return self._tls.read(size)
                    except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                        return b""
            with self._lock:
                self._in.write(data)

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def setsockopt(self, level: int, option: int, value: int | bytes, /) -> None:
        self._sock.setsockopt(level, option, value)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def version(self) -> str | None:
        """The TLS version agreed on (``"TLSv1.3"``)."""
        return self._tls.version()

    def getpeercert(self) -> dict[str, Any] | None:
        return self._tls.getpeercert()

"""Sessions that outlive their connection (docs/server.md, *Sessions that outlive a blip*).

A :class:`SessionLink` stands between one engine session and whichever connection
carries it at the moment. The handlers of the session's triggers and subscriptions are
the link's, not a connection's, so an event always has somewhere to go.

Theory of operation:

1. Every connection gets a link for its session when it opens. A session is
   *resumable* once its client asked ``SESSION`` (it then holds an id, a secret and a
   timeout, like ZooKeeper's session id, password and negotiated timeout). A session
   that never asked ends with its connection, exactly as before.
2. When the connection of a resumable session drops, the session is *detached*, not
   closed: its ephemeral records, locks, triggers and subscriptions stay, and its events
   are kept. If no connection resumes it within its timeout it *expires*: it is closed
   exactly as a ``QUIT`` closes it (ephemeral records deleted, ON_DEL triggers fire,
   REMOVED events), on an engine thread.
3. Events are numbered per session (1, 2, ...) in the order they were pushed, which is
   the order the engine delivered them (revision order). The link keeps the most recent
   event frames of a resumable session, bounded in bytes (``session_replay_bytes``),
   whether or not a connection is attached: a frame handed to the kernel may still be
   lost with the connection. ``SESSION RESUME id secret received`` says how many event
   frames the client has read; the server writes ``+OK`` and then every frame after
   that one, before anything else, so the client sees each event exactly once and in
   order.
4. No silent loss: if the frames a client has not read are no longer all kept (more
   than the bound arrived while it was away, or the kernel held more than the bound),
   the session expires (at once if detached, at the refused resume otherwise) and the
   client is told ``SessionExpired``.
5. A resume may arrive while the old connection still looks alive to the server (a
   half-open TCP connection): the old connection is aborted and the new one takes over.
6. Everything here runs on the event loop thread, except the handlers
   (:meth:`SessionLink.on_trigger`, :meth:`SessionLink.on_message`), which run on the
   engine's dispatcher thread and only hand the event to the loop.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
import socket
from collections import deque
from typing import TYPE_CHECKING, Any

from octopus.events import Event
from octopus.rules import RowEvent

if TYPE_CHECKING:
    import asyncio

    from octopus.engine import Session

    from .commands import CommandLayer

__all__ = ["KEEPALIVE", "SessionGap", "SessionLink", "keepalive"]

log = logging.getLogger("octopus.server")


# TCP keepalive: a peer that vanished (host down, cable out) is noticed in about
# KEEPIDLE + KEEPINTVL * KEEPCNT seconds even when nothing is being sent.
KEEPALIVE = (5, 2, 3)


def keepalive(sock: socket.socket) -> None:
    """Turn TCP keepalive on with :data:`KEEPALIVE`'s timings (where the OS has them)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle, interval, count = KEEPALIVE
        for option, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval),
                              ("TCP_KEEPCNT", count)):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class SessionGap(Exception):
    """The events a resuming client has not read are no longer all kept."""


class SessionLink:
    """One engine session and the connection that carries it now (None: detached)."""

    def __init__(self, server: Any, session: Session, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.session = session
        self.sid: int = session._sid
        self.loop = loop
        self.conn: Any = None                   # the Connection attached, if any
        self.layer: CommandLayer | None = None  # the last layer (its triggers, its format)
        self.secret: str | None = None          # set once resumable
        self.timeout = 0.0
        self.limit = 0                          # bytes of event frames kept
        self.seq = 0                            # event frames pushed so far
        self.sent = 0                           # ... of which handed to a connection
        self.kept: deque[tuple[int, bytes, Event | RowEvent, bytes, tuple[int, bool]]] = deque()
        self.kept_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.expired = False
        self.resumes = 0

    @property
    def resumable(self) -> bool:
        return self.secret is not None

    @property
    def detached(self) -> bool:
        return self.conn is None and not self.expired

    # --- events (the handlers run on the dispatcher thread) -------------------------------

    def on_trigger(self, event: Event | RowEvent) -> None:
        with contextlib.suppress(RuntimeError):     # the loop has closed: nobody to tell
            self.loop.call_soon_threadsafe(self.push, b"trigger", event)

    def on_message(self, event: Event) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.push, b"message", event)

    def push(self, kind: bytes, event: Event | RowEvent) -> None:
        """Number an event, keep its frame (resumable), write it to the connection."""
        layer = self.layer
        if layer is None or self.expired:
            return
        frame = layer.event_frame(kind, event)
        self.seq += 1
        conn = self.conn
        if conn is not None:
            self.sent = self.seq
        if self.secret is not None:
            self.kept.append((self.seq, kind, event, frame, (layer.proto, layer.tagged)))
            self.kept_bytes += len(frame)
            while self.kept_bytes > self.limit and self.kept:
                seq, _, _, old, _ = self.kept.popleft()
                self.kept_bytes -= len(old)
                if seq > self.sent:
                    # A frame no connection has had is dropped: the client would miss it.
                    self.server.session_overflow(self)
                    return
        if conn is not None:
            conn.push_frame(frame)

    # --- lifetime ----------------------------------------------------------------------------

    def attach(self, conn: Any, layer: CommandLayer) -> None:
        self.conn = conn
        self.layer = layer
        self.sent = self.seq

    def make_resumable(self, timeout: float, limit: int) -> tuple[str, float]:
        """Grant (or re-grant, with a new timeout) resumption; the secret and timeout."""
        if self.secret is None:
            self.secret = secrets.token_hex(16)
        self.timeout = timeout
        self.limit = limit
        return self.secret, timeout

    def check_secret(self, secret: bytes) -> bool:
        return self.secret is not None and hmac.compare_digest(secret, self.secret.encode())

    def detach(self) -> None:
        """The connection dropped: keep the session until its timeout."""
        self.conn = None
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self.timeout, self.server.session_timed_out, self)

    def frames_after(self, received: int, layer: CommandLayer) -> list[bytes]:
        """The frames a client that has read ``received`` event frames has not read, in
        ``layer``'s format; SessionGap if they are not all kept."""
        if received > self.seq:
            raise SessionGap(f"the client claims {received} events; the session pushed "
                             f"{self.seq}")
        first = self.kept[0][0] if self.kept else self.seq + 1
        if received + 1 < first:
            raise SessionGap(f"events {received + 1} to {first - 1} of the session are no "
                             f"longer kept (the replay buffer holds {self.limit} bytes)")
        fmt = (layer.proto, layer.tagged)
        return [frame if f == fmt else layer.event_frame(kind, event)
                for seq, kind, event, frame, f in self.kept if seq > received]

    def resume(self, conn: Any, layer: CommandLayer) -> None:
        """``conn`` (whose layer is ``layer``) carries the session from now on."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        previous = self.layer
        if previous is not None and previous is not layer:
            layer.adopt(previous)
        self.resumes += 1
        self.attach(conn, layer)

    def expire(self) -> None:
        """End the session (it timed out, or lost events): mark it; the caller closes it."""
        self.expired = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.kept.clear()
        self.kept_bytes = 0

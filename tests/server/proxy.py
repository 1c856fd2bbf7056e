"""A small TCP proxy for tests of network blips: it forwards loopback connections to a
server (TCP or Unix socket) and can drop every connection at once (a blip both ends
see), or freeze them (a half-open link: nothing passes, nobody is told)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any


class Proxy:
    def __init__(self, target: str | tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.frozen: set[socket.socket] = set()
        self.refusing = False
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.accepted = 0
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _upstream(self) -> socket.socket:
        if isinstance(self.target, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.target)
            return s
        return socket.create_connection(self.target)

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                server = self._upstream()
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, server))
                self.accepted += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while src in self.frozen and not self.closed:
                    threading.Event().wait(0.01)
                if self.closed:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def drop(self) -> int:
        """Close every connection (both ends see it end); how many."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        return len(pairs)

    def freeze(self) -> None:
        """Stop forwarding on the current connections without closing anything (a
        half-open link); new connections are forwarded."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            self.frozen.update(pair)

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.drop()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

"""A server on a thread of the calling process, for tests that need many short-lived
servers (the recipe suite over the network): ``with serve_in_thread() as url: ...``.

The server is the real one (sockets, sessions, RESP); only its process is shared.
Tests of crashes and kills start ``octopus serve`` as a separate process instead.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator

from octopus.engine import Engine

from .server import Server, ServerConfig, run

__all__ = ["serve_in_thread"]


@contextlib.contextmanager
def serve_in_thread(engine: Engine | None = None, config: ServerConfig | None = None
                    ) -> Iterator[str]:
    """Serve ``engine`` (a fresh one by default) on a private Unix socket; yield its URL."""
    own = engine is None
    engine = engine if engine is not None else Engine()
    directory = tempfile.mkdtemp(prefix="octopus-")
    path = os.path.join(directory, "s.sock")
    started = threading.Event()
    box: list[Server] = []
    failure: list[BaseException] = []

    def ready(server: Server) -> None:
        box.append(server)
        started.set()

    def main() -> None:
        try:
            run(engine, unix=path, config=config, use_uvloop=False, ready=ready)
        except BaseException as e:
            failure.append(e)
            started.set()

    thread = threading.Thread(target=main, name="octopus-test-server", daemon=True)
    thread.start()
    started.wait(30)
    try:
        if failure:
            raise failure[0]
        yield f"unix://{path}"
    finally:
        if box:
            box[0].stop_soon()
        thread.join(30)
        if own:
            engine.close()
        with contextlib.suppress(OSError):
            os.rmdir(directory)

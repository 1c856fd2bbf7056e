"""Through the server, a regex used to end the process for every client: one NAMES with a
recursive pattern, or a WATCH/SUBSCRIBE that installed fine on an empty store followed
by any client's SET/PUBLISH. The server runs in its own process here."""

from __future__ import annotations

from pathlib import Path

import pytest

import octopus
from octopus import Event, QueryError
from tests.server.conftest import ServerProcess

KILLERS = ["((?1))", "(?R)", "(?0)", "(?<a>(?&a))"]


def test_no_regex_can_end_the_server(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    try:
        events: list[Event] = []
        with octopus.connect(server.unix_url) as watcher, \
                octopus.connect(server.tcp_url) as writer:
            for pattern in KILLERS:
                # installed on an empty store, these used to wait for the next write
                with pytest.raises(QueryError, match="recursion"):
                    watcher.watch(f"_ {{ s: r'{pattern}' }}", events.append)
                with pytest.raises(QueryError, match="recursion"):
                    watcher.subscribe(f"r'{pattern}'", events.append)
            writer.set("x { s: 'a' }")
            assert writer.publish("x { s: 'a' }") == 0
            for pattern in KILLERS:
                with pytest.raises(QueryError, match="recursion"):
                    writer.get_names(f"_ {{ s: r'{pattern}' }}")
            # a deep backtrack on a long value hit PCRE2's depth limit (-53) and aborted
            writer.set("long { s: %s }", "a" * 1000)
            with pytest.raises(QueryError, match="match limit"):
                writer.get_names("_ { s: r'(a|ab)*[bc]' }")
            assert sorted(writer.get_names("_")) == ["long", "x"]
        assert server.alive
    finally:
        server.stop()

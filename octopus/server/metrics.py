"""Prometheus metrics of ``octopus serve --metrics-port`` (docs/server.md, *Metrics*).

- :class:`CommandMetrics` counts commands and their latency per command name. The
  label set is bounded: the names are those of the connection's command table, and
  every other name a client sends is counted as ``unknown``. Each connection counts
  into its own tally, without a lock.
- :func:`exposition` renders every metric in the Prometheus text format (version
  0.0.4), written here rather than taken from a client library: it is a page of
  code, and the server keeps no dependency it does not need.
- :class:`MetricsProtocol` is a minimal HTTP/1.x endpoint: ``GET /metrics`` (or
  ``/``) answers the exposition and closes; anything else gets 404 or 405. A request
  head is at most 8 KiB and must arrive within 10 s; at most 64 scrapes are served at
  once (more are closed at once).
"""

from __future__ import annotations

import asyncio
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .server import Server

__all__ = ["BUCKETS", "CommandMetrics", "MetricsProtocol", "Tally", "exposition"]

# Latency bucket bounds in seconds: a cached GET is tens of microseconds, a Prolog scan
# or a durable write milliseconds, a WAIT up to its timeout.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
           0.5, 1.0, 2.5, 5.0, 10.0)
MAX_REQUEST_HEAD = 8 << 10
REQUEST_TIMEOUT = 10.0
MAX_SCRAPES = 64
_LONGEST_NAME = 32           # a command name longer than any known one is "unknown" as is


Tally = dict[int, list[Any]]       # one connection's rows: label index -> row


class CommandMetrics:
    """Per command name: how many, how many answered an error, and a latency histogram.

    Each connection counts into its own :data:`Tally` without a lock: its commands are
    served one at a time (on the loop or on an engine-call thread, never both), and a
    lock taken per command, from the loop and the engine threads at once, cost more
    than the counting itself. A connection that ends is folded into the totals
    (:meth:`retire`); a scrape sums the totals and the live tallies (:meth:`snapshot`),
    both under the lock, so a connection is never counted twice nor missed."""

    def __init__(self, names: Iterable[bytes]) -> None:
        known = sorted({n.upper() for n in names})
        self.labels = [n.decode("ascii", "replace").lower() for n in known] + ["unknown"]
        # Upper and lower case as clients send them, so the usual lookup needs no upper().
        self._index = {n: i for i, n in enumerate(known)} | \
            {n.lower(): i for i, n in enumerate(known)}
        self._unknown = len(known)
        # A row: the bucket counts (the last one +Inf), then the sum, then the errors.
        self._sum = len(BUCKETS) + 1
        self._errors = self._sum + 1
        self._totals: Tally = {}
        self._lock = threading.Lock()

    def observe(self, tally: Tally, name: bytes, seconds: float, reply: bytes) -> None:
        """Count in ``tally`` (a connection's) one command ``name`` answered ``reply``
        after ``seconds``."""
        i = self._index.get(name)
        if i is None:
            i = self._index.get(name.upper() if len(name) <= _LONGEST_NAME else b"",
                                self._unknown)
        row = tally.get(i)
        if row is None:
            row = tally[i] = [0] * (len(BUCKETS) + 1) + [0.0, 0]
        row[bisect_left(BUCKETS, seconds)] += 1
        row[self._sum] += seconds
        if reply and reply[0] in (45, 33):        # "-" or "!": an error reply
            row[self._errors] += 1

    def retire(self, holder: Any) -> None:
        """Fold ``holder.tally`` (a connection that ended) into the totals; it counts
        nothing more."""
        with self._lock:
            tally, holder.tally = holder.tally, None
            if tally:
                self._add(self._totals, tally)

    @staticmethod
    def _add(into: Tally, tally: Tally) -> None:
        for i, row in dict(tally).items():          # dict(): one atomic copy
            mine = into.get(i)
            if mine is None:
                into[i] = list(row)
            else:
                for k, v in enumerate(row):
                    mine[k] += v

    def snapshot(self, holders: Iterable[Any]) -> list[tuple[str, list[int], float, int]]:
        """(label, per-bucket counts, sum, errors) of every command seen so far: the
        totals and the tallies of ``holders`` (the live connections)."""
        s, e = self._sum, self._errors
        with self._lock:
            rows: Tally = {}
            self._add(rows, self._totals)
            for holder in holders:
                tally = holder.tally
                if tally:
                    self._add(rows, tally)
        return [(self.labels[i], row[:s], row[s], row[e]) for i, row in sorted(rows.items())]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help: str,
               samples: Iterable[tuple[str, float]]) -> None:
        """``samples`` are (label text, value), label text like ``{command="get"}``."""
        self.lines.append(f"# HELP {name} {help}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{labels} {_number(value)}")

    def single(self, name: str, kind: str, help: str, value: float) -> None:
        self.metric(name, kind, help, [("", value)])


def exposition(server: Server) -> str:
    """Every metric of ``server`` in the text format. Blocking (the engine's counters
    take its lock): call it on an engine-call thread."""
    w = _Writer()
    stats = server.stats
    engine_stats = server.engine.stats()
    conns = list(server.connections)
    w.single("octopus_build_info", "gauge", "The octopus version (as a label).", 1)
    from octopus import __version__

    w.lines[-1] = f'octopus_build_info{{version="{_escape(__version__)}"}} 1'
    w.single("octopus_uptime_seconds", "gauge", "Seconds since the server started.",
             time.time() - stats.started)
    w.single("octopus_connected_clients", "gauge", "Open client connections.", len(conns))
    w.single("octopus_connections_received_total", "counter",
             "Client connections accepted since start.", stats.connections_received)
    w.single("octopus_rejected_connections_total", "counter",
             "Connections refused for max_clients.", stats.rejected_connections)
    w.single("octopus_protocol_errors_total", "counter",
             "Connections closed for a protocol error.", stats.protocol_errors)
    w.single("octopus_auth_failures_total", "counter", "Failed AUTH attempts.",
             stats.auth_failures)
    w.metric("octopus_output_limit_disconnections_total", "counter",
             "Connections dropped for unread output, by limit.",
             [(f'{{limit="{k}"}}', v) for k, v in sorted(stats.dropped.items())])
    w.single("octopus_client_output_bytes", "gauge", "Output not yet sent to clients.",
             server.output.total)
    cache = server.cache
    if cache is not None:
        w.single("octopus_reply_cache_hits_total", "counter", "GETs answered from the "
                 "reply cache.", cache.hits)
        w.single("octopus_reply_cache_misses_total", "counter", "GETs the reply cache "
                 "could not answer.", cache.misses)
        w.single("octopus_reply_cache_entries", "gauge", "Replies in the cache.", len(cache))
    gauges = {"revision": "The store's revision (the last committed change).",
              "records": "Stored records.",
              "sessions": "Open engine sessions (one per connection, and the engine's).",
              "ephemeral_records": "Records that end with their session.",
              "triggers": "Installed triggers.",
              "subscriptions": "Installed subscriptions.",
              "events_pending": "Events not yet handed to their handlers."}
    for key, help in gauges.items():
        if key in engine_stats:
            # These stats are counts (engine.stats() also holds text).
            w.single(f"octopus_{key}", "gauge", help, engine_stats[key])  # type: ignore[arg-type]
    persistence = server.engine.persistence()
    w.single("octopus_durable", "gauge", "1 if the records are kept on disk (--data).",
             int(bool(persistence)))
    for key, value in sorted(persistence.items()):
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue                            # text (fsync policy, status): in INFO
        w.single(f"octopus_persistence_{key}", "gauge",
                 f"The durable engine's {key.replace('_', ' ')} (docs/durability.md).", value)
    commands = server.metrics
    if commands is not None:
        rows = commands.snapshot(conns)
        w.metric("octopus_commands_total", "counter", "Commands answered, by command.",
                 [(f'{{command="{_escape(label)}"}}', sum(b)) for label, b, _, _ in rows])
        w.metric("octopus_command_errors_total", "counter",
                 "Commands answered with an error, by command.",
                 [(f'{{command="{_escape(label)}"}}', e) for label, _, _, e in rows])
        name = "octopus_command_duration_seconds"
        w.lines.append(f"# HELP {name} Seconds from taking up a command to its reply.")
        w.lines.append(f"# TYPE {name} histogram")
        for label, buckets, total, _ in rows:
            lab = _escape(label)
            running = 0
            for bound, n in zip((*BUCKETS, float("inf")), buckets, strict=True):
                running += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                w.lines.append(f'{name}_bucket{{command="{lab}",le="{le}"}} {running}')
            w.lines.append(f'{name}_sum{{command="{lab}"}} {_number(total)}')
            w.lines.append(f'{name}_count{{command="{lab}"}} {running}')
    return "\n".join(w.lines) + "\n"


class MetricsProtocol(asyncio.Protocol):
    """One HTTP connection to the metrics endpoint."""

    def __init__(self, server: Server, render: Callable[[Callable[[str | None], None]], None],
                 active: list[int]) -> None:
        self.server = server
        self.render = render          # render(done): calls done(text) on the loop, later
        self.active = active          # [scrapes open], shared by the endpoint
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is no subclass of asyncio.Transport: no isinstance).
        self.transport = cast(asyncio.Transport, transport)
        self.active[0] += 1
        if self.active[0] > MAX_SCRAPES:
            self.answered = True
            transport.close()
            return
        self.timer = asyncio.get_running_loop().call_later(REQUEST_TIMEOUT, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.active[0] -= 1
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            end = self.buffer.find(b"\n\n")
        if end < 0:
            if len(self.buffer) > MAX_REQUEST_HEAD:
                self._reply(431, "request header too large\n")
            return
        self.answered = True
        request_line = self.buffer.split(b"\n", 1)[0].strip()
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            self._reply(400, "bad request\n")
            return
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            self._reply(405, "only GET\n", extra="Allow: GET, HEAD\r\n")
            return
        if target not in (b"/metrics", b"/"):
            self._reply(404, "not found: the metrics are at /metrics\n")
            return
        head_only = method == b"HEAD"

        def done(text: str | None) -> None:
            if text is None:
                self._reply(503, "the server is shutting down\n")
            else:
                self._reply(200, text, head_only=head_only,
                            content_type="text/plain; version=0.0.4; charset=utf-8")

        self.render(done)

    def _reply(self, status: int, body: str, *, extra: str = "", head_only: bool = False,
               content_type: str = "text/plain; charset=utf-8") -> None:
        self.answered = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  431: "Request Header Fields Too Large",
                  503: "Service Unavailable"}[status]
        data = body.encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(data)}\r\n{extra}Connection: close\r\n\r\n")
        transport.write(head.encode() + (b"" if head_only else data))
        transport.close()

"""The network subcommands of the ``octopus`` command line (see ``octopus --help``).

``serve`` runs a server; ``get names getall set del exists wait watch publish subscribe
info`` talk to one (``--url``, default ``$OCTOPUS_URL`` or tcp://127.0.0.1:6380).
Parameters after the query are typed by its placeholders, as on the wire. Output is
canonical record text, one per line, or JSON lines with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from octopus.errors import OctopusError
from octopus.events import Event, Mode
from octopus.record import Atom, Record

from .client import Client, connect
from .client_base import DEFAULT_URL
from .params import typed_params

__all__ = ["add_commands"]

_NO_LIMIT = 1 << 40


def _jsonable(record: Record | None) -> Any:
    if record is None:
        return None
    return {"name": record.name, "revision": record.revision,
            "attributes": {k: (str(v) if isinstance(v, Atom) else v)
                           for k, v in record.attributes.items()}}


def _mode(mode: Mode) -> str:
    return "|".join(m.name or "" for m in Mode if m & mode)


def _print_record(args: argparse.Namespace, record: Record) -> None:
    if args.json:
        print(json.dumps(_jsonable(record)), flush=True)
    else:
        print(record, flush=True)


def _print_event(args: argparse.Namespace, event: Event) -> None:
    if args.json:
        print(json.dumps({"id": event.trigger_id, "mode": _mode(event.mode),
                          "revision": event.revision, "record": _jsonable(event.record)}),
              flush=True)
    else:
        text = "" if event.record is None else str(event.record)
        print(f"{_mode(event.mode):<16} {event.revision:>8}  {text}", flush=True)


def _params(args: argparse.Namespace) -> tuple[object, ...]:
    params, rest = typed_params(args.query, [p.encode() for p in args.params], _NO_LIMIT)
    if rest:
        raise OctopusError(f"the query takes {len(params)} parameter(s), "
                           f"{len(args.params)} given")
    return params


def _client(args: argparse.Namespace) -> Client:
    return connect(args.url, password=args.password or os.environ.get("OCTOPUS_PASSWORD"))


def _get(args: argparse.Namespace) -> int:
    with _client(args) as c:
        _print_record(args, c.get(args.query, *_params(args)))
    return 0


def _names(args: argparse.Namespace) -> int:
    with _client(args) as c:
        names = c.get_names(args.query, *_params(args))
    if args.json:
        print(json.dumps(names))
    else:
        for n in names:
            print(n)
    return 0


def _getall(args: argparse.Namespace) -> int:
    with _client(args) as c:
        for r in c.get_all(args.query, *_params(args)):
            _print_record(args, r)
    return 0


def _set(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.ephemeral:
            raise OctopusError("--ephemeral records end with the connection: this command "
                               "would delete it at once; use the Python client")
        _print_record(args, c.set(args.query, *_params(args), sequential=args.sequential))
    return 0


def _del(args: argparse.Namespace) -> int:
    with _client(args) as c:
        _print_record(args, c.delete(args.query, *_params(args)))
    return 0


def _exists(args: argparse.Namespace) -> int:
    with _client(args) as c:
        found = c.exists(args.query, *_params(args))
    print(json.dumps(found) if args.json else ("yes" if found else "no"))
    return 0 if found else 1


def _wait(args: argparse.Namespace) -> int:
    with _client(args) as c:
        _print_record(args, c.wait_for(args.query, *_params(args), timeout=args.timeout))
    return 0


def _stream(args: argparse.Namespace, install: Callable[[Client, Any], object]) -> int:
    done = threading.Event()
    with _client(args) as c:
        def handler(event: Event) -> None:
            _print_event(args, event)
            if event.mode & Mode.REMOVED:
                done.set()

        install(c, handler)
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


def _watch(args: argparse.Namespace) -> int:
    on = Mode(0)
    if args.set:
        on |= Mode.ON_SET
    if args.delete:
        on |= Mode.ON_DEL
    on = on or Mode.ON_SET | Mode.ON_DEL
    params = _params(args)
    if args.existing:
        return _stream(args, lambda c, h: c.watch_existing(args.query, h, *params, on=on))
    return _stream(args, lambda c, h: c.watch(args.query, h, *params, on=on))


def _subscribe(args: argparse.Namespace) -> int:
    params = _params(args)
    return _stream(args, lambda c, h: c.subscribe(args.query, h, *params))


def _publish(args: argparse.Namespace) -> int:
    with _client(args) as c:
        n = c.publish(args.query, *_params(args))
    print(n)
    return 0


def _info(args: argparse.Namespace) -> int:
    with _client(args) as c:
        text = c.info()
    if args.json:
        info: dict[str, str] = {}
        for line in text.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                info[k] = v
        print(json.dumps(info))
    else:
        print(text.replace("\r\n", "\n").rstrip())
    return 0


def _serve(args: argparse.Namespace) -> int:
    from octopus.engine import Engine
    from octopus.query.parser import DEFAULT_MAX_LENGTH

    from .server import ServerConfig, run

    config = ServerConfig(password=args.requirepass or os.environ.get("OCTOPUS_PASSWORD"),
                          max_clients=args.max_clients, output_limit=args.output_limit,
                          reply_cache=0 if args.no_reply_cache else 4096)
    engine = Engine(max_query_length=args.max_query_length or DEFAULT_MAX_LENGTH)
    try:
        for path in args.load:
            engine.consult(path)        # trusted application code, loaded before serving

        def ready(server: Any) -> None:
            print("octopus serving on " + " ".join(server.addresses), file=sys.stderr,
                  flush=True)

        run(engine, host=args.host, port=args.port, unix=args.unix, config=config,
            allow_remote=args.allow_remote, use_uvloop=not args.no_uvloop, ready=ready)
    finally:
        engine.close()
    return 0


def _client_command(sub: Any, name: str, func: Callable[[argparse.Namespace], int],
                    help: str, *, query: str = "query") -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help)
    p.add_argument("query", metavar=query.upper(), help=f"Octopus {query} text")
    p.add_argument("params", nargs="*", metavar="PARAM",
                   help="placeholder parameters, typed by the placeholders")
    p.add_argument("--url", default=os.environ.get("OCTOPUS_URL", DEFAULT_URL),
                   help="server URL: unix:///path or tcp://host:port (default %(default)s)")
    p.add_argument("--password", help="server password (or $OCTOPUS_PASSWORD)")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=_guarded(func))
    return p


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except OctopusError as e:
            print(f"octopus: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    return run


def add_commands(sub: Any) -> None:
    """Add ``serve`` and the client subcommands to the ``octopus`` parser."""
    s = sub.add_parser("serve", help="run the engine as a RESP server")
    s.add_argument("--unix", metavar="PATH", help="listen on this Unix socket (mode 0600)")
    s.add_argument("--host", help="listen on this TCP address (default 127.0.0.1 unless "
                                  "--unix is given)")
    s.add_argument("--port", type=int, default=6380, help="TCP port (default %(default)s)")
    s.add_argument("--load", action="append", default=[], metavar="FILE.pl",
                   help="consult a knowledge-base file at start-up (repeatable)")
    s.add_argument("--requirepass", metavar="SECRET",
                   help="clients must AUTH with this password (or $OCTOPUS_PASSWORD)")
    s.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (needs --requirepass)")
    s.add_argument("--max-clients", type=int, default=10000)
    s.add_argument("--output-limit", type=int, default=32 << 20, metavar="BYTES",
                   help="drop a client with more unsent output than this")
    s.add_argument("--max-query-length", type=int, default=0, metavar="BYTES")
    s.add_argument("--no-uvloop", action="store_true", help="use asyncio's own event loop")
    s.add_argument("--no-reply-cache", action="store_true",
                   help="send every GET to the engine (no revision-checked reply cache)")
    s.set_defaults(func=_guarded(_serve))

    _client_command(sub, "get", _get, "print the first record matching a query")
    _client_command(sub, "names", _names, "print the names matching a query")
    _client_command(sub, "getall", _getall, "print every record matching a query")
    p = _client_command(sub, "set", _set, "store a record", query="record")
    p.add_argument("--sequential", action="store_true", help="append the next sequence number")
    p.add_argument("--ephemeral", action="store_true", help=argparse.SUPPRESS)
    _client_command(sub, "del", _del, "delete a record")
    _client_command(sub, "exists", _exists, "exit 0 if a record matches, else 1")
    p = _client_command(sub, "wait", _wait, "wait until a record matches, print it")
    p.add_argument("--timeout", type=float, default=None, help="seconds (default: forever)")
    p = _client_command(sub, "watch", _watch, "stream changes matching a query until Ctrl-C")
    p.add_argument("--set", action="store_true", help="only ON_SET events")
    p.add_argument("--del", dest="delete", action="store_true", help="only ON_DEL events")
    p.add_argument("--existing", action="store_true", help="first the current matches")
    _client_command(sub, "publish", _publish, "publish a message", query="message")
    _client_command(sub, "subscribe", _subscribe, "stream published messages until Ctrl-C")
    p = sub.add_parser("info", help="print the server's INFO")
    p.add_argument("--url", default=os.environ.get("OCTOPUS_URL", DEFAULT_URL))
    p.add_argument("--password")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guarded(_info))

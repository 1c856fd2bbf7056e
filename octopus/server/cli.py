"""The network subcommands of the ``octopus`` command line (see ``octopus --help``).

``serve`` runs a server; ``get names getall set del exists wait watch publish subscribe
info`` talk to one (``--url``, default ``$OCTOPUS_URL`` or tcp://127.0.0.1:6380).
Parameters after the query are read as the language reads literals, typed by the query's
placeholders (``%d`` takes ``42``, ``-7`` or ``0x8086``). Output is canonical record
text, one per line, or JSON lines with ``--json``. Exit statuses are in
:mod:`octopus.cli`; the client commands check their arguments before connecting, so a
usage error never waits for a server.

``serve`` refuses to take over an address a live server holds: a Unix socket that
answers a connection, or a TCP port in use. A socket file nobody answers on (left by a
server that died) is replaced.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import re
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from octopus.cli import EXIT_FALSE, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, CommandError
from octopus.errors import EngineClosed, ParameterError, ParseError
from octopus.events import Event, Mode
from octopus.query.lexer import Lexer
from octopus.record import Atom, Record

from .client import Client, connect
from .client_base import DEFAULT_URL, AuthenticationError, parse_url, redact_url, url_options
from .params import placeholder_kinds
from .server import is_loopback

if TYPE_CHECKING:
    from ply.lex import LexToken

__all__ = ["add_commands", "parse_params"]

_NO_LIMIT = 1 << 40
log = logging.getLogger("octopus.server")


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


# --- parameters ----------------------------------------------------------------------------

_lexer: Lexer | None = None
_WANT = {"d": "an integer (42, -7, 0x1F)", "f": "a number (2.5, -1e3, 7)",
         "b": "true or false"}


def _literal(text: str) -> object:
    """The value of ``text`` as one literal of the language, or None if it is not one."""
    global _lexer
    if _lexer is None:
        _lexer = Lexer().build(reflags=int(re.VERBOSE | re.DOTALL))   # as the parser
    _lexer.input(text)
    try:
        tokens: list[LexToken] = []
        while (tok := _lexer.token()) is not None and len(tokens) < 2:
            tokens.append(tok)
    except ParseError:
        return None
    if len(tokens) != 1 or tokens[0].type not in ("INT", "FLOAT", "TRUE", "FALSE"):
        return None
    kind = tokens[0].type
    return kind == "TRUE" if kind in ("TRUE", "FALSE") else tokens[0].value


def parse_params(query: str, texts: list[str]) -> tuple[object, ...]:
    """Command-line parameters as values, typed by the query's placeholders: ``%d``,
    ``%f`` and ``%b`` take the language's own literals (so ``0x8086`` is an integer, as it
    is inside a query), ``%s`` and ``%n`` take the text as it is."""
    kinds = placeholder_kinds(query, _NO_LIMIT)
    if len(texts) != len(kinds):
        raise ParameterError(f"the query has {len(kinds)} placeholder(s) but {len(texts)} "
                             "parameter(s) were given")
    values: list[object] = []
    for i, (kind, text) in enumerate(zip(kinds, texts, strict=True)):
        if kind not in _WANT:
            values.append(text)
            continue
        value = _literal(text)
        if kind == "b" and text in ("1", "0"):          # as on the wire (redis-cli habits)
            value = text == "1"
        ok = (type(value) is int if kind == "d" else
              type(value) in (int, float) if kind == "f" else type(value) is bool)
        if not ok:
            raise ParameterError(f"parameter {i + 1} (%{kind}) must be {_WANT[kind]}, "
                                 f"got {text[:40]!r}")
        values.append(float(value) if kind == "f" else value)  # type: ignore[arg-type]  # `ok` checked it
    return tuple(values)


def _params(args: argparse.Namespace) -> tuple[object, ...]:
    return parse_params(args.query, args.params)


# --- the client commands ---------------------------------------------------------------------


def _client_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context of --tls-ca/--tls-cert/--tls-key (None: the URL's own options)."""
    if not (args.tls_ca or args.tls_cert or args.tls_key):
        return None
    if parse_url(args.url)[0] != "tls":
        raise CommandError(f"--tls-ca, --tls-cert and --tls-key need a rediss:// URL, not "
                           f"{redact_url(args.url)}", EXIT_USAGE)
    if args.tls_key and not args.tls_cert:
        raise CommandError("--tls-key needs --tls-cert", EXIT_USAGE)
    from .tls import client_context

    try:
        return client_context(args.tls_ca, args.tls_cert, args.tls_key)
    except (OSError, ValueError) as e:
        raise CommandError(f"cannot load the TLS files: {e}", EXIT_USAGE) from None


@contextlib.contextmanager
def _connected(args: argparse.Namespace) -> Iterator[Client]:
    """A client for the command; failing to connect, or losing the connection, is exit
    status 3 with a one-line reason."""
    context = _client_tls(args)
    # --password, then the URL's, then $OCTOPUS_PASSWORD.
    password = args.password or (None if "password" in url_options(args.url)
                                 else os.environ.get("OCTOPUS_PASSWORD"))
    try:
        client = connect(args.url, password=password, ssl_context=context)
    except (EngineClosed, OSError) as e:
        raise CommandError(f"{e} (is `octopus serve` running there? set --url or "
                           "$OCTOPUS_URL)", EXIT_UNREACHABLE) from None
    except AuthenticationError as e:
        raise CommandError(f"{redact_url(args.url)} refused the password: {e}",
                           EXIT_UNREACHABLE) from None
    try:
        with client:
            yield client
    except EngineClosed as e:
        raise CommandError(str(e), EXIT_UNREACHABLE) from None


def _get(args: argparse.Namespace) -> int:
    params = _params(args)
    with _connected(args) as c:
        _print_record(args, c.get(args.query, *params))
    return EXIT_OK


def _names(args: argparse.Namespace) -> int:
    params = _params(args)
    with _connected(args) as c:
        names = c.get_names(args.query, *params)
    if args.json:
        print(json.dumps(names))
    else:
        for n in names:
            print(n)
    return EXIT_OK


def _getall(args: argparse.Namespace) -> int:
    params = _params(args)
    with _connected(args) as c:
        records = c.get_all(args.query, *params)
    for r in records:
        _print_record(args, r)
    return EXIT_OK


def _set(args: argparse.Namespace) -> int:
    if args.ephemeral:
        raise CommandError("--ephemeral records end with the connection: this command "
                           "would delete it at once; use the Python client", EXIT_USAGE)
    params = _params(args)
    with _connected(args) as c:
        _print_record(args, c.set(args.query, *params, sequential=args.sequential))
    return EXIT_OK


def _del(args: argparse.Namespace) -> int:
    params = _params(args)
    with _connected(args) as c:
        _print_record(args, c.delete(args.query, *params))
    return EXIT_OK


def _exists(args: argparse.Namespace) -> int:
    params = _params(args)
    with _connected(args) as c:
        found = c.exists(args.query, *params)
    print(json.dumps(found) if args.json else ("yes" if found else "no"))
    return EXIT_OK if found else EXIT_FALSE


def _wait(args: argparse.Namespace) -> int:
    params = _params(args)
    with _connected(args) as c:
        _print_record(args, c.wait_for(args.query, *params, timeout=args.timeout))
    return EXIT_OK


def _why(args: argparse.Namespace) -> int:
    """``why lock|rwlock|semaphore|barrier NAME`` and ``why wait QUERY [PARAM...]``: who
    is in the way. Exit 0 when nothing is (the lock is free, a wait would return at
    once), 1 when something is, as ``exists`` says no."""
    from octopus.recipes.barrier import explain_barrier
    from octopus.recipes.store import check_name

    kind = args.kind
    if kind == "wait":
        params = parse_params(args.name, args.params)
    else:
        if args.params:
            raise CommandError(f"why {kind} takes one NAME, not parameters", EXIT_USAGE)
        check_name(args.name)
        if kind == "semaphore" and args.value is None:
            raise CommandError("why semaphore needs --value N (the number of permits is "
                               "not stored)", EXIT_USAGE)
    with _connected(args) as c:
        x: Any
        if kind == "wait":
            x = c.explain_wait(args.name, *params)
        elif kind == "lock":
            x = c.lock(args.name).why()
        elif kind == "rwlock":
            x = c.rwlock(args.name).why()
        elif kind == "semaphore":
            x = c.semaphore(args.name, args.value).why()
        else:
            x = explain_barrier(c, args.name, args.parties)
    print(json.dumps(x.to_dict()) if args.json else str(x))
    return EXIT_FALSE if x.blocked else EXIT_OK


def _stream(args: argparse.Namespace, install: Callable[[Client, Any], object]) -> int:
    """Print events until Ctrl-C (exit 0) or until the connection is lost (exit 3)."""
    done = threading.Event()
    with _connected(args) as c:
        def handler(event: Event) -> None:
            if event.mode & Mode.REMOVED:
                done.set()
            else:
                _print_event(args, event)

        install(c, handler)
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            return EXIT_OK
        if c.closed:
            raise CommandError(f"the connection to {args.url} was lost", EXIT_UNREACHABLE)
    return EXIT_OK


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
    params = _params(args)
    with _connected(args) as c:
        n = c.publish(args.query, *params)
    print(n)
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    with _connected(args) as c:
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
    return EXIT_OK


# --- serve -----------------------------------------------------------------------------------


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CommandError(f"cannot read rules file {path}: {e}") from None


N = TypeVar("N", int, float)


def _number(text: str, kind: Callable[[str], N], what: str, ok: Callable[[N], bool],
            rule: str) -> N:
    """``text`` read by ``kind`` and checked by ``ok``, else an argparse type error
    (``rule`` with the number as ``{n}``)."""
    try:
        n = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if not ok(n):
        raise argparse.ArgumentTypeError(rule.format(n=n))
    return n


def _port(text: str) -> int:
    # Checked here: uvloop would bind `port % 65536` without a word.
    return _number(text, int, "a port number", lambda p: 0 <= p <= 65535,
                   "port {n} is out of range (0-65535; 0 picks a free port)")


def _seconds(text: str) -> float:
    # The comparison also refuses nan and inf.
    return _number(text, float, "a number of seconds", lambda n: 0 < n < 1e6,
                   "must be more than 0 and less than 1e6 seconds, got {n}")


def _count(text: str) -> int:
    """A non-negative integer (0 turns the limit off or the feature down)."""
    return _number(text, int, "an integer", lambda n: n >= 0, "must be 0 or more, got {n}")


def _positive(text: str) -> int:
    return _number(text, int, "an integer", lambda n: n > 0, "must be positive, got {n}")


def _check_unix_path(path: str) -> None:
    """Refuse a socket path a live server answers on, or that is no socket at all; a
    socket nobody answers on (its server died) is left for the server to replace."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise CommandError(f"cannot listen on unix://{path}: the directory {parent} "
                               "does not exist") from None
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise CommandError(f"cannot listen on unix://{path}: the path exists and is not a "
                           "socket (not replacing it)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return                  # stale: nobody listens; the server replaces it
    except OSError as e:
        # A full backlog (EAGAIN) or a timeout still means a live listener; EACCES means
        # another user's socket. Either way not ours to take.
        raise CommandError(f"cannot listen on unix://{path}: {e.strerror or e} (a live "
                           "socket? not replacing it)") from None
    finally:
        probe.close()
    raise CommandError(f"unix://{path} is in use: a server answers on it; stop that server "
                       "or choose another --unix path")


def _listen_error(e: OSError, args: argparse.Namespace, host: str | None,
                  metrics: tuple[str, int] | None = None) -> CommandError:
    if e.errno == errno.EADDRINUSE and metrics is not None and _in_use(*metrics):
        return CommandError(f"the metrics port {metrics[0]}:{metrics[1]} is in use; stop "
                            "what holds it or choose another --metrics-port")
    if e.errno == errno.EADDRINUSE and host is not None:
        return CommandError(f"tcp://{host}:{args.port} is in use (another server?); stop it "
                            "or choose another --port")
    where = " and ".join(([f"unix://{args.unix}"] if args.unix else []) +
                         ([f"tcp://{host}:{args.port}"] if host is not None else []))
    return CommandError(f"cannot listen on {where}: {e.strerror or e}")


def _in_use(host: str, port: int) -> bool:
    """Whether something listens on host:port (to say which of two ports was taken)."""
    if port == 0:
        return False
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def _server_tls(args: argparse.Namespace, host: str | None) -> ssl.SSLContext | None:
    """The server's TLS context from --tls-cert/--tls-key/--tls-ca (None without them)."""
    if args.tls_cert is None:
        if args.tls_key is not None or args.tls_ca is not None:
            raise CommandError("--tls-key and --tls-ca need --tls-cert", EXIT_USAGE)
        return None
    if host is None:
        raise CommandError("TLS is for TCP: --tls-cert needs --host (a --unix socket is "
                           "local, mode 0600)", EXIT_USAGE)
    from .tls import server_context

    try:
        return server_context(args.tls_cert, args.tls_key, args.tls_ca)
    except (OSError, ValueError) as e:
        # ssl.SSLError is an OSError: a key that does not match, a file that is no PEM.
        raise CommandError(f"cannot load the TLS certificate, key or CA: "
                           f"{getattr(e, 'strerror', None) or e}") from None


def with_config(parser: argparse.ArgumentParser, args: argparse.Namespace,
                argv: Any) -> argparse.Namespace:
    """``serve --config FILE``: ``args`` parsed again with the file's values as the
    defaults of serve's flags, so the flags given win (see
    :mod:`octopus.server.config_file`)."""
    if getattr(args, "config", None) is None:
        return args
    from .config_file import load_config

    serve: argparse.ArgumentParser = args.serve_parser
    serve.set_defaults(**load_config(args.config, serve))
    return parser.parse_args(argv)


def _serve(args: argparse.Namespace) -> int:
    from octopus import __version__
    from octopus.engine import Engine
    from octopus.query.parser import DEFAULT_MAX_LENGTH

    from .memory import tune_allocator
    from .server import Server, ServerConfig, exposure_error, run

    host = args.host if args.host is not None or args.unix is not None else "127.0.0.1"
    password = args.requirepass or os.environ.get("OCTOPUS_PASSWORD")
    tls = _server_tls(args, host)
    refusal = exposure_error(host, password=password, tls=tls is not None,
                             client_certs=args.tls_ca is not None,
                             allow_remote=args.allow_remote,
                             allow_cleartext=args.unsafe_allow_cleartext)
    if refusal is not None:
        raise CommandError(refusal, EXIT_USAGE)
    if host is not None and password and tls is None and args.unsafe_allow_cleartext \
            and not is_loopback(host):
        log.warning("UNSAFE: the password and all data cross the network in clear text "
                    "(--unsafe-allow-cleartext)")
    metrics = None
    if args.metrics_port is not None:
        metrics_host = args.metrics_host or "127.0.0.1"
        if not is_loopback(metrics_host) and not args.allow_remote:
            raise CommandError(f"refusing to serve metrics on non-loopback address "
                               f"{metrics_host!r} without --allow-remote", EXIT_USAGE)
        metrics = (metrics_host, args.metrics_port)
    if args.unix is not None:
        _check_unix_path(args.unix)

    if args.session_timeout > args.max_session_timeout:
        raise CommandError(f"--session-timeout {args.session_timeout:g} is more than "
                           f"--max-session-timeout {args.max_session_timeout:g}", EXIT_USAGE)
    config = ServerConfig(password=password, max_clients=args.max_clients,
                          output_limit=args.output_limit,
                          reply_cache=0 if args.no_reply_cache else ServerConfig.reply_cache,
                          max_triggers=args.max_triggers,
                          session_timeout=args.session_timeout,
                          max_session_timeout=args.max_session_timeout,
                          session_replay_bytes=args.session_replay_bytes)
    tune_allocator()                    # before the engine allocates (see .memory)
    connection_class = None
    if args.etcd and args.data:
        raise CommandError("--data and --etcd do not go together: a replica's state is in "
                           "etcd", EXIT_USAGE)
    if args.etcd:
        from octopus.cluster.server import ReplicaConnection
        from octopus.errors import OctopusError

        connection_class = ReplicaConnection
        try:
            engine = Engine(max_query_length=args.max_query_length or DEFAULT_MAX_LENGTH,
                            etcd=args.etcd, prefix=args.prefix, lease_ttl=args.lease_ttl)
        except OctopusError as e:
            raise CommandError(f"cannot join the cluster at {args.etcd}: {e}",
                               EXIT_UNREACHABLE) from None
    else:
        engine = Engine(max_query_length=args.max_query_length or DEFAULT_MAX_LENGTH,
                        path=args.data, fsync=args.fsync)
    started: list[Server] = []
    try:
        for path in args.load:
            engine.consult(path)        # trusted application code, loaded before serving
            log.info("loaded %s", path)
        for path in args.rules:
            declared = engine.rules(_read_text(path))
            log.info("loaded rules %s: %s", path, " ".join(declared) or "no relation")

        def ready(server: Server) -> None:
            started.append(server)
            log.info("serving on %s (octopus %s, pid %d)", " ".join(server.addresses),
                     __version__, os.getpid())
            if server.metrics_address is not None:
                log.info("metrics on %s", server.metrics_address)

        try:
            run(engine, host=host, port=args.port, unix=args.unix, config=config,
                allow_remote=args.allow_remote, use_uvloop=not args.no_uvloop, ready=ready,
                connection_class=connection_class, tls=tls,
                allow_cleartext=args.unsafe_allow_cleartext, metrics=metrics)
        except OSError as e:
            raise _listen_error(e, args, host, metrics) from None
    finally:
        engine.close()
    if started:
        s = started[0].stats
        log.info("shut down after %.1f s: %d connections, %d commands",
                 time.time() - s.started, s.connections_received, s.commands)
    return EXIT_OK


# --- the parser --------------------------------------------------------------------------------


def _client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("OCTOPUS_URL", DEFAULT_URL),
                   help="server URL: unix:///path, tcp://host:port or rediss://host:port "
                        "(TLS); a password may be in it (redis://:SECRET@host) "
                        "(default: $OCTOPUS_URL or %(default)s)")
    p.add_argument("--password", help="server password (default: the URL's, then "
                                      "$OCTOPUS_PASSWORD)")
    p.add_argument("--tls-ca", metavar="PEM",
                   help="with a rediss:// URL: trust server certificates signed by this CA "
                        "(default: the system's CAs)")
    p.add_argument("--tls-cert", metavar="PEM",
                   help="with a rediss:// URL: present this client certificate")
    p.add_argument("--tls-key", metavar="PEM",
                   help="the client certificate's key (default: in the --tls-cert file)")
    p.add_argument("--json", action="store_true", help="print JSON instead of record text")


def _client_command(sub: Any, name: str, func: Callable[[argparse.Namespace], int],
                    help: str, *, query: str = "query",
                    **parser_args: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help,
                                                **parser_args)
    p.add_argument("query", metavar=query.upper(), help=f"Octopus {query} text")
    p.add_argument("params", nargs="*", metavar="PARAM",
                   help="placeholder parameters, one per placeholder, read as the "
                        "language reads literals (%%d: 42 or 0x2A, %%f: 2.5, %%b: true)")
    _client_flags(p)
    p.set_defaults(func=func)
    return p


def add_commands(sub: Any, **parser_args: Any) -> None:
    """Add ``serve`` and the client subcommands to the ``octopus`` parser (``parser_args``
    go to each subcommand's parser: parents, epilog)."""
    desc = "run the engine as a RESP server (Redis protocol) until SIGINT/SIGTERM"
    s = sub.add_parser("serve", help=desc, description=desc, **parser_args)
    s.add_argument("--unix", metavar="PATH",
                   help="listen on this Unix socket (mode 0600); refused if a live server "
                        "answers on it")
    s.add_argument("--host", help="listen on this TCP address (default 127.0.0.1 unless "
                                  "--unix is given)")
    s.add_argument("--port", type=_port, default=6380,
                   help="TCP port, 0-65535; 0 picks a free one (default %(default)s)")
    s.add_argument("--load", action="append", default=[], metavar="FILE.pl",
                   help="consult a knowledge-base file at start-up (repeatable)")
    s.add_argument("--rules", action="append", default=[], metavar="FILE.pl",
                   help="load rules over live records at start-up (repeatable); the "
                        "relations they define can be watched by clients (docs/rules.md)")
    s.add_argument("--requirepass", metavar="SECRET",
                   help="clients must AUTH with this password (default: $OCTOPUS_PASSWORD)")
    s.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (needs --requirepass)")
    s.add_argument("--max-clients", type=_positive, default=10000, metavar="N",
                   help="refuse connections beyond this many (default %(default)s)")
    s.add_argument("--output-limit", type=_positive, default=32 << 20, metavar="BYTES",
                   help="drop a client with more unsent output than this "
                        "(default %(default)s)")
    s.add_argument("--max-query-length", type=_positive, default=None, metavar="BYTES",
                   help="longest query or record text accepted (default 65536)")
    s.add_argument("--max-triggers", type=_count, default=10000, metavar="N",
                   help="triggers and subscriptions one connection may install "
                        "(0: none; default %(default)s)")
    s.add_argument("--session-timeout", type=_seconds, default=5.0, metavar="SECONDS",
                   help="a resumable session's timeout when its client asks none "
                        "(default %(default)s)")
    s.add_argument("--max-session-timeout", type=_seconds, default=60.0, metavar="SECONDS",
                   help="the longest session timeout a client may ask for "
                        "(default %(default)s)")
    s.add_argument("--session-replay-bytes", type=_count, default=4 << 20, metavar="BYTES",
                   help="events kept per disconnected session for its resume "
                        "(default %(default)s)")
    s.add_argument("--data", metavar="DIR", default=None,
                   help="keep the records in this directory (journal and snapshots; created "
                        "if needed) and recover them at start; without it the server "
                        "forgets everything when it stops")
    s.add_argument("--fsync", choices=("always", "everysec", "no"), default="everysec",
                   help="with --data: always = answer a write once it is on disk; everysec "
                        "= fsync once a second (a crash of the process loses nothing, a "
                        "power loss about a second); no = leave it to the OS (default "
                        "%(default)s)")
    s.add_argument("--etcd", metavar="URL[,URL...]",
                   help="be a replica of the cluster stored in this etcd cluster (its client "
                        "URLs, http://host:port, comma-separated); see docs/cluster.md")
    s.add_argument("--prefix", default="/octopus/",
                   help="the etcd key prefix of the cluster's state (default %(default)s)")
    s.add_argument("--lease-ttl", type=_positive, default=10, metavar="SECONDS",
                   help="with --etcd: seconds a session outlives its client or node "
                        "(its etcd lease's TTL, at least 2; default %(default)s)")
    s.add_argument("--no-uvloop", action="store_true", help="use asyncio's own event loop")
    s.add_argument("--no-reply-cache", action="store_true",
                   help="send every GET to the engine (no reply cache)")
    s.add_argument("--tls-cert", metavar="PEM",
                   help="serve TCP over TLS with this certificate (chain) file; clients "
                        "connect with rediss://")
    s.add_argument("--tls-key", metavar="PEM",
                   help="the certificate's private key (default: in the --tls-cert file)")
    s.add_argument("--tls-ca", metavar="PEM",
                   help="demand a client certificate signed by this CA (mutual TLS)")
    s.add_argument("--unsafe-allow-cleartext", action="store_true",
                   help="UNSAFE: allow --requirepass on a non-loopback --host without TLS "
                        "(anyone on the network path reads the password and the data)")
    s.add_argument("--metrics-port", type=_port, default=None, metavar="PORT",
                   help="serve Prometheus metrics over HTTP on this port (at /metrics)")
    s.add_argument("--metrics-host", default=None, metavar="ADDRESS",
                   help="the metrics endpoint's address (default 127.0.0.1; another needs "
                        "--allow-remote)")
    s.add_argument("--config", metavar="FILE.toml",
                   help="read serve's flags from this TOML file (keys: the flags without "
                        "--; flags given win over it)")
    s.set_defaults(func=_serve, serve_parser=s)

    _client_command(sub, "get", _get, "print the first record matching a query",
                    **parser_args)
    _client_command(sub, "names", _names, "print the names matching a query", **parser_args)
    _client_command(sub, "getall", _getall, "print every record matching a query",
                    **parser_args)
    p = _client_command(sub, "set", _set, "store a record", query="record", **parser_args)
    p.add_argument("--sequential", action="store_true",
                   help="append the next sequence number to the name")
    p.add_argument("--ephemeral", action="store_true", help=argparse.SUPPRESS)
    _client_command(sub, "del", _del, "delete a record", **parser_args)
    _client_command(sub, "exists", _exists, "exit 0 if a record matches, else 1",
                    **parser_args)
    p = _client_command(sub, "wait", _wait, "wait until a record matches, print it "
                        "(exit 1 on timeout)", **parser_args)
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="give up after this long (default: wait forever)")
    p = _client_command(sub, "watch", _watch, "stream changes matching a query until Ctrl-C",
                        **parser_args)
    p.add_argument("--set", action="store_true", help="only ON_SET events")
    p.add_argument("--del", dest="delete", action="store_true", help="only ON_DEL events")
    p.add_argument("--existing", action="store_true",
                   help="first an ON_SET event for each current match")
    _client_command(sub, "publish", _publish, "publish a message, print how many "
                    "subscriptions got it", query="message", **parser_args)
    _client_command(sub, "subscribe", _subscribe, "stream published messages until Ctrl-C",
                    **parser_args)
    desc = ("explain who is in the way: the holders and queue of a lock, the parties of a "
            "barrier, what a wait for a query waits for (exit 0: nothing is, 1: something "
            "is)")
    p = sub.add_parser("why", help=desc, description=desc, **parser_args)
    p.add_argument("kind", choices=("lock", "rwlock", "semaphore", "barrier", "wait"),
                   help="what to explain")
    p.add_argument("name", metavar="NAME|QUERY",
                   help="the lock's, semaphore's or barrier's name; for wait, a query")
    p.add_argument("params", nargs="*", metavar="PARAM",
                   help="the query's placeholder parameters (why wait)")
    p.add_argument("--parties", type=_positive, default=None, metavar="N",
                   help="a barrier's number of parties (default: from its last round)")
    p.add_argument("--value", type=_positive, default=None, metavar="N",
                   help="a semaphore's number of permits (needed: it is not stored)")
    _client_flags(p)
    p.set_defaults(func=_why)
    p = sub.add_parser("info", help="print the server's INFO",
                       description="print the server's INFO", **parser_args)
    _client_flags(p)
    p.set_defaults(func=_info)

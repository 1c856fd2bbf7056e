"""The ``octopus`` command line: the boot demo, Kaluga over this machine's PCI devices,
the server (``serve``) and the client commands that talk to one.

Exit status, the same for every command (like grep and etcdctl, a script can tell "no"
from "broken")::

    0  success; found; true
    1  not found; false; a wait timed out; a compare-and-set's conditions did not hold
    2  usage: bad flags, or query, record or parameters that do not parse or fit
    3  cannot connect to the server, or lost the connection to it
    4  any other error (address in use, missing SWI-Prolog, knowledge-base error, ...)
    130  interrupted (Ctrl-C) before the command finished

An ordinary failure prints one line (``octopus COMMAND: what went wrong``) on stderr and
no traceback; only a bug in octopus prints one.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from octopus.completion import SHELLS
from octopus.errors import (
    ConditionFailed,
    NotFound,
    OctopusError,
    QueryError,
    SetupError,
    WaitTimeout,
)

__all__ = [
    "EXIT_ERROR", "EXIT_FALSE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_UNREACHABLE",
    "EXIT_USAGE", "CommandError", "build_parser", "configure_logging", "main",
]

EXIT_OK = 0
EXIT_FALSE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_ERROR = 4
EXIT_INTERRUPTED = 130          # 128 + SIGINT, as shells report a Ctrl-C

LOG_LEVELS = ("debug", "info", "warning", "error")

_EPILOG = """\
exit status: 0 success/found/true, 1 not found/false (also a wait that timed out),
2 usage (bad flags, or a query, record or parameter that does not parse), 3 cannot
connect to the server (or lost the connection), 4 any other error, 130 interrupted.
See docs/cli.md."""


class CommandError(Exception):
    """An ordinary failure of a command: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _demo(args: argparse.Namespace) -> int:
    if args.graph:
        try:
            import matplotlib  # noqa: F401  (checked before booting, not after)
        except ImportError:
            raise CommandError("--graph needs matplotlib: pip install matplotlib "
                               "(or octopus[demo])") from None
    from octopus.kaluga.demo import main as demo_main

    return demo_main(args)


def _kaluga(args: argparse.Namespace) -> int:
    from octopus.kaluga.sysfs import main as sysfs_main

    return sysfs_main(args.sysfs, args.pci_ids, args.no_names)


def _data(args: argparse.Namespace) -> int:
    from pathlib import Path

    from octopus.durable import tools

    directory = Path(args.directory)
    if not directory.is_dir():
        raise CommandError(f"no such data directory: {directory}")
    if args.action == "check":
        return tools.check(directory, sys.stdout)
    if args.action == "dump":
        tools.dump(directory, sys.stdout, as_json=args.json)
        return EXIT_OK
    tools.repair(directory, sys.stdout)
    return EXIT_OK


def _load(args: argparse.Namespace) -> int:
    from octopus.server.cli import _connected

    source: Any = args.file
    if args.file == "-":
        source = sys.stdin.buffer
    elif not os.path.isfile(args.file):
        raise CommandError(f"no such file: {args.file}", EXIT_USAGE)
    loaded = 0

    def progress(n: int) -> None:
        nonlocal loaded
        loaded = n

    try:
        with _connected(args) as client:
            total = client.load(source, batch=args.batch, progress=progress)
    except OctopusError as e:
        done = getattr(e, "loaded", loaded)
        code, message = _failure(e)
        raise CommandError(f"{message} ({done} records were loaded before it)", code) from None
    if args.json:
        import json

        print(json.dumps({"loaded": total}))
    else:
        print(f"loaded {total} records")
    return EXIT_OK


def _completion(args: argparse.Namespace) -> int:
    from octopus.completion import script

    print(script(build_parser(), args.shell), end="")
    return EXIT_OK


def _batch(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 1 to 100000")
    return value


def _version() -> str:
    from octopus import __version__

    return f"octopus {__version__}"


def build_parser() -> argparse.ArgumentParser:
    """The whole ``octopus`` parser (every subcommand)."""
    parser = argparse.ArgumentParser(
        prog="octopus", epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A coordination engine: records, queries, triggers, publish/subscribe "
                    "and recipes over a SWI-Prolog knowledge base.")
    parser.add_argument("--version", action="version", version=_version(),
                        help="print the version and exit")
    # Every subcommand takes --log-level (after the subcommand, like its other flags).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", choices=LOG_LEVELS, default=None, type=str.lower,
                        help="what the octopus loggers print on stderr (default: info "
                             "for serve, warning otherwise)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", parents=[common], epilog=_EPILOG,
                          help="boot a simulated machine with Kaluga (the paper's use case)")
    from octopus.kaluga.demo import add_arguments as demo_arguments

    demo_arguments(demo)
    demo.set_defaults(func=_demo)
    kaluga = sub.add_parser("kaluga", parents=[common], epilog=_EPILOG,
                            help="run this machine's PCI devices through Kaluga and "
                                 "compare with the drivers Linux bound")
    kaluga.add_argument("--sysfs", default="/sys/bus/pci/devices", metavar="DIR",
                        help="the PCI devices directory (default %(default)s)")
    kaluga.add_argument("--pci-ids", default=None, metavar="FILE",
                        help="pci.ids file for device names (default: the system's)")
    kaluga.add_argument("--no-names", action="store_true", help="do not load pci.ids")
    kaluga.set_defaults(func=_kaluga)
    data = sub.add_parser("data", parents=[common], epilog=_EPILOG,
                          help="check, dump or repair the data directory of a durable engine",
                          description="check: verify every checksum and say what a start "
                                      "would do (exit 1 if it would cut a torn tail); dump: "
                                      "print the records a start would recover, in natural "
                                      "order; repair: cut a corrupt or torn journal tail, "
                                      "after saying what it drops (docs/durability.md)")
    data.add_argument("action", choices=("check", "dump", "repair"),
                      help="check, dump or repair (see above)")
    data.add_argument("directory", metavar="DIR", help="the data directory (serve --data)")
    data.add_argument("--json", action="store_true", help="dump: JSON lines")
    data.set_defaults(func=_data)
    from octopus.server.cli import _client_flags
    from octopus.server.cli import add_commands as add_server_commands

    add_server_commands(sub, parents=[common], epilog=_EPILOG)
    load = sub.add_parser("load", parents=[common], epilog=_EPILOG,
                          help="store the records of a file (one per line) on a server",
                          description="send a file of records, one per line in canonical "
                                      "text (what `octopus data dump` and GET print), to "
                                      "a server with LOAD, each request of about "
                                      "--batch records all or nothing; on a bad line, stop "
                                      "and say which (earlier requests stay loaded)")
    load.add_argument("file", metavar="FILE", help="the file, or - for standard input")
    load.add_argument("--batch", type=_batch, default=10_000, metavar="N",
                      help="records per LOAD request, 1 to 100000 (at most 512 KiB of text; "
                           "default %(default)s)")
    _client_flags(load)
    load.set_defaults(func=_load)
    completion = sub.add_parser("completion", parents=[common], epilog=_EPILOG,
                                help="print a shell completion script: "
                                     "source <(octopus completion bash)",
                                description="print a completion script for bash or zsh; "
                                            "enable it with source <(octopus completion "
                                            "SHELL) in ~/.bashrc or ~/.zshrc (docs/cli.md)")
    completion.add_argument("shell", choices=SHELLS, help="bash or zsh")
    completion.set_defaults(func=_completion)
    return parser


class _Handler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time (as logging's last resort does)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


@contextlib.contextmanager
def configure_logging(level: str) -> Iterator[None]:
    """While the block runs, the ``octopus`` loggers at ``level`` and above go to stderr,
    one line each; afterwards the loggers are as they were (``main()`` called in-process,
    as tests do, leaves no handler behind)."""
    logger = logging.getLogger("octopus")
    saved = logger.level
    handler = _Handler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


def _failure(exc: BaseException) -> tuple[int, str]:
    """The exit status and the one-line message for an ordinary failure."""
    if isinstance(exc, CommandError):
        return exc.code, str(exc)
    if isinstance(exc, SetupError):
        return EXIT_ERROR, str(exc)
    kind = type(exc).__name__
    if isinstance(exc, NotFound | WaitTimeout | ConditionFailed):
        return EXIT_FALSE, f"{kind}: {exc}"
    if isinstance(exc, QueryError):
        return EXIT_USAGE, f"{kind}: {exc}"
    if isinstance(exc, OctopusError):
        return EXIT_ERROR, f"{kind}: {exc}"
    assert isinstance(exc, OSError)
    return EXIT_ERROR, str(exc.strerror or exc) + (f": {exc.filename}" if exc.filename else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    who = "octopus"
    try:
        # Usage errors exit 2 from parse_args, with argparse's message.
        parser = build_parser()
        args = parser.parse_args(argv)
        who = f"octopus {args.command}"
        if args.command == "serve":
            from octopus.server.cli import with_config

            args = with_config(parser, args, argv)
        level = args.log_level or ("info" if args.command == "serve" else "warning")
        with configure_logging(level):
            return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{who}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`octopus getall ... | head`): nothing left to say to it.
        _silence_stdout()
        return EXIT_OK
    except (CommandError, OctopusError, OSError) as e:
        code, message = _failure(e)
        print(f"{who}: {message}", file=sys.stderr)
        return code
    except Exception:
        traceback.print_exc()
        print(f"{who}: internal error (a bug in octopus; please report it with the "
              "traceback above)", file=sys.stderr)
        return EXIT_ERROR


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())

"""``octopus serve --config FILE``: serve's flags from a TOML file (docs/cli.md, *The
configuration file*).

Every flag of ``serve`` is a key, spelled as the flag without its leading ``--``
(``max-clients = 500``, ``tls-cert = "server.pem"``). The values become the flags'
defaults, so a flag given on the command line wins over the file (``load`` is the one
list: flags add to the file's files). A value is checked exactly as the flag's text
would be; an unknown key, a table, or a value of the wrong kind is a usage error that
names the key. Relative paths are relative to the file's directory, so a file means
the same whatever directory the server starts in.
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import tomllib
from typing import Any

from octopus.cli import EXIT_USAGE, CommandError

__all__ = ["PATH_KEYS", "load_config"]

log = logging.getLogger("octopus.server")

# Keys whose values are file or directory paths (made relative to the file's directory).
PATH_KEYS = frozenset({"unix", "load", "data", "tls-cert", "tls-key", "tls-ca"})
_NOT_IN_FILE = frozenset({"help", "config"})


def _keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and option[2:] not in _NOT_IN_FILE:
                keys[option[2:]] = action
    return keys


def _scalar(path: str, key: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CommandError(f"{path}: {key} must be a string or a number, got "
                           f"{type(value).__name__} {value!r}", EXIT_USAGE)
    return str(value)


def _convert(path: str, key: str, action: argparse.Action, value: object) -> object:
    """The value ``--key`` would give for the file's ``value``."""
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise CommandError(f"{path}: {key} must be true or false, got {value!r}",
                               EXIT_USAGE)
        return value
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_one(path, key, action, _scalar(path, key, v)) for v in items]
    return _one(path, key, action, _scalar(path, key, value))


def _one(path: str, key: str, action: argparse.Action, text: str) -> object:
    try:
        result = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
        raise CommandError(f"{path}: {key}: {e}", EXIT_USAGE) from None
    if action.choices is not None and result not in action.choices:
        raise CommandError(f"{path}: {key} must be one of "
                           f"{', '.join(map(str, action.choices))}, got {text!r}", EXIT_USAGE)
    if key in PATH_KEYS and isinstance(result, str):
        result = os.path.join(os.path.dirname(os.path.abspath(path)), result)
    return result


def load_config(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The file's values as ``parser``'s defaults (argparse ``dest`` -> value)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
            mode = os.fstat(f.fileno()).st_mode
    except OSError as e:
        raise CommandError(f"cannot read the configuration file {path}: "
                           f"{e.strerror or e}", EXIT_USAGE) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CommandError(f"{path} is not valid TOML: {e}", EXIT_USAGE) from None
    keys = _keys(parser)
    unknown = sorted(k for k in data if k not in keys)
    if unknown:
        raise CommandError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))} (the keys "
                           "are serve's flags without the leading --; see octopus serve "
                           "--help)", EXIT_USAGE)
    values: dict[str, Any] = {}
    for key, value in data.items():
        action = keys[key]
        values[action.dest] = _convert(path, key, action, value)
    if "requirepass" in data and stat.S_IMODE(mode) & 0o077:
        log.warning("%s holds the password and others may read it (mode %o): chmod 600 it",
                    path, stat.S_IMODE(mode))
    return values

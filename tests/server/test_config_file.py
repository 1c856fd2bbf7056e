"""``octopus serve --config FILE.toml``: every flag is a key, flags given win over the
file, unknown keys and bad values are usage errors naming them (docs/cli.md, *The
configuration file*). The parsing is checked in-process through the real parser; one
server is started from a file."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import octopus
from octopus.cli import EXIT_USAGE, CommandError, build_parser
from octopus.server.cli import with_config
from octopus.server.config_file import PATH_KEYS

from .conftest import ROOT, ServerProcess, python_env

EXAMPLE = ROOT / "examples" / "octopus.toml"


def parse(tmp_path: Path, text: str, *flags: str) -> argparse.Namespace:
    path = tmp_path / "octopus.toml"
    path.write_text(text)
    argv = ["serve", "--config", str(path), *flags]
    parser = build_parser()
    return with_config(parser, parser.parse_args(argv), argv)


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(CommandError) as info:
        parse(tmp_path, text)
    assert info.value.code == EXIT_USAGE
    return str(info.value)


def test_the_file_sets_the_flags(tmp_path: Path) -> None:
    args = parse(tmp_path, """
        host = "127.0.0.2"
        port = 7001
        max-clients = 50
        requirepass = "pw"
        no-uvloop = true
        fsync = "always"
        log-level = "DEBUG"
        load = ["kb/a.pl", "/abs/b.pl"]
        data = "state"
        metrics-port = 9390
    """)
    assert (args.host, args.port, args.max_clients, args.requirepass) == \
        ("127.0.0.2", 7001, 50, "pw")
    assert args.no_uvloop is True and args.fsync == "always" and args.log_level == "debug"
    # Relative paths are the file's directory's.
    assert args.load == [str(tmp_path / "kb/a.pl"), "/abs/b.pl"]
    assert args.data == str(tmp_path / "state")
    assert args.metrics_port == 9390
    assert args.allow_remote is False                 # not in the file: the default


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    args = parse(tmp_path, 'port = 7001\nmax-clients = 50\nload = ["a.pl"]\n',
                 "--port", "7002", "--load", "b.pl")
    assert args.port == 7002 and args.max_clients == 50
    assert args.load == [str(tmp_path / "a.pl"), "b.pl"]    # a flag adds to the list
    # Even a flag given with the default value wins.
    assert parse(tmp_path, "port = 7001\n", "--port", "6380").port == 6380


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    message = refused(tmp_path, 'prot = 1\nhost = "::1"\nbind = "x"\n')
    assert "unknown key(s) 'bind', 'prot'" in message
    assert "config" in refused(tmp_path, 'config = "other.toml"\n')
    assert "help" in refused(tmp_path, "help = true\n")


@pytest.mark.parametrize(("text", "why"), [
    ("port = 70000", "port: port 70000 is out of range"),
    ("port = \"http\"", "port: not a port number: 'http'"),
    ("port = true", "port must be a string or a number, got bool"),
    ("max-clients = 0", "max-clients: must be positive, got 0"),
    ("fsync = \"sometimes\"", "fsync must be one of always, everysec, no"),
    ("no-uvloop = \"yes\"", "no-uvloop must be true or false"),
    ("host = [\"a\"]", "host must be a string or a number, got list"),
    ("[tls]\ncert = \"x\"", "unknown key(s) 'tls'"),
    ("port = ", "is not valid TOML"),
])
def test_bad_values_are_named(tmp_path: Path, text: str, why: str) -> None:
    assert why in refused(tmp_path, text)


def test_a_missing_file(tmp_path: Path) -> None:
    argv = ["serve", "--config", str(tmp_path / "absent.toml")]
    parser = build_parser()
    with pytest.raises(CommandError, match="cannot read the configuration file"):
        with_config(parser, parser.parse_args(argv), argv)


def test_every_flag_has_a_key(tmp_path: Path) -> None:
    # Each of serve's flags (but --help and --config) is accepted as a key, and the path
    # keys are flags.
    serve = build_parser().parse_args(["serve"]).serve_parser
    keys = [o[2:] for a in serve._actions for o in a.option_strings
            if o.startswith("--") and o not in ("--help", "--config")]
    assert len(keys) > 20
    assert set(keys) >= PATH_KEYS
    unknown = refused(tmp_path, "\n".join(f"{k}x = 1" for k in keys))
    for k in keys:
        assert f"'{k}x'" in unknown


def test_the_example_config_is_valid(tmp_path: Path) -> None:
    argv = ["serve", "--config", str(EXAMPLE)]
    parser = build_parser()
    args = with_config(parser, parser.parse_args(argv), argv)
    assert args.port == 6380 and args.metrics_port == 9380


def test_serve_from_a_file(tmp_path: Path) -> None:
    config = tmp_path / "octopus.toml"
    config.write_text('requirepass = "from-the-file"\nmax-clients = 7\n')
    os.chmod(config, 0o644)
    srv = ServerProcess(tmp_path, "--config", str(config))
    try:
        with octopus.connect(srv.unix_url, password="from-the-file") as c:
            assert "maxclients:7" in c.info()
        log = srv.log.read_text()
        assert "holds the password and others may read it (mode 644): chmod 600 it" in log
    finally:
        srv.stop()
    r = subprocess.run([sys.executable, "-m", "octopus", "serve", "--config", str(config),
                        "--port", "70000"], capture_output=True, text=True, timeout=60,
                       env=python_env(), cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    config.write_text("colour = 'blue'\n")
    r = subprocess.run([sys.executable, "-m", "octopus", "serve", "--config", str(config)],
                       capture_output=True, text=True, timeout=60, env=python_env(), cwd=ROOT)
    assert r.returncode == 2
    assert r.stderr.startswith(f"octopus serve: {config}: unknown key(s) 'colour'")

"""Shell completion (`octopus completion bash|zsh`): the printed script, sourced into a
real bash (and zsh when installed), completes what the parser accepts."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from octopus.cli import build_parser
from octopus.completion import script


def printed(shell: str) -> str:
    """The script as a user gets it: from the command, in its own process."""
    r = subprocess.run([sys.executable, "-m", "octopus", "completion", shell],
                       capture_output=True, text=True, timeout=60, check=True)
    return r.stdout


def complete(shell: str, text: str, lines: list[list[str]], cwd: Path) -> list[list[str]]:
    """COMPREPLY for each command line (its last word is the one being completed), in one
    shell. In zsh the function is called as bashcompinit calls it: COMP_WORDS a zsh array,
    COMP_CWORD the bash index."""
    calls = "\n".join(
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}; COMPREPLY=(); _octopus; "
        "print_reply" for words in lines)
    program = (f"{text}\nprint_reply() {{ printf '%s\\n' \"${{COMPREPLY[*]}}\"; }}\n"
               f"{calls}\n")
    argv = ["bash", "--norc", "--noprofile", "-c", program] if shell == "bash" \
        else ["zsh", "-f", "-c", program]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)
    assert r.returncode == 0 and not r.stderr, r.stderr
    out = r.stdout.split("\n")[:-1]
    assert len(out) == len(lines), r.stdout
    return [line.split() for line in out]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def visible_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions if a.help != argparse.SUPPRESS
            for o in a.option_strings}


def test_bash_completes_commands_flags_and_values(tmp_path: Path) -> None:
    (tmp_path / "rooms.pl").write_text("room(a).\n")
    (tmp_path / "data").mkdir()
    cases = {
        ("octopus", ""): None,                  # checked below: every subcommand
        ("octopus", "se"): ["serve", "set"],
        ("octopus", "--v"): ["--version"],
        ("octopus", "serve", "--fs"): ["--fsync"],
        ("octopus", "serve", "--fsync", ""): ["always", "everysec", "no"],
        ("octopus", "serve", "--fsync", "e"): ["everysec"],
        ("octopus", "serve", "--port", ""): [],              # a number: nothing to offer
        ("octopus", "get", "--url", ""): [],
        ("octopus", "serve", "--load", "ro"): ["rooms.pl"],
        ("octopus", "serve", "--data", "da"): ["data"],
        ("octopus", "serve", "--port", "6380", "--no-u"): ["--no-uvloop"],
        ("octopus", "get", "--log-level", ""): ["debug", "info", "warning", "error"],
        ("octopus", "watch", "--log-level", "info", "--ex"): ["--existing"],
        ("octopus", "data", "ch"): ["check"],
        ("octopus", "data", "check", "da"): ["data"],        # the directory
        ("octopus", "completion", ""): ["bash", "zsh"],
        ("octopus", "set", "--ephemeral"): [],               # hidden flags stay hidden
    }
    got = complete("bash", printed("bash"), [list(k) for k in cases], tmp_path)
    for (words, want), reply in zip(cases.items(), got, strict=True):
        if want is not None:
            assert reply == want, (words, reply)
    assert set(subcommands()) <= set(got[0])


def test_every_flag_of_every_subcommand_is_completed(tmp_path: Path) -> None:
    """Generated from the parser: a flag added later is completed without more work."""
    commands = subcommands()
    lines = [["octopus", name, "-"] for name in commands]
    got = complete("bash", printed("bash"), lines, tmp_path)
    for (name, parser), reply in zip(commands.items(), got, strict=True):
        assert set(reply) == visible_flags(parser), name


def test_the_script_follows_the_parser() -> None:
    parser = argparse.ArgumentParser(prog="octopus")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("frob")
    p.add_argument("--colour", choices=("red", "blue"), help="x")
    p.add_argument("--out", metavar="FILE", help="x")
    p.add_argument("--cert", metavar="PEM", help="x")
    p.add_argument("--name", help="x")
    text = script(parser, "bash")
    assert "frob:--colour) _octopus_reply 'red blue'" in text
    assert "frob:--out|frob:--cert) _octopus_files" in text
    assert "frob:--name) return" in text


@pytest.mark.parametrize("choice", ["a b", "$(touch x)", "x'y", "`id`"])
def test_a_word_a_shell_would_read_as_code_is_refused(choice: str) -> None:
    parser = argparse.ArgumentParser(prog="octopus")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("frob").add_argument("--colour", choices=(choice,), help="x")
    with pytest.raises(ValueError, match="not a plain word"):
        script(parser, "bash")


def test_an_unknown_shell_is_a_usage_error() -> None:
    r = subprocess.run([sys.executable, "-m", "octopus", "completion", "fish"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "invalid choice: 'fish'" in r.stderr
    with pytest.raises(ValueError):
        script(build_parser(), "fish")


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed")
def test_zsh_registers_and_completes(tmp_path: Path) -> None:
    text = printed("zsh")
    r = subprocess.run(["zsh", "-f", "-c", f"{text}\nprint -r -- $_comps[octopus]"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert r.stdout.strip() == "_bash_complete -o filenames -F _octopus"
    # zsh's own matching filters by the prefix afterwards: the reply is a superset.
    got = complete("zsh", text, [["octopus", "se"], ["octopus", "serve", "--fsync", ""],
                                 ["octopus", "serve", "--port", ""],
                                 ["octopus", "get", "--j"]], tmp_path)
    assert {"serve", "set"} <= set(got[0])
    assert got[1] == ["always", "everysec", "no"]
    assert got[2] == []
    assert "--json" in got[3]

"""The command lines the docs show are true: every ``octopus ...`` line of a shell block in
README.md and docs/*.md is accepted by the parser, and the README's server session runs,
command by command, against a real server with the results its comments promise."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import octopus
from octopus.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SYNOPSIS = re.compile(r"\[[^\]]*\]")            # `[--cores 4]`: an optional part


def shell_lines(text: str) -> list[str]:
    """The lines of the fenced blocks that are not Python or language examples."""
    return [line for m in BLOCK.finditer(text) if m.group(1) not in ("python", "octopus")
            for line in m.group(2).replace("\\\n", " ").splitlines()]   # `\` continues


def commands(line: str) -> list[list[str]]:
    """The ``octopus`` commands of one shell line, as argument lists (without the program
    name); an output line (``octopus get: NotFound ...``) has none."""
    line = re.sub(r"^\$ ", "", line.strip())
    line = re.sub(r"source <\((.*)\)", r"\1", line)
    found = []
    for part in re.split(r"\s;\s|\s&&\s", line):
        if not re.match(r"([A-Z_]+=\S+\s+)*(\.venv/bin/)?octopus\s+[\w-]+(\s|$)", part.strip()):
            continue                    # not a command, or what one printed (`octopus get: `)
        words = shlex.split(part, comments=True)
        while words and re.match(r"[A-Z_]+=", words[0]):        # VAR=value octopus ...
            words.pop(0)
        if not words or words[0] not in ("octopus", ".venv/bin/octopus"):
            continue
        if ">" in words:
            words = words[:words.index(">")]
        if words[-1] == "&":
            words.pop()
        found.append(words[1:])
    return found


DOCUMENTED = [(page.relative_to(ROOT), line, args) for page in PAGES
              for line in shell_lines(page.read_text(encoding="utf-8"))
              for args in commands(line)]


def test_the_docs_show_many_command_lines() -> None:
    shown = {args[0] for _, _, args in DOCUMENTED if args}
    assert {"serve", "get", "names", "getall", "set", "del", "exists", "wait", "watch",
            "publish", "subscribe", "info", "data", "demo", "kaluga", "completion"} <= shown


def subparser(name: str) -> object:
    parser = build_parser()
    for action in parser._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            return action.choices[name]
    raise AssertionError("no subcommands")


@pytest.mark.parametrize(("page", "line", "args"), DOCUMENTED,
                         ids=[f"{p}:{' '.join(a)[:50]}" for p, _, a in DOCUMENTED])
def test_every_documented_command_line_parses(page: Path, line: str, args: list[str]) -> None:
    text = " ".join(args)
    if SYNOPSIS.search(text):
        # A synopsis (`octopus demo [--cores 4] [--cards N]`): its flags must exist.
        sub = subparser(args[0])
        known = {o for a in sub._actions for o in a.option_strings}   # type: ignore[attr-defined]
        flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))
        assert flags <= known, f"{page}: {line!r}: unknown flags {sorted(flags - known)}"
        return
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(args)
    except SystemExit as e:
        assert e.code == 0, f"{page}: {line!r} does not parse: {err.getvalue()}"


# --- the README's server session, run ---------------------------------------------------------

def readme_session() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = [m.group(2) for m in BLOCK.finditer(text)
                if m.group(1) == "sh" and "octopus serve --unix" in m.group(2)]
    return [args for line in block.splitlines() for args in commands(line)]


class Session:
    """The README's shell: `octopus` on PATH (as after `source .venv/bin/activate`) and
    OCTOPUS_URL set as the README exports it."""

    def __init__(self, tmp: Path, socket: str) -> None:
        self.tmp = tmp
        self.env = dict(os.environ)
        self.env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + self.env["PATH"]
        self.env["OCTOPUS_URL"] = f"unix://{socket}"

    def start(self, args: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(["octopus", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env, cwd=self.tmp)

    def run(self, args: list[str]) -> tuple[int, str]:
        r = subprocess.run(["octopus", *args], capture_output=True, text=True, timeout=60,
                           env=self.env, cwd=self.tmp)
        assert "Traceback" not in r.stderr, r.stderr
        return r.returncode, r.stdout

    def clients(self, n: int) -> None:
        """Wait until ``n`` other clients are connected (a stream is listening)."""
        deadline = time.monotonic() + 30
        with octopus.connect(self.env["OCTOPUS_URL"]) as client:
            while f"connected_clients:{n + 1}" not in client.info():
                assert time.monotonic() < deadline, "the stream never connected"
                time.sleep(0.05)
        time.sleep(0.3)         # connected; let it send its command


def interrupt(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    return proc.returncode, out


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().rstrip("\n")


def test_the_readme_session_runs(tmp_path: Path) -> None:
    steps = readme_session()
    assert [s[0] for s in steps] == ["serve", "set", "get", "names", "getall", "exists",
                                     "wait", "watch", "subscribe", "publish", "del", "info"]
    socket = steps[0][steps[0].index("--unix") + 1]
    sock = str(tmp_path / "octopus.sock")
    steps = [[sock if w == socket else w for w in s] for s in steps]
    sh = Session(tmp_path, sock)
    server = sh.start(steps[0])
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock):
            assert server.poll() is None and time.monotonic() < deadline, "no server"
            time.sleep(0.05)
        record = "hw.pci.device.0 { class: 'C', vendor: 32902 }"
        by_name = {s[0]: s[1:] for s in steps[1:]}
        assert sh.run(["set", *by_name["set"]]) == (0, record + "\n")
        assert sh.run(["get", *by_name["get"]]) == (0, record + "\n")       # %d of 0x8086
        assert sh.run(["names", *by_name["names"]]) == (0, "hw.pci.device.0\n")
        code, out = sh.run(["getall", *by_name["getall"]])
        assert code == 0 and json.loads(out)["name"] == "hw.pci.device.0"
        assert sh.run(["exists", *by_name["exists"]]) == (0, "yes\n")
        assert sh.run(["exists", "hw.nothing"]) == (1, "no\n")

        # wait: prints the record once it exists
        waiting = sh.start(["wait", *by_name["wait"]])
        sh.clients(1)
        assert sh.run(["set", "service.serial { iref: 42 }"])[0] == 0
        assert waiting.communicate(timeout=30) == ("service.serial { iref: 42 }\n", "")
        assert waiting.returncode == 0

        # watch [--set] [--del] [--existing]: streams events until Ctrl-C, which ends it
        # with status 0
        watch = by_name["watch"]
        assert SYNOPSIS.sub("", " ".join(watch)).split() == ["r'^hw\\.'"]
        flags = [w.strip("[]") for w in watch[1:]]
        watching = sh.start(["watch", watch[0], *flags])
        assert first_line(watching).endswith(record)              # --existing
        sh.run(["set", "hw.usb.0 { class: 'U' }"])
        assert first_line(watching).endswith("hw.usb.0 { class: 'U' }")
        assert interrupt(watching)[0] == 0

        subscribed = sh.start(["subscribe", *by_name["subscribe"]])
        sh.clients(1)
        assert sh.run(["publish", *by_name["publish"]]) == (0, "1\n")
        assert first_line(subscribed).endswith("m { n: 1, topic: 'alerts' }")
        assert interrupt(subscribed)[0] == 0

        assert sh.run(["del", *by_name["del"]]) == (0, record + "\n")
        code, out = sh.run(["info", *by_name["info"]])
        assert code == 0 and "records:2" in out                  # service.serial, hw.usb.0
        if shutil.which("redis-cli"):
            r = subprocess.run(["redis-cli", "-s", sock, "GET", "hw.usb.0"],
                               capture_output=True, text=True, timeout=30)
            assert r.stdout == "hw.usb.0 { class: 'U' }\n"
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert server.returncode == 0

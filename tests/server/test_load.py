"""``LOAD`` and ``octopus load`` (docs/server.md, "LOAD"; docs/cli.md): records sent as
text, each request one all-or-nothing batch; a bad line is named in the whole file;
the limits of a request."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import redis

import octopus
from octopus import LimitExceeded, ParseError, QueryError
from octopus.aio import AsyncEngine
from octopus.server import commands
from octopus.server.testing import serve_in_thread

from .conftest import ROOT, ServerProcess, python_env

RECORDS = [f"hw.pci.device.{i} {{ bus: {i % 256}, class: 'C', device_id: {i}, "
           f"label: 'dev {i}\nsecond line', vendor: 32902 }}" for i in range(3000)]


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run([sys.executable, "-m", "octopus", *args], capture_output=True,
                       timeout=120, env=python_env(), cwd=ROOT, input=stdin)
    assert b"Traceback" not in r.stderr, r.stderr
    return r


def test_octopus_load_a_file_then_get_what_it_loaded(server: ServerProcess,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "records.txt"
    path.write_text("\n".join(RECORDS) + "\n", encoding="utf-8")
    r = run("load", str(path), "--url", server.unix_url, "--batch", "500")
    assert r.returncode == 0 and r.stdout == b"loaded 3000 records\n", r.stderr
    with octopus.connect(server.unix_url) as c:
        assert c.get_names("_ { device_id > 2997 }") == ["hw.pci.device.2998",
                                                        "hw.pci.device.2999"]
        got = "".join(f"{rec}\n" for rec in c.get_all("%n", "hw.pci.device.7"))
        assert got == RECORDS[7] + "\n"
        # the same records, from standard input and as JSON
        r = run("load", "-", "--url", server.unix_url, "--json", stdin=path.read_bytes())
        assert r.returncode == 0 and r.stdout == b'{"loaded": 3000}\n'


def test_a_bad_line_is_named_in_the_whole_file(server: ServerProcess, tmp_path: Path) -> None:
    lines = [f"bad.{i} {{ v: {i} }}" for i in range(20_000)]
    lines[15_000] = "bad.15000 { v: 0x }"
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    r = run("load", str(path), "--url", server.unix_url, "--batch", "2000")
    assert r.returncode == 2
    assert b"ParseError" in r.stderr and b"at line 15001, column" in r.stderr
    with octopus.connect(server.unix_url) as c:
        loaded = len(c.get_names("r'^bad\\.'"))
        assert loaded == 14_000                         # the requests before it, whole
        assert f"({loaded} records were loaded before it)".encode() in r.stderr
        assert c.get_names("%n", f"bad.{loaded - 1}") and \
            not c.get_names("%n", f"bad.{loaded}")
        with pytest.raises(ParseError) as info:
            c.load(lines, batch=2000)
        assert info.value.line == 15_001 and info.value.loaded == loaded


def test_octopus_load_usage(server: ServerProcess, tmp_path: Path) -> None:
    r = run("load", str(tmp_path / "missing.txt"), "--url", server.unix_url)
    assert r.returncode == 2 and b"no such file" in r.stderr
    r = run("load", "-", "--batch", "0", "--url", server.unix_url)
    assert r.returncode == 2
    (tmp_path / "x.txt").write_text("a { x: 1 }\n")
    r = run("load", str(tmp_path / "x.txt"), "--url", "unix:///nonexistent/s.sock")
    assert r.returncode == 3


def test_load_over_redis_py_is_one_batch(server: ServerProcess) -> None:
    r = redis.Redis(unix_socket_path=server.socket)
    try:
        assert r.execute_command("LOAD", "one { a: 1 }\n\ntwo { b: 'x\ny' }",
                                 "three { c: 3 }") == 3
        with pytest.raises(redis.ResponseError, match=r"line 3.*two values"):
            r.execute_command("LOAD", "four { d: 4 }\nfive { e: 5 }", "six { f: 1, f: 2 }")
        with pytest.raises(redis.ResponseError, match="line 2: the text is not valid UTF-8"):
            r.execute_command("LOAD", b"seven { g: 7 }\neight { s: '\xff' }")
        with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
            r.execute_command("LOAD")
        assert r.execute_command("LOAD", "") == 0
        assert r.execute_command("EXISTS", "r'^(four|five|six|seven|eight)$'") == 0
        assert r.execute_command("GET", "two") == b"two { b: 'x\ny' }"
    finally:
        r.close()


def test_a_record_longer_than_the_limit_is_named(tmp_path: Path) -> None:
    engine = octopus.Engine(max_query_length=1000)
    with serve_in_thread(engine) as url, octopus.connect(url) as c:
        with pytest.raises(QueryError, match=r"line 3: .*longer than the limit") as info:
            c.load(["a { x: 1 }", "b { x: 2 }", "c { s: '" + "y" * 1000 + "' }"])
        assert info.value.line == 3 and info.value.loaded == 0
        with pytest.raises(QueryError, match="line 2: longer") as info:
            c.load(io.BytesIO(b"a { x: 1 }\n" + b"z" * (600 << 10)))   # type: ignore[arg-type]
        assert info.value.line == 2 and info.value.loaded == 1   # line 1 went first
        assert engine.get_names("_") == ["a"]
    engine.close()


def test_the_limits_of_one_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "MAX_LOAD_LINES", 10)
    monkeypatch.setattr(commands, "MAX_LOAD_BYTES", 200)
    with serve_in_thread() as url, octopus.connect(url) as c:
        assert c.load([f"r{i} {{}}" for i in range(10)]) == 10
        with pytest.raises(LimitExceeded, match="more than 10 lines"):
            c.load([f"s{i} {{}}" for i in range(11)])
        with pytest.raises(LimitExceeded, match="the limit is 200 bytes"):
            c.load(["t { s: '" + "x" * 200 + "' }"])
        assert c.get_names("r'^[st]'") == []


def test_the_async_twins_load(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "r.txt"
    path.write_text("a { x: 1 }\nb { s: 'two\nlines' }\nc { x: 01 }\n")

    async def main(url: str) -> None:
        async with await octopus.connect_async(url) as c:
            assert await c.load(["d { x: 4 }", "e { x: 5 }"], batch=1) == 2
            with pytest.raises(ParseError) as info:
                await c.load(path, batch=2)
            assert info.value.line == 4 and info.value.loaded == 2
            assert await c.get_names("_") == ["a", "b", "d", "e"]
        async with AsyncEngine() as engine:
            assert await engine.load(["f { x: 6 }"]) == 1
            with pytest.raises(ParseError) as info:
                await engine.load(["g { x: 7 }", "h {"], batch=1)
            assert info.value.line == 2 and info.value.loaded == 1

    with serve_in_thread() as url:
        asyncio.run(main(url))

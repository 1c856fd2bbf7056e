"""``octopus why`` and ``octopus serve --rules`` in real processes (docs/cli.md)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import octopus
from octopus import Mode, RowEvent

from ..server.conftest import ServerProcess
from ..server.test_cli import NOWHERE, run

RULES = "unbound(Dev) :- attr(Dev, class, _), \\+ attr(_, device, Dev).\n"


def test_why_lock_barrier_semaphore_and_wait(tmp_path: Path) -> None:
    rules = tmp_path / "rules.pl"
    rules.write_text(RULES)
    srv = ServerProcess(tmp_path, "--rules", str(rules))
    try:
        assert "loaded rules" in srv.log.read_text() and "unbound/1" in srv.log.read_text()
        url = srv.unix_url
        r = run("why", "lock", "db", "--url", url)
        assert (r.returncode, r.stdout.strip()) == (0, "lock db: free")
        with octopus.connect(url, name="holder") as a, octopus.connect(url) as b:
            lock = a.lock("db", "alice")
            assert lock.acquire()
            waiter = b.lock("db", "bob")
            t = threading.Thread(target=waiter.acquire)
            t.start()
            deadline = time.monotonic() + 10
            while len(lock.why().waiting) < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            r = run("why", "lock", "db", "--url", url)
            assert r.returncode == 1, r
            assert "held by db_0 [alice]" in r.stdout and "(holder)" in r.stdout
            assert "db_1 [bob]" in r.stdout and "waits for db_0" in r.stdout
            r = run("why", "lock", "db", "--json", "--url", url)
            doc = json.loads(r.stdout)
            assert doc["kind"] == "lock" and doc["blocked"] is True
            assert doc["holders"][0]["record"]["attributes"]["owner"] == "alice"
            assert doc["holders"][0]["session"]["name"].endswith("(holder)")
            assert doc["waiting"][0]["waits_for"] == "db_0"
            lock.release()
            t.join(10)
            waiter.release()

            barrier = a.barrier("meet", 2)
            t = threading.Thread(target=barrier.enter)
            t.start()
            while not b.exists("meet_0"):
                time.sleep(0.02)
            r = run("why", "barrier", "meet", "--parties", "2", "--url", url)
            assert r.returncode == 1
            assert "1 entered and waiting, 1 missing" in r.stdout
            assert json.loads(run("why", "barrier", "meet", "--json", "--url",
                                  url).stdout)["n"] is None   # no round yet: unknown
            b.barrier("meet", 2).enter()
            t.join(10)

            r = run("why", "semaphore", "pool", "--value", "2", "--url", url)
            assert r.returncode == 0 and "0 of 2 permits held" in r.stdout

            r = run("why", "wait", "svc.a { up: %b }", "true", "--url", url)
            assert r.returncode == 1 and "no record named svc.a" in r.stdout
            a.set("svc.a { up: false }")
            r = run("why", "wait", "svc.a { up: %b }", "true", "--url", url)
            assert r.returncode == 1 and "fails: up == true" in r.stdout
            a.set("svc.a { up: true }")
            r = run("why", "wait", "svc.a { up: %b }", "true", "--url", url)
            assert r.returncode == 0 and "returns at once" in r.stdout

            rows: list[RowEvent] = []
            b.watch_relation("unbound", rows.append, existing=True)
            a.set("dev.0 { class: net }")
            b.flush()
            assert [(e.mode, e.row) for e in rows] == [(Mode.ON_SET, ("dev.0",))]
    finally:
        srv.stop()


def test_why_exit_statuses_for_bad_use() -> None:
    for args in (["why", "lock", "not a name"], ["why", "gate", "x"],
                 ["why", "semaphore", "pool"], ["why", "wait", "_ { k: %d }", "x"],
                 ["why", "lock", "x", "extra"], ["why", "barrier", "b", "--parties", "0"]):
        r = run(*args, "--url", NOWHERE)
        assert r.returncode == 2, (args, r)
    r = run("why", "lock", "x", "--url", NOWHERE)
    assert r.returncode == 3 and "cannot connect" in r.stderr


def test_serve_refuses_rules_outside_the_family(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pl"
    bad.write_text("first(X) :- record(X), !.\n")
    r = run("serve", "--port", "0", "--rules", str(bad))
    assert r.returncode == 4 and "RuleError" in r.stderr, r
    r = run("serve", "--port", "0", "--rules", str(tmp_path / "missing.pl"))
    assert r.returncode == 4 and "cannot read rules file" in r.stderr, r

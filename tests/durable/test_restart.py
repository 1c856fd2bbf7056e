"""What a durable engine keeps across a restart, and what it does not (docs/durability.md)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import octopus
from octopus import Atom, PersistenceError, QueryError
from octopus.durable import tools
from octopus.server.testing import serve_in_thread


def contents(engine: octopus.Engine) -> dict[str, tuple[str, int]]:
    return {r.name: (str(r), r.revision) for r in engine.get_all("_")}


def test_records_revisions_counters_and_knowledge_survive(tmp_path: Path) -> None:
    kb_file = tmp_path / "facts.pl"
    kb_file.write_text("speed(fast).\n")
    with octopus.Engine(path=tmp_path / "d", fsync="always") as e:
        e.set("a { x: 1, y: ident, s: 'text é', b: true, f: 2.5, big: 123456789012345678901 }")
        e.set("a { x: 2, y: ident, x == 1 }")           # compare-and-set
        with pytest.raises(octopus.ConditionFailed):
            e.set("a { x: 3, x == 1 }")
        e.set("gone")
        e.delete("gone")
        names = [e.set("job.", sequential=True).name for _ in range(3)]
        e.delete("job.2")                               # the counter stays at 3
        e.set_many([(f"m{i}", {"v": i, "k": Atom("n")}) for i in range(20)], batch=7)
        e.add_facts("color(red). color(blue).")
        e.consult(kb_file)
        e.kb.add_rows("edge", [(1, 2), ("a", (3, "b")), [None, {"k": [1, 2.5]}]])
        before, revision = contents(e), e.revision
    kb_file.write_text("speed(slow).\n")                # the journal kept the text loaded
    assert names == ["job.0", "job.1", "job.2"]
    with octopus.Engine(path=tmp_path / "d") as e:
        assert contents(e) == before
        assert e.revision == revision
        assert e.get("a")["y"] == Atom("ident") and type(e.get("a")["y"]) is Atom
        assert e.set("job.", sequential=True).name == "job.3"
        assert e.set("z").revision == revision + 2
        assert [s["X"] for s in e.prolog("color(X)")] == ["red", "blue"]
        assert e.prolog("speed(X)") == [{"X": "fast"}]
        assert e.prolog("edge(A, B)") == [{"A": 1, "B": 2}, {"A": "a", "B": (3, "b")},
                                          {"A": None, "B": {"k": [1, 2.5]}}]


def test_a_consult_replaces_the_earlier_one_after_a_restart_too(tmp_path: Path) -> None:
    f = tmp_path / "f.pl"
    f.write_text("v(1).\n")
    with octopus.Engine(path=tmp_path / "d") as e:
        e.consult(f)
        f.write_text("v(2).\n")
        e.consult(f)
        e.compact()
        f.write_text("v(3).\n")
        e.consult(f)
    with octopus.Engine(path=tmp_path / "d") as e:
        assert e.prolog("v(X)") == [{"X": 3}]


def test_a_failed_knowledge_base_load_stays_failed(tmp_path: Path) -> None:
    with octopus.Engine(path=tmp_path / "d") as e:
        e.add_facts("ok(1).")
        with pytest.raises(octopus.KnowledgeBaseError):
            e.add_facts("bad(1).\n:- fail.\n")      # the directive fails: nothing added
        e.add_facts("ok(2).")
    with octopus.Engine(path=tmp_path / "d") as e:
        assert e.prolog("ok(X)") == [{"X": 1}, {"X": 2}]
        # not even declared: the sandbox refuses a goal that calls it before it runs
        with pytest.raises(octopus.KnowledgeBaseError, match="Unknown procedure: bad/1"):
            e.prolog("bad(X)")


def test_ephemeral_records_do_not_come_back(tmp_path: Path) -> None:
    with octopus.Engine(path=tmp_path / "d") as e:
        e.set("keep { v: 1 }")
        e.set("replaced { v: 1 }")
        s = e.session()
        s.set("mine { v: 2 }", ephemeral=True)
        s.set("replaced { v: 2 }", ephemeral=True)     # replaces a persistent record
        revision = e.revision
        # No close: the process "dies" with the session open. Reopen from a copy of the
        # files as they are now (the engine still holds the directory).
        copy = tmp_path / "copy"
        copy.mkdir()
        for f in (tmp_path / "d").iterdir():
            if f.name != "LOCK":
                (copy / f.name).write_bytes(f.read_bytes())
    with octopus.Engine(path=copy) as e:
        assert set(contents(e)) == {"keep"}
        # Each expired record is a delete with its own revision, after the old ones.
        assert e.revision == revision + 2


def test_the_revision_never_goes_back(tmp_path: Path) -> None:
    with octopus.Engine(path=tmp_path / "d") as e:
        e.set("a")
        e.set("b")
        e.delete("b")           # the highest revision belongs to no record
        e.compact()
        e.delete("a")
        assert e.revision == 4
    with octopus.Engine(path=tmp_path / "d") as e:
        assert e.revision == 4 and e.count() == 0
        assert e.set("c").revision == 5


def test_snapshots_are_written_as_the_journal_grows(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d, compact_min_bytes=2000, compact_ratio=0.5) as e:
        for i in range(400):
            e.set("%s { v: %d, pad: 'xxxxxxxxxxxxxxxxxxxxxxxx' }", f"r{i % 50}", i)
            if i % 100 == 99:
                e.flush()
        deadline = 200
        while e.persistence()["snapshots"] == 0 and deadline:
            threading.Event().wait(0.05)
            deadline -= 1
        stats = e.persistence()
        assert stats["snapshots"] >= 1 and stats["snapshot_errors"] == 0
        assert stats["max_snapshot_pause_ms"] > 0
        before = contents(e)
    files = sorted(p.name for p in d.iterdir())
    assert any(f.startswith("snapshot-") for f in files)
    assert len([f for f in files if f.startswith("snapshot-")]) == 1, files
    with octopus.Engine(path=d) as e:
        assert contents(e) == before


def test_a_snapshot_while_writers_go_on_loses_nothing(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d, fsync="no") as e:
        e.set_many((f"base{i}", {"v": i}) for i in range(3000))
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            i = 0
            try:
                while not stop.is_set():
                    e.set("%s { v: %d }", f"w{n}.{i % 200}", i)
                    if i % 7 == 0:
                        with contextlib.suppress(octopus.NotFound):
                            e.delete(f"base{(i * 13 + n) % 3000}")
                    if i % 11 == 0:
                        e.set(f"seq{n}.", sequential=True)
                    i += 1
            except BaseException as exc:      # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for _ in range(4):
            e.compact()
        stop.set()
        for t in threads:
            t.join()
        assert not errors
        before, revision = contents(e), e.revision
        next_seq = e.set("seq0.", sequential=True).name
        e.delete(next_seq)
    with octopus.Engine(path=d) as e:
        after = contents(e)
        assert after == before
        assert e.revision == revision + 2
        n = int(next_seq.removeprefix("seq0."))
        assert e.set("seq0.", sequential=True).name == f"seq0.{n + 1}"


def test_one_directory_one_engine(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d):
        with pytest.raises(PersistenceError, match="in use by another engine"):
            octopus.Engine(path=d)
        code = ("import octopus, sys\n"
                "try:\n"
                f"    octopus.Engine(path={str(d)!r})\n"
                "except octopus.PersistenceError as e:\n"
                "    print(e); sys.exit(7)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 7 and "in use" in out.stdout
    with octopus.Engine(path=d) as e:     # closing released it
        e.set("x")


def test_a_killed_engine_leaves_no_stale_lock(tmp_path: Path) -> None:
    d = tmp_path / "d"
    code = ("import octopus, os, signal\n"
            f"e = octopus.Engine(path={str(d)!r}, fsync='always')\n"
            "e.set('x { v: 1 }')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    out = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert out.returncode == -signal.SIGKILL
    with octopus.Engine(path=d) as e:
        assert e.get("x")["v"] == 1


def test_bad_arguments_are_query_errors_and_create_nothing(tmp_path: Path) -> None:
    for kwargs in ({"fsync": "sometimes"}, {"compact_ratio": 0}, {"compact_ratio": True},
                   {"compact_min_bytes": -1}):
        with pytest.raises(QueryError):
            octopus.Engine(path=tmp_path / "d", **kwargs)    # type: ignore[arg-type]
    with pytest.raises(QueryError):
        octopus.Engine(path=42)                              # type: ignore[arg-type]
    with octopus.Engine(path=tmp_path / "d") as e:       # nothing was left locked
        e.set("x")


def test_an_in_memory_engine_has_no_persistence() -> None:
    with octopus.Engine() as e:
        assert e.path is None and e.persistence() == {}
        assert "journal_bytes" not in e.stats()
        with pytest.raises(PersistenceError):
            e.compact()


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_stats_report_journal_fsync_and_snapshot(tmp_path: Path, fsync: str) -> None:
    with octopus.Engine(path=tmp_path / "d", fsync=fsync) as e:
        e.set("a { v: 1 }")
        e.set("b { v: 2 }")
        stats = e.stats()
        assert stats["fsync"] == fsync and stats["persistence_status"] == "ok"
        assert stats["journal_entries"] == 2
        assert stats["journal_bytes"] == (tmp_path / "d" / "journal-00000001.log").stat().st_size
        if fsync == "always":
            assert stats["fsyncs"] >= 2 and stats["last_fsync"] > 0
        elif fsync == "everysec":
            for _ in range(100):
                if e.stats()["fsyncs"]:
                    break
                threading.Event().wait(0.05)
            assert e.stats()["last_fsync"] > 0
        else:
            assert stats["fsyncs"] == 0
        e.compact()
        stats = e.stats()
        assert stats["snapshots"] == 1 and stats["last_snapshot"] > 0
        assert stats["snapshot_records"] == 2 and stats["journal_entries"] == 0
        assert stats["snapshot_bytes"] > 0


def test_concurrent_writers_share_fsyncs(tmp_path: Path) -> None:
    with octopus.Engine(path=tmp_path / "d", fsync="always") as e:
        def work(n: int) -> None:
            for i in range(40):
                e.set("%s { v: %d }", f"t{n}.{i}", i)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert e.stats()["fsyncs"] < 320       # group commit: fewer fsyncs than writes


def test_info_has_a_persistence_section(tmp_path: Path) -> None:
    with octopus.Engine(path=tmp_path / "d", fsync="always") as e, \
            serve_in_thread(e) as url, octopus.connect(url) as c:
        c.set("a { v: 1 }")
        info = c.info()
        assert "# Persistence" in info
        assert "durable:1" in info and "fsync:always" in info and "journal_entries:1" in info
    with serve_in_thread() as url, octopus.connect(url) as c:
        assert "durable:0" in c.info()


def test_dump_prints_what_a_restart_recovers(tmp_path: Path) -> None:
    import io

    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set("b10 { v: 1 }")
        e.set("b9 { s: 'x' }")
        e.compact()
        e.set("a { k: id }")
        e.session().set("eph", ephemeral=True)
        out = io.StringIO()
        assert tools.dump(d, out) == 3          # beside a live engine, no lock taken
    assert out.getvalue().splitlines() == ["a { k: id }", "b9 { s: 'x' }", "b10 { v: 1 }"]


def test_restart_in_another_process_sees_the_same(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d, fsync="always") as e:
        e.set_many((f"r{i}", {"v": i}) for i in range(100))
    code = ("import octopus\n"
            f"with octopus.Engine(path={str(d)!r}) as e:\n"
            "    print(e.count(), e.revision, e.get('r42')['v'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ})
    assert out.stdout.split() == ["100", "100", "42"]


def test_durable_or_replicated_not_both(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="not both"):
        octopus.Engine(path=tmp_path / "d", etcd="http://127.0.0.1:1")
    assert not (tmp_path / "d").exists()
    out = subprocess.run([sys.executable, "-m", "octopus", "serve", "--data", str(tmp_path / "d"),
                          "--etcd", "http://127.0.0.1:1"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "do not go together" in out.stderr

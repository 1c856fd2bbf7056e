"""Faults: torn tails and bit flips in journals and snapshots, a full disk (a small
tmpfs when this runs as root, a fault-injecting file layer always), I/O errors on write
and on fsync, a read-only directory, a crash in the middle of a snapshot rewrite.

Each ends with a clear PersistenceError and nothing half-applied, or with a start that
recovers everything acknowledged."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import octopus
from octopus import PersistenceError
from octopus.durable import files, tools
from octopus.durable.files import FileOps
from octopus.durable.format import ENTRY_HEAD, scan_journal

ROOT = Path(__file__).resolve().parents[2]


def journal(d: Path) -> Path:
    (path,) = sorted(d.glob("journal-*.log"))[-1:]
    return path


def snapshot(d: Path) -> Path:
    (path,) = d.glob("snapshot-*.snap")
    return path


def flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def five_records(d: Path) -> None:
    with octopus.Engine(path=d, fsync="always") as e:
        for i in range(5):
            e.set("%s { v: %d }", f"r{i}", i)


# --- torn tails and corruption ------------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, ENTRY_HEAD - 1, ENTRY_HEAD + 3])
def test_a_torn_last_entry_is_cut_with_a_warning(tmp_path: Path, cut: int,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "d"
    five_records(d)
    j = journal(d)
    offsets = [o for o, _ in scan_journal(j).entries]
    os.truncate(j, offsets[-1] + cut)             # the last set, half written
    assert tools.check(d, io.StringIO()) == 1
    with caplog.at_level(logging.WARNING, "octopus.durable"), \
            octopus.Engine(path=d) as e:
        assert e.get_names("_") == ["r0", "r1", "r2", "r3"]
        assert e.revision == 4
        assert e.stats()["torn_bytes_cut"] == cut
        e.set("after")
    assert "torn last entry" in caplog.text and "cutting it" in caplog.text
    with octopus.Engine(path=d) as e:
        assert e.get_names("_") == ["after", "r0", "r1", "r2", "r3"]


def test_zeros_after_the_last_entry_are_a_torn_tail(tmp_path: Path) -> None:
    d = tmp_path / "d"
    five_records(d)
    with journal(d).open("ab") as f:
        f.write(b"\0" * 4096)                     # blocks allocated, never written
    with octopus.Engine(path=d) as e:
        assert e.count() == 5


@pytest.mark.parametrize("where", ["payload", "length", "marker", "checksum"])
def test_corruption_before_the_tail_refuses_to_start(tmp_path: Path, where: str) -> None:
    d = tmp_path / "d"
    five_records(d)
    j = journal(d)
    second = scan_journal(j).entries[1][0]
    flip(j, second + {"payload": ENTRY_HEAD + 3, "length": 2, "marker": 0,
                      "checksum": 7}[where])
    with pytest.raises(PersistenceError) as info:
        octopus.Engine(path=d)
    message = str(info.value)
    assert str(j) in message and f"offset {second}" in message
    assert "octopus data repair" in message
    with pytest.raises(PersistenceError):
        tools.check(d, io.StringIO())
    # repair says what it drops, cuts there; the start then has what came before.
    out = io.StringIO()
    assert tools.repair(d, out) == 3 + 1 - 1       # r2, r3, r4 after the bad r1 entry
    assert "dropping" in out.getvalue()
    with octopus.Engine(path=d) as e:
        assert e.get_names("_") == ["r0"] and e.revision == 1
        assert e.set("x").revision == 2


def test_a_corrupt_journal_header_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "d"
    five_records(d)
    flip(journal(d), 3)
    with pytest.raises(PersistenceError, match="header"):
        octopus.Engine(path=d)


def test_bit_flips_in_a_snapshot_are_refused_naming_file_and_offset(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set_many((f"r{i}", {"v": i, "s": "x" * 50}) for i in range(2000))
        e.compact()
    snap = snapshot(d)
    pristine = snap.read_bytes()
    for offset in (10, len(pristine) // 3):
        flip(snap, offset, bit=3)
        with pytest.raises(PersistenceError) as info:
            octopus.Engine(path=d)
        assert str(snap) in str(info.value) and "offset" in str(info.value)
        snap.write_bytes(pristine)
    flip(snap, len(pristine) - 40)                # inside the footer
    with pytest.raises(PersistenceError, match="footer"):
        octopus.Engine(path=d)
    snap.write_bytes(pristine[:-5])               # its trailer torn
    with pytest.raises(PersistenceError, match="not a complete snapshot"):
        octopus.Engine(path=d)
    snap.write_bytes(pristine)
    with octopus.Engine(path=d) as e:
        assert e.count() == 2000


def test_a_missing_journal_generation_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set("a")
        e.compact()
        e.set("b")
    shutil.copy(journal(d), d / "journal-00000004.log")
    with pytest.raises(PersistenceError, match="missing"):
        octopus.Engine(path=d)


# --- a crash in the middle of a snapshot rewrite -------------------------------------------------


def test_a_kill_during_a_snapshot_loses_nothing(tmp_path: Path) -> None:
    d = tmp_path / "d"
    code = f"""
import octopus, sys, threading
e = octopus.Engine(path={str(d)!r}, fsync="always")
e.set_many((f"r{{i}}", {{"v": i, "s": "y" * 40}}) for i in range(60000))
e.set("last {{ v: 1 }}")
print("loaded", e.revision, flush=True)
t = threading.Thread(target=e.compact)
t.start()
for i in range(100000):
    e.set("%s {{ v: %d }}", "during", i)
    print("ack", i, flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("loaded")
    deadline = time.monotonic() + 60
    while not list(d.glob("*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert list(d.glob("*.tmp")), "the snapshot never started"
    os.kill(proc.pid, signal.SIGKILL)
    # The kill may cut the last line mid-print: only lines that ended count.
    complete = proc.stdout.read().split("\n")[:-1]
    acks = [int(x.split()[1]) for x in complete if x.startswith("ack ")]
    proc.wait()
    with octopus.Engine(path=d) as e:
        assert e.count() == 60002 if acks else e.count() in (60001, 60002)
        if acks:
            assert e.get("during")["v"] >= acks[-1]
        assert e.get("r59999")["v"] == 59999
    assert not list(d.glob("*.tmp"))             # the start removed the unfinished one
    assert len(list(d.glob("snapshot-*.snap"))) <= 1


class FailingOps(FileOps):
    """The real file operations, failing on demand: ``fail[name] = errno``."""

    def __init__(self) -> None:
        self.fail: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def _maybe(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        code = self.fail.get(name)
        if code is not None:
            raise OSError(code, os.strerror(code))

    def write(self, fd: int, data: bytes) -> None:
        self._maybe("write")
        super().write(fd, data)

    def fdatasync(self, fd: int) -> None:
        self._maybe("fdatasync")
        super().fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self._maybe("fsync")
        super().fsync(fd)

    def rename(self, src: Path, dst: Path) -> None:
        self._maybe("rename")
        super().rename(src, dst)

    def ftruncate(self, fd: int, size: int) -> None:
        self._maybe("ftruncate")
        super().ftruncate(fd, size)


@pytest.fixture
def faulty(monkeypatch: pytest.MonkeyPatch) -> FailingOps:
    ops = FailingOps()
    monkeypatch.setattr(files, "ops", ops)
    return ops


def test_a_snapshot_that_fails_half_way_leaves_the_old_generation(tmp_path: Path,
                                                                  faulty: FailingOps) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set("a { v: 1 }")
        e.compact()
        e.set("b { v: 2 }")
        faulty.fail["rename"] = errno.EIO         # dies before the new snapshot is in place
        with pytest.raises(PersistenceError, match="snapshot"):
            e.compact()
        del faulty.fail["rename"]
        e.set("c { v: 3 }")                        # into the new generation's journal
        assert e.stats()["snapshot_errors"] == 1
        before = contents(e)
    names = sorted(p.name for p in d.iterdir())
    assert names == ["LOCK", "journal-00000002.log", "journal-00000003.log",
                     "snapshot-00000002.snap"]
    with octopus.Engine(path=d) as e:
        assert contents(e) == before
        e.compact()
    assert sorted(p.name for p in d.iterdir()) == ["LOCK", "journal-00000004.log",
                                                   "snapshot-00000004.snap"]


def contents(e: octopus.Engine) -> dict[str, tuple[str, int]]:
    return {r.name: (str(r), r.revision) for r in e.get_all("_")}


# --- no space, I/O errors -------------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_a_write_that_cannot_reach_the_disk_changes_nothing(tmp_path: Path, faulty: FailingOps,
                                                            code: int) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d, fsync="always") as e:
        e.set("a { v: 1 }")
        s = e.session()
        s.set("eph { v: 1 }", ephemeral=True)
        size = journal(d).stat().st_size
        faulty.fail["write"] = code
        calls = [lambda: e.set("a { v: 2 }"), lambda: e.set("b"),
                 lambda: e.set("a { v: 3, v == 1 }"), lambda: e.set("q", sequential=True),
                 lambda: e.delete("a"), lambda: e.set_many([("m", {"v": 1})]),
                 lambda: e.add_facts("f(1).")]
        for call in calls:
            with pytest.raises(PersistenceError) as info:
                call()
            assert info.value.applied is False and os.strerror(code) in str(info.value)
        # Nothing applied, no revision used, the file as it was; reads go on.
        assert e.revision == 2 and e.get("a")["v"] == 1
        assert e.get_names("_") == ["a", "eph"] and e.prolog("current_predicate(f/1)") == []
        assert journal(d).stat().st_size == size
        assert e.stats()["journal_write_errors"] == len(calls)
        assert e.stats()["persistence_status"] == "ok"
        del faulty.fail["write"]
        # The disk is back: writes work again.
        assert e.set("a { v: 2 }").revision == 3
        assert e.set("q", sequential=True).name == "q0"
        faulty.fail["write"] = code
        s.close()           # a closing session's records go even when the journal refuses
        assert not e.exists("eph")
        assert e.stats()["persistence_status"].startswith("error")
        with pytest.raises(PersistenceError):
            e.set("z")
        del faulty.fail["write"]
        # The background thread writes a snapshot of memory, and writes resume.
        for _ in range(200):
            if e.stats()["persistence_status"] == "ok":
                break
            time.sleep(0.05)
        assert e.stats()["persistence_status"] == "ok"
        e.set("z")
        before, revision = contents(e), e.revision
    with octopus.Engine(path=d) as e:
        assert contents(e) == before and e.revision == revision


def test_a_failed_fsync_is_never_trusted_again(tmp_path: Path, faulty: FailingOps) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d, fsync="always") as e:
        e.set("a { v: 1 }")
        faulty.fail["fdatasync"] = errno.EIO
        with pytest.raises(PersistenceError) as info:
            e.set("a { v: 2 }")
        # Applied in memory, its fate on disk unknown (fsyncgate): said so.
        assert info.value.applied is True and e.get("a")["v"] == 2
        del faulty.fail["fdatasync"]
        # A later fsync would succeed, but proves nothing: writes stay refused until a
        # snapshot of the whole memory state is on disk; reads go on meanwhile.
        refused = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                e.set("b { v: 1 }")
                break
            except PersistenceError as err:
                assert err.applied is False
                refused += 1
                assert e.get("a")["v"] == 2
                time.sleep(0.02)
        else:
            raise AssertionError("writes never resumed")
        assert e.stats()["snapshots"] >= 1
        before = contents(e)
    with octopus.Engine(path=d) as e:
        assert contents(e) == before and e.get("a")["v"] == 2


def test_writes_resume_after_the_snapshot_is_counted(tmp_path: Path, faulty: FailingOps
                                                     ) -> None:
    # The repairing snapshot re-enabled writes before it counted itself: a writer that
    # resumed could read stats() without the snapshot that let it (a race seen under load).
    with octopus.Engine(path=tmp_path / "d", fsync="always") as e:
        p = e._persistence
        assert p is not None
        seen: list[int] = []
        repaired = p.journal.repaired

        def spy() -> None:
            seen.append(p.snapshots)
            repaired()

        p.journal.repaired = spy  # type: ignore[method-assign]
        faulty.fail["fdatasync"] = errno.EIO
        with pytest.raises(PersistenceError):
            e.set("a { v: 1 }")
        del faulty.fail["fdatasync"]
        deadline = time.monotonic() + 20
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == [1]


@contextlib.contextmanager
def small_tmpfs(tmp_path: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (the fault-injecting tests cover ENOSPC)")
    mnt = tmp_path / f"mnt-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_tmpfs(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path, "256k") as mnt:
        d = mnt / "d"
        acked: dict[str, int] = {}
        with octopus.Engine(path=d, fsync="always", compact_min_bytes=1 << 30) as e:
            filler = mnt / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as f:
                f.write(b"x" * (200 << 10))        # leave the journal a little room
            i = 0
            with pytest.raises(PersistenceError) as info:
                while True:
                    name = f"r{i}"
                    r = e.set("%s { v: %d, pad: %s }", name, i, "p" * 200)
                    acked[name] = r.revision
                    i += 1
            assert info.value.applied is False and "No space left" in str(info.value)
            revision = e.revision
            assert set(e.get_names("_")) == set(acked)       # the refused one is not there
            with pytest.raises(PersistenceError):
                e.set("%s { v: %d, pad: %s }", "more", 0, "p" * 200)
            assert e.revision == revision and e.get("r0")["v"] == 0
            filler.unlink()
            e.set("more { v: 1 }")                            # the disk is back
            acked["more"] = e.revision
        with octopus.Engine(path=d) as e:
            assert {r.name: r.revision for r in e.get_all("_")} == acked


# --- a read-only directory ---------------------------------------------------------------


@contextlib.contextmanager
def read_only(d: Path) -> Iterator[Path]:
    """``d`` as a read-only directory: a read-only remount of a tmpfs holding it (root
    ignores permission bits), or permission bits (anyone else)."""
    if os.geteuid() == 0:
        mnt = d.parent
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        try:
            yield d
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in [d, *d.iterdir()]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield d
        finally:
            for p, mode in modes.items():
                p.chmod(mode)


def test_a_read_only_directory_serves_reads_and_refuses_writes(tmp_path: Path) -> None:
    ctx: contextlib.AbstractContextManager[Path]
    ctx = small_tmpfs(tmp_path, "16m") if os.geteuid() == 0 else contextlib.nullcontext(tmp_path)
    with ctx as base:
        d = base / "d"
        five_records(d)
        with read_only(d), octopus.Engine(path=d) as e:
            assert e.count() == 5 and e.get("r3")["v"] == 3
            with pytest.raises(PersistenceError, match="cannot be written") as info:
                e.set("x")
            assert info.value.applied is False and e.revision == 5
            assert e.stats()["persistence_status"].startswith("error")
        # Writable again: a fresh engine writes; and one opened read-only recovers.
        with read_only(d):
            e = octopus.Engine(path=d)
        try:
            for _ in range(200):
                if e.stats()["persistence_status"] == "ok":
                    break
                time.sleep(0.05)
            e.set("x { v: 9 }")
        finally:
            e.close()
        with octopus.Engine(path=d) as e:
            assert e.count() == 6 and e.get("x")["v"] == 9


def test_a_data_directory_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(PersistenceError, match="cannot create"):
        octopus.Engine(path=tmp_path / "file" / "d")


def test_snapshot_pause_is_reported_and_writers_go_on(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d, fsync="no") as e:
        e.set_many((f"r{i}", {"v": i}) for i in range(20000))
        done = threading.Event()
        writes = 0

        def write() -> None:
            nonlocal writes
            while not done.is_set():
                e.set("%s { v: %d }", "w", writes)
                writes += 1

        t = threading.Thread(target=write)
        t.start()
        e.compact()
        during = writes
        done.set()
        t.join()
        stats = e.stats()
        assert during > 0                       # writers were not stopped for the copy
        assert 0 < stats["last_snapshot_pause_ms"] <= stats["max_snapshot_pause_ms"]
        assert stats["last_snapshot_seconds"] * 1e3 > stats["last_snapshot_pause_ms"]


@pytest.mark.parametrize("size", [0, 5])
def test_a_journal_whose_header_never_reached_the_disk_is_dropped(tmp_path: Path,
                                                                   size: int) -> None:
    # A rewrite creates journal G+1 (header, fsync) before anything goes into it; a
    # crash before its header is on disk leaves an empty or short file, and no snapshot.
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set("a { v: 1 }")
        e.compact()
        e.set("b { v: 2 }")
        before = contents(e)
    (d / "journal-00000003.log").write_bytes(b"OCTJR"[:size])
    with octopus.Engine(path=d) as e:
        assert contents(e) == before
        e.set("c")
    assert not (d / "journal-00000003.log").exists() or \
        (d / "journal-00000003.log").stat().st_size >= 22
    with octopus.Engine(path=d) as e:
        assert e.count() == 3


def test_compact_after_close_is_refused(tmp_path: Path) -> None:
    e = octopus.Engine(path=tmp_path / "d")
    e.close()
    with pytest.raises(octopus.OctopusError):
        e.compact()

"""`octopus serve --data` and `octopus data check|dump|repair`, as a user runs them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import octopus
from octopus.durable.format import ENTRY_HEAD, scan_journal

ROOT = Path(__file__).resolve().parents[2]


def octopus_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "octopus", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def serve(data: Path, sock: Path, *flags: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "octopus", "serve", "--unix", str(sock),
                             "--data", str(data), "--log-level", "warning", *flags], cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with octopus.connect(f"unix://{sock}") as c:
                c.revision  # noqa: B018
            return proc
        except (OSError, octopus.OctopusError):
            assert proc.poll() is None, "the server died"
            time.sleep(0.05)
    raise AssertionError("the server never answered")


def test_a_served_directory_survives_a_kill_and_a_restart(tmp_path: Path) -> None:
    data, sock = tmp_path / "data", tmp_path / "s.sock"
    proc = serve(data, sock, "--fsync", "always")
    try:
        with octopus.connect(f"unix://{sock}") as c:
            c.set("svc.db { host: 'db1', port: 5432 }")
            name = c.set("job.", sequential=True).name
            c.set("lease { owner: me }", ephemeral=True)
            assert "fsync:always" in c.info()
            # A second server on the same directory is refused.
            other = octopus_cmd("serve", "--unix", str(tmp_path / "t.sock"), "--data",
                                str(data))
            assert other.returncode == 4 and "in use by another engine" in other.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = serve(data, sock)
    try:
        with octopus.connect(f"unix://{sock}") as c:
            assert c.get("svc.db")["port"] == 5432
            assert not c.exists("lease")                 # its connection is long gone
            assert c.set("job.", sequential=True).name != name
    finally:
        proc.terminate()
        proc.wait()
    dump = octopus_cmd("data", "dump", str(data))
    assert dump.returncode == 0
    assert dump.stdout.splitlines() == ["job.0 {}", "job.1 {}",
                                     "svc.db { host: 'db1', port: 5432 }"]


def test_check_dump_repair(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with octopus.Engine(path=data) as e:
        for i in range(4):
            e.set("%s { v: %d }", f"r{i}", i)
    ok = octopus_cmd("data", "check", str(data))
    assert ok.returncode == 0 and "4 entries" in ok.stdout and ok.stdout.rstrip().endswith("ok")
    (journal,) = data.glob("journal-*.log")
    second = scan_journal(journal).entries[1][0]
    raw = bytearray(journal.read_bytes())
    raw[second + ENTRY_HEAD] ^= 0x10
    journal.write_bytes(bytes(raw))
    bad = octopus_cmd("data", "check", str(data))
    assert bad.returncode == 4 and f"offset {second}" in bad.stderr and "repair" in bad.stderr
    assert octopus_cmd("data", "dump", str(data)).returncode == 4
    fixed = octopus_cmd("data", "repair", str(data))
    assert fixed.returncode == 0 and "dropping" in fixed.stdout
    assert "the bad entry and 2 readable entries" in fixed.stdout
    assert octopus_cmd("data", "dump", "--json", str(data)).stdout.splitlines() == [
        '{"name": "r0", "revision": 1, "attributes": {"v": 0}}']
    torn = journal.read_bytes()
    journal.write_bytes(torn + torn[JOURNAL_START:JOURNAL_START + 7])
    warn = octopus_cmd("data", "check", str(data))
    assert warn.returncode == 1 and "torn last entry" in warn.stdout
    assert octopus_cmd("data", "check", str(tmp_path / "nothing")).returncode == 4


JOURNAL_START = 22


def test_serve_refuses_a_corrupt_directory_with_a_one_line_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with octopus.Engine(path=data) as e:
        e.set("a")
        e.compact()
    (snap,) = data.glob("snapshot-*.snap")
    raw = bytearray(snap.read_bytes())
    raw[5] ^= 1
    snap.write_bytes(bytes(raw))
    out = octopus_cmd("serve", "--unix", str(tmp_path / "s.sock"), "--data", str(data))
    assert out.returncode == 4
    assert "PersistenceError" in out.stderr and str(snap) in out.stderr
    assert "Traceback" not in out.stderr

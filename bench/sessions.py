"""What resumable sessions cost and how fast they come back (docs/server.md, *Sessions
that outlive a blip*), against a real ``octopus serve`` process:

1. Resume time: a TCP proxy drops the client's connection; the time until the listener
   hears CONNECTED, and until the first event set while it was away has arrived.
2. Overhead while connected: GET round trips and event delivery (20,000 events) of a
   client with a resumable session (the server numbers and keeps every event frame)
   against one without (``session_timeout=None``), interleaved rounds.
3. The idle health check: PINGs per minute per client at the default session timeout.

Run: ``.venv/bin/python bench/sessions.py`` (about a minute); updates bench/RESULTS.md.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import latency, record_results, table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "server"))

from proxy import Proxy  # noqa: E402

import octopus  # noqa: E402
from octopus import ConnectionState, Mode  # noqa: E402


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    log = tmp / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "octopus", "serve", "--host", "127.0.0.1",
                             "--port", "0"], stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"), cwd=ROOT)
    deadline = time.monotonic() + 60
    while True:
        m = re.search(r"tcp://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log.read_text())
        time.sleep(0.05)


def resume_times(port: int, rounds: int = 20) -> tuple[list[float], list[float]]:
    connected: list[float] = []
    first_event: list[float] = []
    with Proxy(("127.0.0.1", port)) as proxy, \
            octopus.connect(proxy.url, session_timeout=10) as c, \
            octopus.connect(f"tcp://127.0.0.1:{port}") as writer:
        back = threading.Event()
        got = threading.Event()
        stamps: dict[str, float] = {}

        def on_state(state: ConnectionState) -> None:
            if state is ConnectionState.CONNECTED:
                stamps["connected"] = time.perf_counter()
                back.set()

        def on_event(event: octopus.Event) -> None:
            stamps["event"] = time.perf_counter()
            got.set()

        c.add_listener(on_state)
        c.watch("resume.n", on_event, on=Mode.ON_SET)
        for k in range(rounds):
            back.clear()
            got.clear()
            t0 = time.perf_counter()
            proxy.drop()
            writer.set("resume.n { k: %d }", k)
            assert back.wait(30) and got.wait(30)
            connected.append(stamps["connected"] - t0)
            first_event.append(stamps["event"] - t0)
            time.sleep(0.05)
    return connected, first_event


def overhead(port: int, rounds: int = 3, events: int = 20_000) -> list[list[str]]:
    url = f"tcp://127.0.0.1:{port}"
    results: dict[str, dict[str, list[float]]] = {"resumable": {"get": [], "events": []},
                                                  "not resumable": {"get": [], "events": []}}
    with octopus.connect(url) as writer:
        writer.set("ovh.a { v: 1 }")
        for _ in range(rounds):
            for label, timeout in (("resumable", 5.0), ("not resumable", None)):
                with octopus.connect(url, session_timeout=timeout) as c:
                    med, _ = latency(lambda c=c: c.get("ovh.a"), n=2000, warm=100)
                    results[label]["get"].append(med)
                    count = [0]
                    done = threading.Event()

                    def on(e: octopus.Event, count: list[int] = count,
                           done: threading.Event = done) -> None:
                        count[0] += 1
                        if count[0] == events:
                            done.set()

                    c.watch("ovh.e", on, on=Mode.ON_SET)
                    t0 = time.perf_counter()
                    for k in range(events):
                        writer.set("ovh.e { k: %d }", k)
                    assert done.wait(120)
                    results[label]["events"].append(events / (time.perf_counter() - t0))
    rows = []
    for label, r in results.items():
        rows.append([label, f"{min(r['get']) * 1e6:.0f}", f"{max(r['events']):,.0f}"])
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp))
        try:
            connected, first = resume_times(port)
            connected.sort()
            first.sort()
            text = table("Resume after a dropped connection (20 drops through a proxy)",
                         ["measure", "median ms", "max ms"],
                         [["drop → CONNECTED", f"{connected[len(connected) // 2] * 1e3:.1f}",
                           f"{connected[-1] * 1e3:.1f}"],
                          ["drop → first missed event handled",
                           f"{first[len(first) // 2] * 1e3:.1f}", f"{first[-1] * 1e3:.1f}"]])
            text += "\n" + table(
                "Cost of a resumable session while connected (best of 3 interleaved rounds)",
                ["client", "GET median µs", "events/s delivered"], overhead(port))
            tick = 5.0 / 3
            text += "\n" + table("Idle health check (default session timeout 5 s)",
                                 ["PINGs per idle client per minute", "bytes per minute"],
                                 [[f"{60 / tick:.0f}", f"{60 / tick * (14 + 7):.0f}"]])
            record_results("sessions", text)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


if __name__ == "__main__":
    main()

"""A lock held across processes through `octopus serve`: worker processes increment a
shared counter record with a read-modify-write under the lock, so no increment is lost;
one worker is killed while it holds the lock, and the server releases it (the lock
record is ephemeral: it ends with the dead worker's connection).

Run: python examples/locks_across_processes.py [--url URL]
Without --url it starts its own `octopus serve` on a Unix socket in a temporary
directory, and stops it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import octopus

WORKERS = 4
INCREMENTS = 25


def worker(url: str, crash: bool) -> None:
    with octopus.connect(url) as client:
        lock = client.lock("counter-lock")
        for _ in range(INCREMENTS):
            with lock:
                value = client.get("counter")["value"]
                time.sleep(0.001)                       # widen the race a lock prevents
                client.set("counter { value: %d }", value + 1)
        if crash:
            lock.acquire()
            os.kill(os.getpid(), signal.SIGKILL)        # dies holding the lock


@contextlib.contextmanager
def server() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="octopus-example-") as tmp:
        url = f"unix://{tmp}/octopus.sock"
        proc = subprocess.Popen([sys.executable, "-m", "octopus", "serve", "--unix",
                                 f"{tmp}/octopus.sock", "--log-level", "warning"])
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    octopus.connect(url).close()
                    break
                except octopus.EngineClosed:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


def run(url: str) -> int:
    with octopus.connect(url) as client:
        client.set("counter { value: 0 }")
        workers = [subprocess.Popen([sys.executable, __file__, "--worker", url]
                                    + (["--crash"] if i == 0 else []))
                   for i in range(WORKERS)]
        codes = [w.wait(300) for w in workers]
        value = client.get("counter")["value"]
        # The crashed worker's lock entry went with its connection: the lock is free.
        lock = client.lock("counter-lock")
        free = lock.acquire(timeout=10)
        if free:
            lock.release()
    print(f"workers exited with {codes}; counter = {value} "
          f"(expected {WORKERS * INCREMENTS}); lock free after the crash: {free}")
    return 0 if value == WORKERS * INCREMENTS and free else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="an octopus server (default: start one)")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--crash", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.crash)
        return 0
    if args.url:
        return run(args.url)
    with server() as url:
        return run(url)


if __name__ == "__main__":
    sys.exit(main())

"""Running test threads and waiting for conditions, with bounds that only a failing test
reaches (no timing is asserted anywhere)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

# A bound for waits that should end almost at once; only reached when a test fails.
PATIENCE = 20.0


def eventually(predicate: Callable[[], object], what: str = "condition",
               timeout: float = PATIENCE) -> None:
    """Poll until ``predicate()`` is true; fail the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


class Threads:
    """Start threads, join them all, and re-raise the first exception any of them hit."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.results: dict[int, Any] = {}

    def start(self, target: Callable[..., Any], *args: Any) -> threading.Thread:
        index = len(self.threads)

        def run() -> None:
            try:
                self.results[index] = target(*args)
            except BaseException as e:  # reported by join()
                self.errors.append(e)

        t = threading.Thread(target=run, daemon=True, name=f"test-{index}")
        self.threads.append(t)
        t.start()
        return t

    def join(self, timeout: float = PATIENCE) -> None:
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(end - time.monotonic(), 0.0))
        stuck = [t.name for t in self.threads if t.is_alive()]
        assert not stuck, f"threads still running: {stuck}"
        if self.errors:
            raise self.errors[0]

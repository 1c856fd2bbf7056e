"""Keep it true: many threads doing every kind of operation for a while lose no event,
duplicate none, break no lock, deadlock nowhere and leave the memory flat.

The run itself is tests/soak/soak.py, in a subprocess: a deadlock dumps every thread's
stack (faulthandler) and ends that process, not pytest, and its RSS is its own. The
short run is part of ``make test``; the long one (``pytest -m slow``, minutes; set
OCTOPUS_SOAK_SECONDS to change) is where a slow leak shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import median
from typing import Any

import pytest

import octopus
from octopus._prolog import runtime

SOAK = Path(__file__).with_name("soak.py")
MiB = 1 << 20


def soak(seconds: float, stall: float) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(SOAK), "--seconds", str(seconds),
                           "--stall", str(stall)],
                          capture_output=True, text=True, timeout=seconds + stall * 4)
    assert done.returncode == 0, done.stderr[-5000:]
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert not report["stalls"], f"stalled: {report['stalls']}\n{done.stderr[-20000:]}"
    return report


def check(report: dict[str, Any], warmup: float, growth: int) -> None:
    assert not report["errors"], report["errors"][0]
    assert not report["violations"], report["violations"]
    kinds = {"writer0", "writer1", "reader", "watcher", "locker0", "locker1", "session0",
             "session1", "publisher", "kb"}
    assert kinds <= {kind for kind, n in report["ops"].items() if n > 0}, report["ops"]
    for what, counts in report["events"].items():
        assert counts["expected"] > 0, what
        assert counts["lost"] == counts["extra"] == counts["duplicated"] == 0, (what, counts)
    assert report["removed"] == {"missing": 0, "unexpected": 0}
    assert report["open_iterators"] == 0
    # after the warm-up (caches filling, arenas growing) the resident size stays put
    samples = [b for t, b in report["rss"] if t >= warmup]
    assert len(samples) >= 8, report["rss"]
    third = len(samples) // 3
    start, end = median(samples[:third]), max(samples[-third:])
    assert end - start < growth, (
        f"RSS grew {(end - start) / MiB:.1f} MiB after the warm-up: "
        f"{[(t, round(b / MiB, 1)) for t, b in report['rss']]}")


def test_short_soak() -> None:
    check(soak(15, stall=45), warmup=5, growth=6 * MiB)


@pytest.mark.slow
def test_long_soak() -> None:
    seconds = float(os.environ.get("OCTOPUS_SOAK_SECONDS", "300"))
    check(soak(seconds, stall=90), warmup=max(seconds / 5, 10), growth=8 * MiB)


def test_keys_that_come_and_go_grow_nothing(engine: octopus.Engine) -> None:
    """The leak the soak found in the store with per-key tables: a key's table emptied
    and abolished was created again under a new name, and SWI-Prolog never frees a
    predicate. The store now has no per-key predicates; a key costs an ordered index
    only once a query constrains it, and at most MAX_INDEXED_KEYS are kept."""
    store = engine._core.store

    def predicates() -> int:    # predicates of the engine's store module
        return int(runtime().janus.query_once(
            "atom_string(M, S), aggregate_all(count, current_predicate(M:_/_), N)",
            {"S": store.module})["N"])

    before = predicates()
    for i in range(300):
        engine.set(f"solo {{ k{i}: 1 }}")
        assert engine.get_names(f"_ {{ k{i}: 1 }}") == ["solo"]
        engine.delete("solo")
        lock = engine.lock("churn")
        lock.acquire()
        lock.release()
    assert predicates() == before
    assert len(store.indexed_keys()) == store.MAX_INDEXED_KEYS

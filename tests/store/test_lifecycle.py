"""How engines end and what they give back: process exit with threads inside engine
calls, engines dropped without close, index tables of keys no record has any more,
and the timeouts a wait accepts."""

from __future__ import annotations

import gc
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import octopus
from octopus._prolog import runtime

ROOT = Path(__file__).resolve().parents[2]

BUSY_EXIT = textwrap.dedent("""
    import sys, threading, time
    import octopus
    engine = octopus.Engine()
    engine.set("x { a: 1 }")
    engine.add_facts("p(1). p(2).")
    def worker(i):
        n = 0
        while True:
            engine.set("w%d { n: %d }" % (i, n))
            engine.get("_ { a: 1 }")
            engine.prolog("p(X)")
            n += 1
    for i in range(4):
        threading.Thread(target=worker, args=(i,), daemon=True).start()
    time.sleep(0.3)
    how = sys.argv[1]
    if how == "exit":
        sys.exit(0)
    if how == "raise":
        raise RuntimeError("the program fails")
""")


@pytest.mark.parametrize(("how", "code"), [("return", 0), ("exit", 0), ("raise", 1)])
def test_exit_is_clean_with_threads_inside_engine_calls(how: str, code: int) -> None:
    # Daemon threads inside Prolog calls while the interpreter exits once ended every run
    # with "free(): invalid pointer" (a thread-local detaching a Prolog engine from the
    # main thread during finalisation).
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", BUSY_EXIT, how], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == code, done.stderr[-2000:]
        for sign in ("free()", "Aborted", "Segmentation", "Fatal Python error"):
            assert sign not in done.stderr


def _modules_with_records() -> int:
    """Store modules of this process that still hold record facts."""
    reply = runtime().janus.query_once(
        "aggregate_all(count, (current_module(_M), atom_concat(octopus_db_, _, _M), "
        "current_predicate(_M:rec/3), _M:rec(_, _, _)), N)")
    return int(reply["N"])


def test_engines_dropped_without_close_give_their_store_back() -> None:
    gc.collect()
    octopus.Engine().close()        # a safe point: earlier drops are given back
    before = _modules_with_records()
    for i in range(5):
        engine = octopus.Engine()
        engine.set("x { i: %d }", i)
        engine.watch("x", lambda event: None)
        del engine
    gc.collect()
    assert _modules_with_records() == before + 5      # still held until a safe point
    with octopus.Engine() as fresh:                    # creating an engine is one
        assert fresh.get_names("_") == []
    assert _modules_with_records() == before


def test_indexed_keys_are_those_queries_use_and_bounded(engine: octopus.Engine) -> None:
    for i in range(2000):
        engine.set(f"r {{ key{i}: {i} }}")             # each replaces the last
    assert engine.stats()["indexed_keys"] == 0         # no query used a key yet
    assert engine.get("_ { key1999: 1999 }").name == "r"
    assert engine.stats()["indexed_keys"] == 1
    limit = engine._core.store.MAX_INDEXED_KEYS
    for i in range(limit + 50):                          # keys no record has
        assert engine.get_names(f"_ {{ key{i}: {i} }}") == []
    assert engine.stats()["indexed_keys"] == limit
    engine.delete("r")
    stats = engine.stats()
    assert stats["records"] == 0
    engine.set("r { key7: 7 }")                        # a key comes back fine
    assert engine.get("_ { key7: 7 }").name == "r"
    assert engine.get_names("_ { key7 > 6 }") == ["r"]


@pytest.mark.parametrize("timeout", ["5", True, math.nan, [1], object()])
def test_bad_timeouts_are_query_errors(engine: octopus.Engine, timeout: object) -> None:
    with pytest.raises(octopus.QueryError):
        engine.wait_for("never", timeout=timeout)  # type: ignore[arg-type]
    assert not len(engine._core.registry)


def test_timeouts_too_long_to_wait_for_mean_for_ever(engine: octopus.Engine) -> None:
    engine.set("there")
    for timeout in (math.inf, 1e300, 10**400):
        assert engine.wait_for("there", timeout=timeout).name == "there"
    with pytest.raises(octopus.WaitTimeout):
        engine.wait_for("never", timeout=-1)            # negative: do not wait

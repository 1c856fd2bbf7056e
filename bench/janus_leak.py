"""Does the installed janus-swi still leak the elements of the tuples it makes?

janus-swi 1.5.3 converts a Prolog ``-(A, B)`` term to a Python tuple with one reference
too many on each element (``Py_INCREF`` before ``PyTuple_SetItem`` in ``janus.c``), so
whatever the tuple holds is never freed. Octopus never lets a pair cross the boundary
(octopus/adapter.py). This script is the minimal reproduction reported upstream; run it
after upgrading janus-swi to see whether the workaround is still needed:

    .venv/bin/python bench/janus_leak.py
"""

from __future__ import annotations

import gc
import sys
import tracemalloc

from octopus._prolog import runtime


def kept_per_call(janus: object, goal: str, calls: int = 20_000) -> float:
    query = janus.query_once  # type: ignore[attr-defined]
    for _ in range(1000):
        query(goal)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(calls):
        query(goal)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / calls


def main() -> None:
    janus = runtime().janus
    pair = kept_per_call(janus, 'string_concat("a", "b", S), X = S-S')
    listed = kept_per_call(janus, 'string_concat("a", "b", S), X = [S, S]')
    element = janus.query_once('string_concat("a", "b", S), X = S-S')["X"][0]
    # One reference from the tuple, one from getrefcount's argument: 2 without the bug.
    refs = sys.getrefcount(element) - 1
    print("| reply            | bytes kept per call |")
    print("|------------------|---------------------|")
    print(f"| pair  S-S        | {pair:19.1f} |")
    print(f"| list  [S, S]     | {listed:19.1f} |")
    print(f"references held on a tuple element: {refs} (1 expected)")
    print("janus-swi leaks tuple elements" if refs > 1 else "janus-swi does not leak tuples")


if __name__ == "__main__":
    main()

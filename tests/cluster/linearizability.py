"""A linearizability checker for histories of registers: get, set and compare-and-set
on a few keys (Wing & Gong's search with Lowe's memoisation, the way Knossos checks).

A history is a list of :class:`Op`: what was called, when it was called and when it
returned (one clock for every client), and what it returned. The history is
linearizable if some total order of the operations (1) puts every operation between its
call and its return and (2) gives every operation its observed result when the
operations are applied one by one to a register that starts empty.

- Operations on different keys never constrain each other (linearizability is
  compositional), so each key is checked alone: far smaller searches.
- The search extends a linearized prefix one operation at a time. An operation may come
  next only if no other pending operation returned before it was called. A state already
  explored (the set of linearized operations and the register's value) is never explored
  again, which is what makes the search practical.
- An operation whose outcome is unknown (its call raised "outcome unknown") has no
  return: it may be linearized at any point after its call, or never.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

__all__ = ["Op", "check", "check_key"]

#: What a get returns for a missing record, and a CAS's results.
MISSING = None
OK = "ok"
FAIL = "fail"


@dataclass(frozen=True)
class Op:
    """One operation: ``kind`` is ``get``, ``set`` or ``cas``; ``value`` what set writes
    or cas writes; ``expected`` what cas compares with; ``result`` the value a get read,
    ``ok``/``fail`` for a cas, ``ok`` for a set, None for an unknown outcome (then
    ``returned`` is inf)."""

    client: int
    kind: str
    key: str
    called: float
    returned: float
    result: Any = None
    value: Any = None
    expected: Any = None


def _step(state: Any, op: Op) -> tuple[bool, Any]:
    """Apply ``op`` to the register's ``state``: (consistent with its result, new state)."""
    if op.kind == "get":
        return op.result == state, state
    if op.kind == "set":
        return True, op.value
    if op.kind == "cas":
        holds = state is not MISSING and state == op.expected
        if math.isinf(op.returned):                   # unknown: it did what it could
            return True, op.value if holds else state
        if op.result == OK:
            return holds, op.value
        return not holds, state
    raise ValueError(f"unknown operation {op.kind!r}")


def check_key(ops: list[Op], initial: Any = MISSING, *, max_states: int = 5_000_000
              ) -> tuple[bool, int]:
    """Whether the operations of one key are linearizable; (answer, states explored).
    Raises RuntimeError if the search would pass ``max_states``."""
    ops = sorted(ops, key=lambda o: o.called)
    n = len(ops)
    required = 0
    for i, op in enumerate(ops):
        if not math.isinf(op.returned):
            required |= 1 << i
    seen: set[tuple[int, Any]] = set()
    stack: list[tuple[int, Any]] = [(0, initial)]
    while stack:
        done, state = stack.pop()
        if done & required == required:
            return True, len(seen)
        if (done, state) in seen:
            continue
        seen.add((done, state))
        if len(seen) > max_states:
            raise RuntimeError(f"the search passed {max_states} states")
        first_return = min((ops[i].returned for i in range(n) if not done >> i & 1),
                           default=math.inf)
        for i in range(n):
            if done >> i & 1:
                continue
            op = ops[i]
            if op.called > first_return:
                break                     # sorted by call: no later op may come next
            consistent, after = _step(state, op)
            if consistent:
                stack.append((done | 1 << i, after))
    return False, len(seen)


def check(history: list[Op]) -> tuple[bool, dict[str, tuple[bool, int]]]:
    """Whether the whole history is linearizable, and the answer per key."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    answers = {key: check_key(ops) for key, ops in sorted(by_key.items())}
    return all(ok for ok, _ in answers.values()), answers

"""Explanations: why is this blocked? (docs/rules.md, Explanations).

Typed answers, built from one atomic read of the store, to "who is in the way":

- :class:`WaitExplanation` (``engine.explain_wait(q)``): the records matching ``q`` now
  (a ``wait_for`` returns the first at once), the record of the query's exact name and
  which of the query's constraints it fails, and the sessions waiting for ``q``;
- :class:`LockExplanation` (``lock.why()``, also the reader/writer sides and an
  election): the holders, the queue in order and what each waiter waits for;
- :class:`SemaphoreExplanation` (``semaphore.why()``): the permits held and the queue;
- :class:`BarrierExplanation` (``barrier.why()``): the parties entered, how many are
  missing, and the rounds whose parties have not all left.

A record in the way comes with the session that keeps it (:class:`Holding`): its
ephemeral record goes when that session ends. Sessions are named by the engine's
session id and, for a server's connection, ``connection <id>`` and the client's name.
Every explanation is a snapshot: by the time it is read the store may have moved on.
Lists are bounded (``limit``): ``truncated`` says more records matched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from octopus.errors import QueryError
from octopus.record import Atom, Record

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "BarrierExplanation",
    "Holding",
    "LockExplanation",
    "RoundInfo",
    "SemaphoreExplanation",
    "SessionInfo",
    "WaitExplanation",
    "Waiter",
]

#: records an explanation lists by default, and at most
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session of the engine: its id and, if it has one, its name."""

    id: int
    name: str | None = None

    def __str__(self) -> str:
        return f"session {self.id}" + (f" ({self.name})" if self.name else "")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class Holding:
    """A record and the session whose ephemeral record it is (None: no session of this
    engine keeps it: persistent, it stays until someone deletes it; on a cluster
    replica, possibly another node's session)."""

    record: Record
    session: SessionInfo | None

    def __str__(self) -> str:
        owner = str(self.session) if self.session is not None else "persistent"
        who = self.record.get("owner")
        return f"{self.record.name}" + (f" [{who}]" if who is not None else "") + \
            f" ({owner})"

    def to_dict(self) -> dict[str, Any]:
        return {"record": _jsonable(self.record),
                "session": None if self.session is None else self.session.to_dict()}


@dataclass(frozen=True, slots=True)
class Waiter:
    """A queued entry and the entry whose deletion it waits for."""

    entry: Holding
    behind: Record

    def to_dict(self) -> dict[str, Any]:
        return {**self.entry.to_dict(), "waits_for": self.behind.name}


@dataclass(frozen=True)
class WaitExplanation:
    """Why ``wait_for(query)`` would block (or not).

    - ``matching``: records matching now, in natural name order (at most the limit);
    - ``record``: for a query with an exact name, the record of that name (matching or
      not), else None; ``unmet``: the query's constraints that record fails (all of
      them are unmet when it does not exist, shown as ``missing``);
    - ``waiters``: the sessions with a one-shot trigger waiting for a record matching
      exactly this query (a ``wait_for`` in progress, a recipe waiting).
    """

    query: str
    matching: tuple[Holding, ...]
    record: Record | None
    unmet: tuple[str, ...]
    waiters: tuple[SessionInfo, ...]
    truncated: bool = False
    exact_name: str | None = None

    @property
    def blocked(self) -> bool:
        """A ``wait_for(query)`` now would wait: nothing matches."""
        return not self.matching

    def __str__(self) -> str:
        lines = [f"wait_for {self.query}: "
                 + ("blocked: no record matches" if self.blocked
                    else f"{len(self.matching)}{'+' if self.truncated else ''} "
                         f"record(s) match, it returns at once")]
        lines += [f"  matches {h}" for h in self.matching[:10]]
        if self.exact_name is not None and self.blocked:
            if self.record is None:
                lines.append(f"  no record named {self.exact_name}")
            else:
                lines.append(f"  {self.exact_name} exists but fails: {', '.join(self.unmet)}")
        lines += [f"  waited for by {s}" for s in self.waiters]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "wait", "query": self.query, "blocked": self.blocked,
                "matching": [h.to_dict() for h in self.matching],
                "record": _jsonable(self.record), "unmet": list(self.unmet),
                "waiters": [s.to_dict() for s in self.waiters], "truncated": self.truncated}


@dataclass(frozen=True)
class LockExplanation:
    """The state of a lock (or one side of a reader/writer lock, or an election).

    ``holders`` hold it now (one, or several readers); ``waiting`` queue behind them, in
    order, each with the entry it waits for. ``entry`` is the number of this object's
    entry (None: it is not queued); ``held``: this object holds it. ``blocked``: this
    object is waiting, or (not queued) an ``acquire()`` now would wait.
    """

    kind: str
    name: str
    holders: tuple[Holding, ...]
    waiting: tuple[Waiter, ...]
    entry: int | None
    held: bool
    blocked: bool
    truncated: bool = False

    def __str__(self) -> str:
        if not self.holders:
            head = f"{self.kind} {self.name}: free"
        else:
            head = (f"{self.kind} {self.name}: held by "
                    + ", ".join(str(h) for h in self.holders))
        lines = [head + (f"; {len(self.waiting)} waiting" if self.waiting else "")]
        lines += [f"  {w.entry} waits for {w.behind.name}" for w in self.waiting]
        if self.held:
            lines.append("  this object holds it")
        elif self.entry is not None:
            lines.append(f"  this object waits with entry {self.name}_{self.entry}")
        elif self.blocked:
            lines.append("  an acquire() now would wait")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "blocked": self.blocked,
                "holders": [h.to_dict() for h in self.holders],
                "waiting": [w.to_dict() for w in self.waiting],
                "entry": self.entry, "held": self.held, "truncated": self.truncated}


@dataclass(frozen=True)
class SemaphoreExplanation:
    """The state of a semaphore: the permits held (leases), the queue of would-be
    holders, and how many permits are free out of ``value`` (as this object knows it:
    the value is not stored)."""

    name: str
    value: int
    holders: tuple[Holding, ...]
    queue: tuple[Holding, ...]
    held: int
    truncated: bool = False

    @property
    def free(self) -> int:
        return max(0, self.value - len(self.holders))

    @property
    def blocked(self) -> bool:
        """An ``acquire()`` now would wait."""
        return self.free == 0 or bool(self.queue)

    def __str__(self) -> str:
        lines = [f"semaphore {self.name}: {len(self.holders)} of {self.value} permits "
                 f"held, {len(self.queue)} queued"]
        lines += [f"  holds {h}" for h in self.holders]
        lines += [f"  queued {h}" for h in self.queue]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "semaphore", "name": self.name, "value": self.value,
                "blocked": self.blocked, "free": self.free,
                "holders": [h.to_dict() for h in self.holders],
                "queue": [h.to_dict() for h in self.queue], "held": self.held,
                "truncated": self.truncated}


@dataclass(frozen=True)
class RoundInfo:
    """An open round of a barrier: its marker and its parties that have not left yet
    (a ``leave()`` of the round waits for them)."""

    marker: Record
    first: int
    upto: int
    remaining: tuple[Holding, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"marker": self.marker.name, "first": self.first, "upto": self.upto,
                "remaining": [h.to_dict() for h in self.remaining]}


@dataclass(frozen=True)
class BarrierExplanation:
    """The state of a barrier for ``n`` parties (None: unknown, for a barrier looked at
    by name only, with no round to tell).

    ``entered``: the parties waiting for their round to open; ``missing``: how many more
    must enter before it opens (None when ``n`` is unknown); ``rounds``: open rounds with
    the parties still in them. ``entry`` is this object's entry; ``blocked``: this
    object's ``enter()`` or ``leave()`` is waiting for someone, or (for a party that has
    not entered, or a look from outside) parties are waiting for missing ones.
    """

    name: str
    n: int | None
    entered: tuple[Holding, ...]
    rounds: tuple[RoundInfo, ...]
    entry: int | None
    inside: bool
    truncated: bool
    blocked: bool

    @property
    def missing(self) -> int | None:
        if self.n is None:
            return None
        return max(0, self.n - len(self.entered))

    def __str__(self) -> str:
        n = "?" if self.n is None else str(self.n)
        missing = "?" if self.missing is None else str(self.missing)
        lines = [f"barrier {self.name} for {n} parties: {len(self.entered)} entered and "
                 f"waiting, {missing} missing, {len(self.rounds)} round(s) open"]
        lines += [f"  entered {h}" for h in self.entered]
        for r in self.rounds:
            lines.append(f"  round {r.first}..{r.upto}: "
                         + (", ".join(str(h) for h in r.remaining) or "everyone left")
                         + (" not left yet" if r.remaining else ""))
        if self.inside:
            lines.append("  this object is inside its round")
        elif self.entry is not None:
            lines.append(f"  this object waits with entry {self.name}_{self.entry}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "barrier", "name": self.name, "n": self.n, "blocked": self.blocked,
                "missing": self.missing, "entered": [h.to_dict() for h in self.entered],
                "rounds": [r.to_dict() for r in self.rounds], "entry": self.entry,
                "inside": self.inside, "truncated": self.truncated}


def check_limit(limit: object) -> int:
    """An explanation's bound on listed records: an int in 1..MAX_LIMIT."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be an int from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


def _jsonable(record: Record | None) -> Any:
    if record is None:
        return None
    return {"name": record.name, "revision": record.revision,
            "attributes": {k: (str(v) if isinstance(v, Atom) else v)
                           for k, v in record.attributes.items()}}

"""Barrier: a double barrier for ``n`` parties, reusable round after round (docs/recipes.md).

Records:

- each party in the barrier has a sequential ephemeral entry
  ``<name>_<k> { barrier: '<name>' }``;
- a round opens with a marker ``<name>.round_<last> { barrier: '<name>', first: <first>,
  upto: <last> }`` naming the sequence numbers of exactly the ``n`` entries it lets in.
  It is not ephemeral (its round must not vanish with the party that opened it).

``enter()``: write an entry, then wait (``wait_for``) for the marker whose ``[first,
upto]`` contains the entry's number: a party waits for its own round only, so opening
a round wakes just the parties it admits. The entries not covered by any marker are
the ones waiting. Each arrival counts them after writing its entry (so the last of any
``n`` sees them all); one that sees ``n`` or more writes a marker for each ``n`` of
them, oldest first, under an internal lock ``<name>.gate`` (so a round opens once and
a withdrawing party cannot be counted behind its back). Because a marker names its
entries, a stale marker from an earlier round can never let a later entry through -
in the original, a release record left from an earlier round did exactly that.

``leave()``: delete the entry, then wait until no entry of the round is left, deleting
every marker whose round is empty (whoever sees it empty does; deleting twice is
harmless). When any ``leave()`` of a round returns True, nothing of that round remains.
Parties of the next round may enter while stragglers of this one are still leaving:
rounds are told apart by number, not by timing.

Guarantees: nobody passes ``enter()`` before ``n`` parties have entered; nobody passes
``leave()`` before every party of its round has called ``leave()`` (or ended its
session). More than ``n`` arrivals are let in ``n`` at a time, in arrival order.

Failure modes: ``enter(timeout)`` that runs out withdraws its entry and returns False -
unless the round opened for it in the meantime, then it returns True as if in time.
``leave(timeout)`` returning False has still left (its entry is gone); the others just
have not all left yet. A party whose session ends counts as having left; if it ends
before the round opened, the round needs another arrival; if the last party of a round
dies while all others have given up leaving, the marker stays until a later round's
``leave()`` sweeps it (it covers old numbers only, so it fools nobody). A Barrier is one
party: ``enter()`` twice without ``leave()`` raises :class:`LockError`. Leaving wakes
the parties watching the last remaining entry: O(n) wake-ups per departure at worst.
"""

from __future__ import annotations

from typing import cast

from octopus.errors import LockError, WaitTimeout
from octopus.explain import BarrierExplanation, RoundInfo
from octopus.recipes.lock import Lock
from octopus.recipes.store import (
    WHY_LIMIT,
    Store,
    add_entry,
    check_may_wait,
    check_name,
    deadline_after,
    delete_quietly,
    numbered,
    remaining,
    wait_deleted,
)
from octopus.record import Record

__all__ = ["Barrier", "explain_barrier"]

_ROUND_OF = "_ { barrier: %s, first <= %d, upto >= %d }"  # the marker covering entry k


def _first(marker: Record) -> int:
    """A round marker's first entry number (this module writes it as an int)."""
    return cast(int, marker["first"])


def _upto(marker: Record) -> int:
    """A round marker's last entry number (this module writes it as an int)."""
    return cast(int, marker["upto"])


class Barrier:
    """A double barrier named ``name`` for ``n`` parties on ``store``."""

    def __init__(self, store: Store, name: str, n: int) -> None:
        self.store = store
        self.name = check_name(name)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise LockError(f"a barrier needs an int n >= 1 parties, got {n!r}")
        self.n = n
        self._gate = Lock(store, name + ".gate")
        self._entry: int | None = None  # the number of our entry
        self._round: Record | None = None  # the marker that let us in

    def _read(self) -> tuple[list[Record], list[int]]:
        """The round markers, and the numbers of the entries in ascending order."""
        records = self.store.get_all("_ { barrier: %s }", self.name)
        return [r for r in records if "upto" in r.attributes], list(numbered(records, self.name))

    def _waiting(self, markers: list[Record], entries: list[int]) -> list[int]:
        """The entries no marker covers: those above the last round (rounds open in order)."""
        floor = max((_upto(m) for m in markers), default=-1)
        return [k for k in entries if k > floor]

    def enter(self, timeout: float | None = None) -> bool:
        """Wait until ``n`` parties are in; False (and withdrawn) on timeout."""
        if self._entry is not None:
            raise LockError(f"barrier {self.name!r}: already entered; leave() first")
        deadline = deadline_after(timeout)
        check_may_wait(self.store, f"barrier {self.name!r}: enter()", True, timeout)
        try:
            self._entry = add_entry(self.store, self.name, barrier=self.name)
            if len(self._waiting(*self._read())) >= self.n:
                self._open()
            try:  # our round's marker, once there, stays while our entry does
                self._round = self.store.wait_for(_ROUND_OF, self.name, self._entry,
                                                  self._entry, timeout=remaining(deadline))
            except WaitTimeout:
                return self._give_up()
            return True
        except BaseException:
            self._forget()
            raise

    def _open(self) -> None:
        with self._gate:
            waiting = self._waiting(*self._read())
            while len(waiting) >= self.n:  # a round for each n waiting, oldest first
                first, upto = waiting[0], waiting[self.n - 1]
                # Not ephemeral: the round outlives its opener; the last leaver deletes it.
                self.store.set("%n { barrier: %s, first: %d, upto: %d }",
                               f"{self.name}.round_{upto}", self.name, first, upto)
                waiting = waiting[self.n:]

    def _give_up(self) -> bool:
        with self._gate:  # no round opens while we look and withdraw
            rounds = self.store.get_all(_ROUND_OF, self.name, self._entry, self._entry)
            if rounds:
                self._round = rounds[0]
                return True
            self._forget()
            return False

    def _forget(self) -> None:
        if self._entry is not None:
            delete_quietly(self.store, f"{self.name}_{self._entry}")
        self._entry, self._round = None, None

    def leave(self, timeout: float | None = None) -> bool:
        """Leave, and wait until every party of the round has left; False on timeout."""
        if self._round is None:
            raise LockError(f"barrier {self.name!r}: leave() without enter()")
        deadline = deadline_after(timeout)
        check_may_wait(self.store, f"barrier {self.name!r}: leave()", True, timeout)
        first, upto = _first(self._round), _upto(self._round)
        self._forget()
        while True:
            markers, entries = self._read()
            for marker in markers:  # a marker whose round is empty is of no use to anyone
                if not any(_first(marker) <= k <= _upto(marker) for k in entries):
                    delete_quietly(self.store, marker.name)
            left = [k for k in entries if first <= k <= upto]
            if not left:
                return True
            if not wait_deleted(self.store, f"{self.name}_{left[-1]}", deadline):
                return False

    def why(self) -> BarrierExplanation:
        """Who has entered and waits for the round to open, how many are missing, and
        which parties of the open rounds have not left yet
        (:class:`~octopus.explain.BarrierExplanation`), from one atomic read."""
        return explain_barrier(self.store, self.name, self.n, self._entry,
                               self._round)

    def __enter__(self) -> Barrier:
        self.enter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.leave()

    def __repr__(self) -> str:
        state = "in" if self._round is not None else "out"
        return f"<Barrier {self.name!r} n={self.n} {state}>"


def explain_barrier(store: Store, name: str, n: int | None = None, entry: int | None = None,
                    round_: Record | None = None) -> BarrierExplanation:
    """The state of barrier ``name`` (see :meth:`Barrier.why`); ``n`` None: taken from
    the last round's marker, if there is one (the number of parties is not stored
    elsewhere). ``entry`` and ``round_`` are those of the party asking, if any."""
    check_name(name)
    seen = store.explain_wait("_ { barrier: %s }", name, limit=WHY_LIMIT)
    markers = sorted((h.record for h in seen.matching if "upto" in h.record.attributes),
                     key=lambda m: m["upto"])
    holding = {h.record.name: h for h in seen.matching}
    entries = numbered([h.record for h in seen.matching], name)
    if n is None and markers:
        n = int(markers[-1]["upto"]) - int(markers[-1]["first"]) + 1
    floor = max((_upto(m) for m in markers), default=-1)
    entered = tuple(holding[r.name] for k, r in entries.items() if k > floor)
    rounds = tuple(RoundInfo(m, _first(m), _upto(m),
                             tuple(holding[r.name] for k, r in entries.items()
                                   if _first(m) <= k <= _upto(m)))
                   for m in markers)
    mine = entry if entry in entries else None
    inside = round_ is not None
    if inside:       # leave() waits for the others of our round
        assert round_ is not None
        blocked = any(r.remaining for r in rounds
                      if r.marker.name == round_.name)
    elif mine is not None:      # enter() waits for the round to open
        blocked = not any(r.first <= mine <= r.upto for r in rounds)
    else:            # looked at from outside: parties wait for missing ones
        blocked = bool(entered)
    return BarrierExplanation(name, n, entered, rounds, mine, inside, seen.truncated,
                              blocked)

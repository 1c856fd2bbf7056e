"""Barrier: a double barrier for ``n`` parties, reusable round after round (SPEC section 6).

Records:

- each party in the barrier has a sequential ephemeral entry
  ``<name>_<k> { barrier: '<name>' }``;
- a round opens with a marker ``<name>.round_<last> { barrier: '<name>', first: <first>,
  upto: <last> }`` naming the sequence numbers of exactly the ``n`` entries it lets in.
  It is not ephemeral (its round must not vanish with the party that opened it).

``enter()``: write an entry, then wait for a marker whose ``[first, upto]`` contains the
entry's number. The entries not covered by any existing marker are the ones waiting
for the next round; the party that sees ``n`` of them writes the marker for the first
``n`` (under an internal lock ``<name>.gate``, so a round opens once and a withdrawing
party cannot be counted behind its back). Because a marker names its entries, a stale
marker from an earlier round can never let a later entry through - in the original, a
release record left from an earlier round did exactly that.

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

import threading
from collections.abc import Iterable

from octopus.errors import LockError
from octopus.events import Mode, Trigger
from octopus.recipes.lock import Lock
from octopus.recipes.store import (
    Store,
    check_name,
    deadline_after,
    delete_quietly,
    discard,
    flag_setter,
    remaining,
    sequence_number,
)
from octopus.record import Record

__all__ = ["Barrier"]


class Barrier:
    """A double barrier named ``name`` for ``n`` parties on ``store``."""

    def __init__(self, store: Store, name: str, n: int) -> None:
        self.store = store
        self.name = check_name(name)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise LockError(f"a barrier needs an int n >= 1 parties, got {n!r}")
        self.n = n
        self._base = name + "_"
        self._gate = Lock(store, name + ".gate")
        self._entry: str | None = None
        self._seq = -1
        self._round: Record | None = None  # the marker that let us in

    def _in(self, records: Iterable[Record]) -> bool:
        """Whether one of ``records`` is a marker covering our entry (remember it)."""
        for r in records:
            if "upto" in r.attributes and r["first"] <= self._seq <= r["upto"]:
                self._round = r
                return True
        return False

    def _waiting(self, records: list[Record]) -> list[int]:
        """Numbers of the entries no marker covers yet (every marker covers a prefix)."""
        floor = max((r["upto"] for r in records if "upto" in r.attributes), default=-1)
        numbers = (sequence_number(r.name, self._base) for r in records)
        return sorted(k for k in numbers if k is not None and k > floor)

    def enter(self, timeout: float | None = None) -> bool:
        """Wait until ``n`` parties are in; False (and withdrawn) on timeout."""
        if self._entry is not None:
            raise LockError(f"barrier {self.name!r}: already entered; leave() first")
        deadline = deadline_after(timeout)
        wake = threading.Event()  # set when a round opens: installed before our entry
        watch = self.store.watch("_ { barrier: %s, upto: _ }", flag_setter(wake), self.name,
                                 on=Mode.ON_SET)
        try:
            entry = self.store.set("%n { barrier: %s }", self._base, self.name,
                                   sequential=True, ephemeral=True)
            self._entry, self._seq = entry.name, int(entry.name[len(self._base):])
            while True:
                wake.clear()
                snapshot = self.store.get_all("_ { barrier: %s }", self.name)
                if self._in(snapshot):  # our round's marker stays while our entry does
                    return True
                if len(self._waiting(snapshot)) >= self.n:
                    self._open()
                elif not wake.wait(remaining(deadline)):
                    return self._give_up()
        except BaseException:
            self._forget()
            raise
        finally:
            discard(self.store, watch)

    def _open(self) -> None:
        with self._gate:
            waiting = self._waiting(self.store.get_all("_ { barrier: %s }", self.name))
            if len(waiting) >= self.n:
                first, upto = waiting[0], waiting[self.n - 1]
                # Not ephemeral: the round outlives its opener; the last leaver deletes it.
                self.store.set("%n { barrier: %s, first: %d, upto: %d }",
                               f"{self.name}.round_{upto}", self.name, first, upto)

    def _give_up(self) -> bool:
        with self._gate:  # no round opens while we look and withdraw
            if self._in(self.store.get_all("_ { barrier: %s }", self.name)):
                return True
            self._forget()
            return False

    def _forget(self) -> None:
        if self._entry is not None:
            delete_quietly(self.store, self._entry)
        self._entry, self._round = None, None

    def leave(self, timeout: float | None = None) -> bool:
        """Leave, and wait until every party of the round has left; False on timeout."""
        if self._round is None or self._entry is None:
            raise LockError(f"barrier {self.name!r}: leave() without enter()")
        deadline = deadline_after(timeout)
        first, upto = self._round["first"], self._round["upto"]
        self._forget()
        while True:
            snapshot = self.store.get_all("_ { barrier: %s }", self.name)
            numbers = [k for k in (sequence_number(r.name, self._base) for r in snapshot)
                       if k is not None]
            for r in snapshot:  # a marker whose round is empty is of no use to anyone
                if "upto" in r.attributes and not any(
                        r["first"] <= k <= r["upto"] for k in numbers):
                    delete_quietly(self.store, r.name)
            left = [k for k in numbers if first <= k <= upto]
            if not left:
                return True
            gone = threading.Event()
            watch = Trigger(flag_setter(gone), on=Mode.ON_DEL, install_if="found")
            if not self.store.exists("%n", f"{self._base}{left[-1]}", trigger=watch):
                continue
            if not gone.wait(remaining(deadline)):
                discard(self.store, watch)
                return False

    def __enter__(self) -> Barrier:
        self.enter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.leave()

    def __repr__(self) -> str:
        state = "in" if self._round is not None else "out"
        return f"<Barrier {self.name!r} n={self.n} {state}>"

"""A hypothesis state machine for the lock: acquire, release, timeouts, cancelled waiters and
session ends in random order across several sessions, checked against a FIFO-queue model.

After every step the machine waits until the store has settled (every blocked acquire
that can proceed has), then checks: the store's queue is the model's queue; exactly the
model's head holds the lock (mutual exclusion, FIFO); every grant's token is higher
than the one before.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import octopus
from octopus import EngineClosed, LockError
from octopus.recipes import Lock

from .threads import PATIENCE, eventually

SESSIONS = 3
SETTLE = 5.0  # seconds to wait for the store to settle; only a failing run waits that long


@dataclass
class Contender:
    label: str
    session: int
    lock: Lock
    thread: threading.Thread | None = None
    errors: list[BaseException] = field(default_factory=list)


class LockMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = octopus.Engine()
        self.sessions = [self.engine.session() for _ in range(SESSIONS)]
        self.probe = self.engine.lock("m")  # never acquires: reads the queue
        self.queue: list[Contender] = []  # the model: FIFO, the head holds
        self.everyone: list[Contender] = []
        self.last_token = -1
        self.granted_head: Contender | None = None
        self.count = 0

    def _contender(self, s: int) -> Contender:
        self.count += 1
        c = Contender(f"c{self.count}", s, self.sessions[s].lock("m", f"c{self.count}"))
        self.everyone.append(c)
        return c

    @rule(s=st.integers(0, SESSIONS - 1))
    def enqueue(self, s: int) -> None:
        """A blocking acquire in its own thread; it joins the end of the queue."""
        c = self._contender(s)

        def run() -> None:
            try:
                c.lock.acquire()
            except EngineClosed:
                pass  # its session ended while it waited
            except BaseException as e:
                c.errors.append(e)

        c.thread = threading.Thread(target=run, daemon=True)
        c.thread.start()
        self.queue.append(c)
        eventually(lambda: c.label in self.probe.contenders(), f"{c.label} queued")

    @rule(s=st.integers(0, SESSIONS - 1))
    def acquire_with_timeout(self, s: int) -> None:
        """Gets the lock at once if it is free, else times out and withdraws."""
        c = self._contender(s)
        got = c.lock.acquire(timeout=0.01)
        assert got == (not self.queue)
        if got:
            self.queue.append(c)

    @precondition(lambda self: bool(self.queue))
    @rule()
    def release(self) -> None:
        head = self.queue.pop(0)
        head.lock.release()
        assert not head.lock.held

    @precondition(lambda self: len(self.queue) > 1)
    @rule(data=st.data())
    def cancel_a_waiter(self, data: st.DataObject) -> None:
        """A waiter gives up from anywhere in the queue (the path a timeout takes)."""
        c = data.draw(st.sampled_from(self.queue[1:]))
        c.lock.cancel()
        assert c.thread is not None
        c.thread.join(SETTLE)
        assert not c.thread.is_alive() and not c.lock.held
        self.queue.remove(c)

    @rule(s=st.integers(0, SESSIONS - 1))
    def close_session(self, s: int) -> None:
        """Its holders and waiters vanish from the queue, without release()."""
        self.sessions[s].close()
        self.sessions[s] = self.engine.session()
        self.queue = [c for c in self.queue if not self.sessions_closed(c)]

    @rule(data=st.data())
    def release_by_a_non_holder(self, data: st.DataObject) -> None:
        others = [c for c in self.queue[1:] if c.thread is not None]
        if others:
            c = data.draw(st.sampled_from(others))
        else:
            c = self._contender(data.draw(st.integers(0, SESSIONS - 1)))
        with pytest.raises(LockError):
            c.lock.release()

    @invariant()
    def fifo_mutual_exclusion_and_tokens(self) -> None:
        labels = [c.label for c in self.queue]
        head = self.queue[0] if self.queue else None
        eventually(lambda: self.probe.contenders() == labels
                   and (head is None or head.lock.held), f"queue {labels} settled",
                   timeout=SETTLE)
        live_holders = [c.label for c in self.everyone
                        if c.lock.held and not self.sessions_closed(c)]
        assert live_holders == ([head.label] if head else [])
        if head is not None and head is not self.granted_head:
            assert head.lock.token is not None and head.lock.token > self.last_token
            self.last_token, self.granted_head = head.lock.token, head
        for c in self.everyone:
            assert not c.errors, c.errors

    def sessions_closed(self, c: Contender) -> bool:
        return bool(c.lock.store.closed)  # type: ignore[attr-defined]

    def teardown(self) -> None:
        self.engine.close()
        for c in self.everyone:
            if c.thread is not None:
                c.thread.join(PATIENCE)
                assert not c.thread.is_alive(), f"{c.label} still blocked after close"
            assert not c.errors, c.errors


LockMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_lock_state_machine = LockMachine.TestCase

"""A recipe wait made from an event handler fails at once with LockError.

The handler runs on the store's event thread, which is the thread that would deliver
the wake-up: before, such a wait sat out its whole timeout (or hung). The calls get a
timeout of PATIENCE, so the old behaviour fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

import octopus
from octopus import LockError, Mode
from octopus.recipes import Lock, Store

from .threads import PATIENCE


def from_handler(store: Store, call: Callable[[], Any]) -> Any:
    """The result of ``call()`` (or the exception it raised) run by an event handler."""
    outcome: list[Any] = []
    done = threading.Event()

    def handler(event: octopus.Event) -> None:
        if event.mode is not Mode.ON_SET:
            return          # removing the trigger delivers REMOVED: run the call once
        try:
            outcome.append(call())
        except Exception as e:
            outcome.append(e)
        done.set()

    trigger = store.watch("go", handler, on=Mode.ON_SET)
    store.set("go { n: 1 }")
    assert done.wait(PATIENCE * 2), "the handler did not finish"
    store.remove_trigger(trigger)
    store.delete("go")
    return outcome[0]


WAITS: dict[str, Callable[[Store], Any]] = {
    "lock": lambda s: s.lock("l").acquire(timeout=PATIENCE),
    "lock with": lambda s: s.lock("l").__enter__(),
    "rwlock read": lambda s: s.rwlock("rw").read.acquire(timeout=PATIENCE),
    "rwlock write": lambda s: s.rwlock("rw").write.acquire(),
    "semaphore": lambda s: s.semaphore("sem", 1).acquire(timeout=PATIENCE),
    "barrier enter": lambda s: s.barrier("b", 2).enter(timeout=PATIENCE),
    "election": lambda s: s.election("e").run(lambda: "led"),
    "names.wait": lambda s: s.names.wait("svc", timeout=PATIENCE),
}


@pytest.mark.parametrize("name", sorted(WAITS))
def test_waits_from_a_handler_fail_fast(store: Store, name: str) -> None:
    with store.session() as other:      # contended: someone else holds everything
        assert other.lock("l").acquire()
        assert other.rwlock("rw").write.acquire()
        assert other.semaphore("sem", 1).acquire()
        error = from_handler(store, lambda: WAITS[name](store))
    assert isinstance(error, LockError), error
    assert "handler" in str(error)
    # nothing was left behind by the refused call
    assert store.get_names("r'^(l|rw|sem|b|e)_'") == []


@pytest.mark.parametrize("name", sorted(WAITS))
def test_refused_even_when_it_would_not_have_waited(store: Store, name: str) -> None:
    error = from_handler(store, lambda: WAITS[name](store))
    assert isinstance(error, LockError), error


def test_barrier_leave_from_a_handler(store: Store) -> None:
    party = store.barrier("bl", 1)
    assert party.enter()
    error = from_handler(store, lambda: party.leave(timeout=PATIENCE))
    assert isinstance(error, LockError), error
    assert party.leave()


def test_calls_that_cannot_wait_are_allowed(store: Store) -> None:
    store.names.register("svc", port=1)

    def calls() -> list[Any]:
        lock, sem = store.lock("nb"), store.semaphore("nbs", 1)
        got = [lock.acquire(blocking=False), sem.acquire(timeout=0),
               store.names.wait("svc", timeout=0)["port"], store.names.lookup("svc")["port"]]
        lock.release()
        sem.release()
        sem.release()           # a post: release never waits
        return got

    assert from_handler(store, calls) == [True, True, 1, 1]
    assert store.semaphore("nbs", 1).available() == 2


def test_other_stores_may_wait_in_a_handler() -> None:
    """Only the handler's own store is refused: another engine's events come from
    another thread."""
    with octopus.Engine() as a, octopus.Engine() as b:
        held = b.lock("x")
        assert held.acquire()
        releaser = threading.Timer(0.05, held.release)
        releaser.start()
        got = from_handler(a, lambda: b.lock("x").acquire(timeout=PATIENCE))
        releaser.join()
        assert got is True


def test_on_handler_thread(store: Store) -> None:
    assert store.on_handler_thread() is False
    assert from_handler(store, store.on_handler_thread) is True
    with store.session() as other:
        # sessions of one engine share its event thread; a client's sessions are
        # connections, each with its own
        assert from_handler(store, other.on_handler_thread) is isinstance(store,
                                                                           octopus.Engine)


def test_the_async_twins_refuse_too() -> None:
    async def main() -> list[Any]:
        from octopus.server.testing import serve_in_thread
        outcomes: list[Any] = []
        with serve_in_thread() as url:
            client = await octopus.connect_async(url)
            bridge = client._blocking_store()
            assert bridge.on_handler_thread() is True         # we are on its loop
            outcomes.append(await asyncio.to_thread(bridge.on_handler_thread))
            try:
                Lock(bridge, "a").acquire()
            except LockError as e:
                outcomes.append(e)
            # awaited recipes run on a thread of their own: no deadlock, no refusal
            lock = client.lock("a")
            outcomes.append(await lock.acquire(timeout=PATIENCE))
            await lock.release()
            await client.close()
        return outcomes

    outcomes = asyncio.run(main())
    assert outcomes[0] is False
    assert isinstance(outcomes[1], LockError)
    assert outcomes[2] is True

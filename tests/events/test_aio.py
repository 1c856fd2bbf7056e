"""octopus.aio: the asyncio twin over the same core."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading

import pytest

import octopus
from octopus import Mode
from octopus.aio import AsyncEngine


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_awaitable_store_calls_share_the_core() -> None:
    async def main() -> None:
        with octopus.Engine() as sync:
            engine = AsyncEngine(sync)
            r = await engine.set("x { a: 1 }")
            assert sync.get("x") == r
            assert (await engine.get("_ { a: 1 }")).name == "x"
            assert await engine.get_names("_") == ["x"]
            assert await engine.exists("x")
            assert [r.name for r in await engine.get_all("_")] == ["x"]
            assert (await engine.delete("x")).name == "x"
            with pytest.raises(octopus.NotFound):
                await engine.get("x")
            await engine.close()
            assert not sync.closed      # a wrapped engine stays open

    run(main())


def test_watch_stream_and_its_removal() -> None:
    async def main() -> None:
        async with AsyncEngine() as engine:
            stream = await engine.events("_ { a: _ }")
            await engine.set("y { a: 2 }")
            await engine.delete("y")
            modes = []
            async for event in stream:
                modes.append(event.mode)
                if event.mode & Mode.ON_DEL:
                    break
            assert modes == [Mode.ON_SET, Mode.ON_DEL]
            await stream.aclose()
            assert not len(engine.engine._core.registry)

    run(main())


def test_watch_existing_and_lazy_start() -> None:
    async def main() -> None:
        async with AsyncEngine() as engine:
            await engine.set("d2 { k: 1 }")
            await engine.set("d1 { k: 1 }")
            seen = []
            async for event in engine.events("_ { k: 1 }", existing=True):
                seen.append(event.record.name)
                if len(seen) == 2:
                    break
            assert seen == ["d1", "d2"]

    run(main())


def test_stream_ends_when_its_session_closes() -> None:
    async def main() -> None:
        async with AsyncEngine() as engine:
            session = await engine.session()
            stream = await session.events("x")
            await session.close()
            assert [e async for e in stream] == []

    run(main())


def test_wait_for_timeout_and_cancellation_leave_no_trigger() -> None:
    async def main() -> None:
        async with AsyncEngine() as engine:
            async def later() -> None:
                await asyncio.sleep(0.05)
                await engine.set("late { v: 1 }")

            task = asyncio.create_task(later())
            assert (await engine.wait_for("late", timeout=5))["v"] == 1
            await task
            with pytest.raises(octopus.WaitTimeout):
                await engine.wait_for("never", timeout=0.05)
            waiter = asyncio.create_task(engine.wait_for("never"))
            await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await asyncio.sleep(0.05)
            assert not len(engine.engine._core.registry)

    run(main())


def test_subscribe_stream_and_break_removes_the_subscription() -> None:
    async def main() -> None:
        async with AsyncEngine() as engine:
            async def consume() -> list[int]:
                got = []
                async for msg in engine.messages("_ { topic: 'x' }"):
                    got.append(msg.record["n"])
                    if len(got) == 2:
                        break
                return got

            task = asyncio.create_task(consume())
            while not len(engine.engine._core.registry):
                await asyncio.sleep(0.01)
            assert await engine.publish("m { topic: 'x', n: 1 }") == 1
            await engine.publish("m { topic: 'y', n: 9 }")
            await engine.publish("m { topic: 'x', n: 2 }")
            assert await task == [1, 2]
            gc.collect()
            await asyncio.sleep(0.05)
            assert not len(engine.engine._core.registry)

    run(main())


def test_cancelling_wait_for_at_every_await_point_leaves_no_trigger() -> None:
    async def main() -> None:
        async with AsyncEngine() as engine:
            core = engine.engine._core
            # While its first get runs on a worker thread (held up by the engine lock):
            # the get still installs the trigger after the cancellation; the wait must
            # let it finish and remove it.
            core.lock.acquire()
            task = asyncio.create_task(engine.wait_for("never"))
            await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.sleep(0.02)
            core.lock.release()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not len(core.registry)
            # At every step of the loop after that: waiting, and removing.
            for steps in range(30):
                task = asyncio.create_task(engine.wait_for("never"))
                for _ in range(steps):
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                assert not len(core.registry), f"a trigger leaked when cancelled at {steps}"

    run(main())


def test_a_stream_that_falls_too_far_behind_is_removed() -> None:
    async def main() -> None:
        async with AsyncEngine() as engine:
            stream = await engine.events("_ { n: _ }", max_buffered=5)
            for n in range(20):
                await engine.set("x { n: %d }", n)
            await engine.flush()
            got = []
            with pytest.raises(octopus.OctopusError, match="behind"):
                async for event in stream:
                    got.append(event.record["n"])
            assert got == [0, 1, 2, 3, 4]
            assert not len(engine.engine._core.registry)

    run(main())


def test_handlers_run_on_the_event_loop_and_async_handlers_are_awaited() -> None:
    async def main() -> None:
        async with AsyncEngine() as engine:
            loop_thread = threading.current_thread()
            where: list[bool] = []
            done: list[int] = []

            async def handler(event: octopus.Event) -> None:
                where.append(threading.current_thread() is loop_thread)
                await asyncio.sleep(0.01)
                done.append(event.record["n"])

            await engine.watch("_ { n: _ }", handler)
            for n in range(3):
                await engine.set("x { n: %d }", n)
            assert await engine.flush(10)
            assert where == [True, True, True] and sorted(done) == [0, 1, 2]

    run(main())


def test_async_recipes() -> None:
    async def main() -> None:
        async with AsyncEngine() as engine:
            a, b = await engine.session(), await engine.session()
            lock_a, lock_b = a.lock("printer"), b.lock("printer")
            assert await lock_a.acquire()
            assert lock_a.held and lock_a.token is not None
            waiter = asyncio.create_task(lock_b.acquire())
            await asyncio.sleep(0.1)
            assert not waiter.done()
            waiter.cancel()                  # a cancelled acquire never keeps the lock
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await lock_a.release()
            async with b.lock("printer") as held:
                assert held.held
            assert await b.lock("printer").acquire(timeout=5)
            async with a.semaphore("pool", 2):
                pass
            await a.names.register("serial", iref=42)
            assert (await b.names.lookup("serial"))["iref"] == 42
            await a.close()
            await b.close()

    run(main())

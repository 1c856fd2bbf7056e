"""The threads that run engine calls for the event loop (no sockets)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from octopus.server.runner import EngineRunner


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_results_and_errors_come_back_on_the_loop_thread() -> None:
    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        runner = EngineRunner(loop, 2)
        got: list[object] = []
        done = loop.create_future()
        threads: set[int] = set()

        def on_done(result: object, error: BaseException | None) -> None:
            threads.add(threading.get_ident())
            got.append(error if error is not None else result)
            if len(got) == 3:
                done.set_result(None)

        def work(x: int) -> int:
            assert threading.get_ident() != loop_thread
            if x == 2:
                raise SystemExit("a handler's exit")     # must not end the thread
            return x * 10

        loop_thread = threading.get_ident()
        for x in (1, 2, 3):
            runner.call(work, x, on_done)
        await done
        assert threads == {loop_thread}
        runner.shutdown()
        return got

    got = run(main())
    assert got[0] == 10 and got[2] == 30 and isinstance(got[1], SystemExit)


def test_a_stuck_call_does_not_hold_up_the_next_ones() -> None:
    """A call blocked on an event (like a long Prolog scan, without the GIL) keeps one
    thread; calls made after it finish first, on another thread."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        runner = EngineRunner(loop, 3, stall=0.01)
        release = threading.Event()
        order: list[str] = []
        quick_done = loop.create_future()
        slow_done = loop.create_future()
        runner.call(lambda _: release.wait(60), None,
                    lambda r, e: (order.append("slow"), slow_done.set_result(None)))
        for i in range(5):
            runner.call(lambda i: i, i, lambda r, e: order.append(f"quick{r}") or (
                r == 4 and quick_done.set_result(None)))
        await quick_done
        release.set()
        await slow_done
        assert runner.extra_wakes >= 1
        runner.shutdown()
        return order

    assert run(main()) == ["quick0", "quick1", "quick2", "quick3", "quick4", "slow"]


def test_it_is_an_executor_for_asyncio() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        runner = EngineRunner(loop, 1)
        try:
            return await loop.run_in_executor(runner, sum, [1, 2, 3])
        finally:
            runner.shutdown()

    assert run(main()) == 6


def test_shutdown_cancels_what_has_not_started() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        runner = EngineRunner(loop, 1, stall=60)
        gate = threading.Event()
        first = runner.submit(gate.wait, 60)
        while not first.running():
            await asyncio.sleep(0.001)
        queued = runner.submit(int, "5")
        runner.shutdown(wait=False, cancel_futures=True)
        assert queued.cancelled()
        gate.set()
        assert first.result(10) is True
        with pytest.raises(RuntimeError):
            runner.call(int, "1", lambda r, e: None)

    run(main())


def test_a_runner_never_shut_down_does_not_hold_up_the_exit() -> None:
    """Threads that ran engine calls (Prolog engines attached) stop at interpreter exit
    even if nobody called shutdown(); the process exits cleanly."""
    import subprocess
    import sys

    code = (
        "import asyncio, octopus\n"
        "from octopus.server.runner import EngineRunner\n"
        "engine = octopus.Engine()\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    runner = EngineRunner(loop, 3)\n"
        "    done = loop.create_future()\n"
        "    runner.call(lambda _: engine.set('x { a: 1 }'), None,\n"
        "                lambda r, e: done.set_result(r))\n"
        "    print(await done, flush=True)\n"
        "asyncio.run(main())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "x { a: 1 }" and "invalid pointer" not in r.stderr

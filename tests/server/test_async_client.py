"""The asyncio client twin."""

from __future__ import annotations

import asyncio

import pytest

import octopus
from octopus import Mode, NotFound, WaitTimeout
from octopus.server import connect_async

from .conftest import ServerProcess


def test_async_client(server: ServerProcess) -> None:
    async def main() -> None:
        async with await connect_async(server.unix_url) as c:
            r = await c.set("aio.a { n: %d }", 1)
            assert (await c.get("aio.a")) == r
            assert await c.get_names("r'^aio'") == ["aio.a"]
            with pytest.raises(NotFound):
                await c.get("aio.none")
            events: list[octopus.Event] = []
            seen = asyncio.Event()

            async def handler(event: octopus.Event) -> None:   # coroutine handlers work
                events.append(event)
                seen.set()

            t = await c.watch("r'^aio'", handler, on=Mode.ON_SET)
            waiter = asyncio.ensure_future(c.wait_for("aio.late", timeout=10))
            await asyncio.sleep(0.1)
            await c.set("aio.late { v: 2 }")
            assert (await waiter)["v"] == 2
            with pytest.raises(WaitTimeout):
                await c.wait_for("aio.never", timeout=0.1)
            results = await asyncio.gather(*(c.get("aio.a") for _ in range(100)))
            assert all(x == r for x in results)
            await c.remove_trigger(t)
            assert await c.flush(10)
            assert [e.mode for e in events] == [Mode.ON_SET, Mode.REMOVED]
            async with await c.session() as s:
                await s.set("aio.eph", ephemeral=True)
                assert await c.exists("aio.eph")
            assert not await c.exists("aio.eph")
            msgs: list[octopus.Event] = []
            sub = await c.subscribe("_ { topic: 'aio' }", msgs.append)
            assert await c.publish("m { topic: 'aio' }") == 1
            await c.unsubscribe(sub)
            await c.flush()
            assert [e.mode for e in msgs] == [Mode.ON_PUBLISH, Mode.REMOVED]
        assert c.closed
        with pytest.raises(octopus.EngineClosed):
            await c.get("aio.a")

    asyncio.run(main())

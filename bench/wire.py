"""The command layer without I/O (octopus/server/commands.py): what a command costs the
server beyond the socket, under Redis's and Octopus's conventions, and a transaction of
N SETs (one atomic batch) against the same N SETs one by one.

    .venv/bin/python bench/wire.py [--n 100] [--repeat 7]

Prints the best of ``--repeat`` timings per operation (microseconds), which is the
figure least disturbed by other load on a shared machine.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

import octopus
from octopus.server.cache import ReplyCache
from octopus.server.commands import Call, CommandLayer
from octopus.server.config import ServerConfig


class _Ctx:
    def __init__(self, engine: octopus.Engine) -> None:
        self.engine = engine
        self.config = ServerConfig()
        self.cache = ReplyCache(4096, 64 << 20)
        self.max_query_length = self.config.max_query_length

    def info(self, section: str) -> str:
        return ""


def _layer(engine: octopus.Engine, *fmt: bytes) -> Callable[[list[bytes]], Any]:
    layer = CommandLayer(_Ctx(engine), engine.session(), conn_id=1,
                         on_trigger=lambda e: None, on_message=lambda e: None)

    def run(args: list[bytes]) -> Any:
        action = layer.handle(args)
        while type(action) is Call:
            try:
                result, error = action.run(), None
            except Exception as e:
                result, error = None, e
            action = layer.complete(action, result, error)
        return action

    if fmt:
        run([b"CLIENT", b"FORMAT", *fmt])
    return run


def _best(fn: Callable[[], Any], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="SETs per transaction")
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    with octopus.Engine() as engine:
        engine.set("bench.rec { payload: %s }", "x" * 256)
        rows = []
        for label, fmt in (("redis", ()), ("octopus", (b"TEXT", b"OCTOPUS"))):
            run = _layer(engine, *fmt)
            get, missing = [b"GET", b"bench.rec"], [b"GET", b"bench.none"]
            run(get)
            sets = [b"SET", b"bench.set { v: 1 }"]
            for name, args, number in (("GET, cached", get, 20000),
                                       ("GET of nothing", missing, 5000),
                                       ("SET", sets, 2000)):
                rows.append((f"{name} ({label})",
                             _best(lambda r=run, x=args: r(x), number, a.repeat)))
        run = _layer(engine)
        batch = [[b"SET", b"bench.tx%d { v: %d }" % (i, i)] for i in range(a.n)]

        def one_by_one() -> None:
            for args in batch:
                run(args)

        def transaction() -> None:
            run([b"MULTI"])
            for args in batch:
                run(args)
            run([b"EXEC"])

        rows.append((f"{a.n} SETs one by one", _best(one_by_one, 20, a.repeat)))
        rows.append((f"{a.n} SETs in MULTI/EXEC", _best(transaction, 20, a.repeat)))
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:10.2f} us")


if __name__ == "__main__":
    main()

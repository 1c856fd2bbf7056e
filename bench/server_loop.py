"""The event loop's own work per request, without sockets: instructions of the loop's
thread per cached ``GET`` plus a ``PING``, fed to :class:`octopus.server.server.Connection`
through a transport that only counts writes. On the 2-core shared machine rates and CPU
times swing by ±30 %, instruction counts do not: this is the figure for a change of the
request path that is too small to see in ``bench/server_keys.py``.

Counted with valgrind (callgrind, one output per thread, the main thread's total), as
the difference between 3 and 1 rounds of 200 cached GETs and 200 PINGs repeated 5 and 1
times, with PYTHONHASHSEED=0 (dicts and sets otherwise probe differently from run to
run). ``--baseline DIR`` counts another checkout (e.g. ``git worktree add /tmp/base
<commit>``) the same way.

    .venv/bin/python bench/server_loop.py [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HERE, commit_of, record_results, table

RECORDS = 200


class _Transport:
    """What Connection uses of a transport; writes are dropped."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def _child(rounds: int) -> None:
    import octopus
    from octopus.server.server import Connection, Server

    engine = octopus.Engine()
    engine.session().load(f"k{n:012d} {{ vendor: 0x8086, device_id: {n}, class: 'C', "
                          f"bus: {n % 256}, label: 'dev {n}' }}" for n in range(RECORDS))
    server = Server(engine)
    conn = Connection(server)
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    while conn.busy:
        await asyncio.sleep(0.01)
    gets = [b"*2\r\n$3\r\nGET\r\n$13\r\nk%012d\r\n" % n for n in range(RECORDS)]
    for request in gets:                 # fill the reply cache (misses go to a thread)
        conn.data_received(request)
        while conn.busy:
            await asyncio.sleep(0)
    ping = b"*1\r\n$4\r\nPING\r\n"
    for _ in range(rounds):
        for _ in range(5):
            for request in gets:
                conn.data_received(request)
        for _ in range(5 * RECORDS):
            conn.data_received(ping)
    assert server.cache is not None and server.cache.hits == 5 * RECORDS * rounds
    conn.connection_lost(None)
    await server.close()
    engine.close()


def _instructions(root: Path, rounds: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg"
        env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(root))
        subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                        f"--callgrind-out-file={out}", sys.executable, __file__, "--child",
                        str(rounds)], env=env, cwd=root, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for line in Path(f"{out}-01").read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("no total in callgrind's output")


def per_request(root: Path) -> float:
    """Loop-thread instructions per cached GET plus a PING, for the checkout at root."""
    return (_instructions(root, 3) - _instructions(root, 1)) / (2 * 5 * RECORDS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, metavar="DIR")
    p.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        asyncio.run(_child(args.child))
        return
    here = per_request(HERE.parent)
    rows = [["this checkout", f"{here:,.0f}", ""]]
    if args.baseline is not None:
        base = per_request(args.baseline.resolve())
        commit = commit_of(args.baseline)
        rows.append([f"baseline ({commit})", f"{base:,.0f}", ""])
        rows[0][2] = f"{here / base:.2f}"
    text = table("Instructions of the loop's thread per cached GET plus a PING (valgrind)",
                 ["checkout", "instructions", "this / baseline"], rows)
    text += ("\n\nIn-process: Connection.data_received with a transport that drops "
             f"writes, {RECORDS} records, 3 rounds less 1 round of {5 * RECORDS} cached "
             f"GETs and {5 * RECORDS} PINGs, PYTHONHASHSEED=0; no socket calls (those "
             "are the other half of a cached GET's CPU at -P 1).")
    print(text)
    if not args.no_record:
        record_results("The event loop's work per request (bench/server_loop.py)", text)


if __name__ == "__main__":
    main()

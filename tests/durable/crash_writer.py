"""A writer process for the crash tests: opens a durable engine (fsync="always"), then
sets, compare-and-sets, deletes, sequential sets, set_many batches and ephemeral sets
(and now and then a query on v, so that snapshots keep its index) as fast as it can,
logging to a side file an *intent* line before each operation and an *ack* line with
the engine's answer after it, until it is killed.

    python crash_writer.py DIR LOG SEED [--compact-every N]
"""

from __future__ import annotations

import json
import os
import random
import sys

import octopus


def main() -> None:
    directory, log_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    compact_every = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    rng = random.Random(seed)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(line: dict[str, object]) -> None:
        os.write(log, (json.dumps(line) + "\n").encode())

    engine = octopus.Engine(path=directory, fsync="always", compact_min_bytes=4096,
                            compact_ratio=0.5)
    session = engine.session()
    known: dict[str, int] = {}          # name -> its v, as this writer last set it
    write({"ready": engine.revision})
    step = 0
    while True:
        step += 1
        if compact_every and step % compact_every == 0:
            engine.compact()
        if step % 50 == 1:
            # A query now and then: the index of v exists, so snapshots keep it.
            engine.get_names("_ { v > %d }", rng.randrange(1000))
        roll = rng.random()
        name = f"k{rng.randrange(12)}"
        v = rng.randrange(1000)
        attrs = {"v": v, "w": f"s{step}"}
        text = "%s { v: %d, w: %s }"
        if roll < 0.35:
            op = {"op": "set", "name": name, "attrs": attrs}
            write({"intent": op})
            r = engine.set(text, name, v, f"s{step}")
            known[name] = v
            write({"ack": op, "revision": r.revision})
        elif roll < 0.5:
            expect = known.get(name, -1)
            op = {"op": "cas", "name": name, "attrs": attrs}
            write({"intent": {**op, "ok": True}})
            try:
                r = engine.set("%s { v: %d, w: %s, v == %d }", name, v, f"s{step}", expect)
            except octopus.ConditionFailed:
                write({"ack": {**op, "ok": False}, "revision": None})
            else:
                known[name] = v
                write({"ack": {**op, "ok": True}, "revision": r.revision})
        elif roll < 0.62:
            op = {"op": "del", "name": name}
            write({"intent": {**op, "ok": True}})
            try:
                engine.delete(name)
            except octopus.NotFound:
                write({"ack": {**op, "ok": False}, "revision": None})
            else:
                known.pop(name, None)
                write({"ack": {**op, "ok": True}, "revision": engine.revision})
        elif roll < 0.8:
            op = {"op": "seq", "base": "s.", "attrs": attrs}
            write({"intent": op})
            r = engine.set("s. { v: %d, w: %s }", v, f"s{step}", sequential=True)
            write({"ack": {**op, "name": r.name}, "revision": r.revision})
        elif roll < 0.9:
            rows = [(f"m{rng.randrange(30)}", {"v": rng.randrange(1000), "w": f"b{step}"})
                    for _ in range(rng.randrange(1, 6))]
            rows = list({n: (n, a) for n, a in rows}.values())
            op = {"op": "many", "rows": rows}
            write({"intent": op})
            engine.set_many(rows)
            write({"ack": op, "revision": engine.revision})
        else:
            # Ephemeral: on its own names, or replacing a persistent record.
            target = f"e{rng.randrange(5)}" if rng.random() < 0.6 else name
            op = {"op": "set", "name": target, "attrs": attrs, "eph": True}
            write({"intent": op})
            r = session.set(text, target, v, f"s{step}", ephemeral=True)
            known.pop(target, None)
            write({"ack": op, "revision": r.revision})


if __name__ == "__main__":
    main()

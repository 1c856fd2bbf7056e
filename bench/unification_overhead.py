"""Where the time of one `get` goes — the paper found ECLiPSe took ~80% of a get's latency.

A get with several matches is two Prolog calls (the matching names, then the record
that comes first in natural order, which Python picks); both are counted.

    .venv/bin/python bench/unification_overhead.py [--records 1400000]

One get is broken into: parsing (cached), the janus call with its argument conversion
(building the Prolog terms), the Prolog work itself (lookup, unification and constraint
checks, timed inside Prolog), converting the reply back, building the Record, and the
engine's own bookkeeping (the rest). Shown for a get by name and for an attribute query.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import pci_records, per_second, progress, record_results, table

import octopus
from octopus.adapter import decode_attributes
from octopus.query.compile import compile_query
from octopus.record import Record, natural_key


def us(rate: float) -> float:
    return 1e6 / rate


def breakdown(engine: octopus.Engine, query: str, by_name: bool) -> list[list[str]]:
    core = engine._core
    rt = core.store.rt
    ap = rt.janus.apply_once
    module = core.store.module
    cq = compile_query(query)
    total = us(per_second(lambda: engine.get(query)))
    parse = us(per_second(lambda: compile_query(query, (), core.max_query_length)))
    if by_name:
        call_in = us(per_second(lambda: ap("octopus_bench", "noop", module, cq.exact_name)))
        call_out = us(per_second(lambda: ap("octopus_bench", "const_record", module,
                                            cq.exact_name)))
        prolog = rt.call("octopus_bench", "time_get", module, cq.exact_name, 200_000)
        reply = ap("octopus_store", "store_get", module, cq.exact_name)
        name, (rev, attrs) = cq.exact_name, reply
    else:
        call_in = us(per_second(lambda: ap("octopus_bench", "noop", module, cq.prolog_name,
                                           cq.prolog_constraints)))
        call_out = us(per_second(lambda: ap("octopus_bench", "const_match", module, cq.prolog_name,
                                            cq.prolog_constraints)))
        prolog = rt.call("octopus_bench", "time_first", module, cq.prolog_name,
                         cq.prolog_constraints, 2000)
        reply = ap("octopus_store", "store_first", module, cq.prolog_name,
                   cq.prolog_constraints)
        if isinstance(reply, dict):
            # Several matches: the engine picks the first in natural order in Python and
            # fetches it by name — a second call, counted in each stage.
            name = min(reply["names"], key=natural_key)
            call_in += us(per_second(lambda: ap("octopus_bench", "noop", module, name)))
            call_out += us(per_second(lambda: ap("octopus_bench", "const_record", module,
                                                 name)))
            prolog += rt.call("octopus_bench", "time_get", module, name, 200_000)
            rev, attrs = ap("octopus_store", "store_get", module, name)
        else:
            name, rev, attrs = reply
    prolog *= 1e6
    convert_out = max(call_out - call_in, 0.0)
    build = us(per_second(lambda: Record._trusted(name, decode_attributes(attrs), rev)))
    rest = max(total - parse - call_in - prolog - convert_out - build, 0.0)
    parts = [
        ("parse (cached)", parse),
        ("janus call + building the Prolog terms", call_in),
        ("Prolog: lookup, unification, constraint checks", prolog),
        ("converting the reply to Python", convert_out),
        ("building the Record", build),
        ("engine bookkeeping (lock, checks; the rest)", rest),
    ]
    rows = [[label, f"{t:.2f}", f"{100 * t / total:.0f}%"] for label, t in parts]
    rows.append(["total (measured Engine.get)", f"{total:.2f}", "100%"])
    rows.append(["Prolog share — the paper: ECLiPSe ≈ 80%", "", f"{100 * prolog / total:.0f}%"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_400_000)
    n = ap.parse_args().records
    engine = octopus.Engine()
    engine._core.store.rt.consult(Path(__file__).resolve().parent / "bench.pl")
    engine.set_many(pci_records(n), batch=10_000, progress=progress(n, "load"))
    engine.warm()
    time.sleep(0.1)
    out = []
    name = f"hw.pci.device.{n // 2}"
    out.append(table(f"One get by name ({name}), {n:,} records", ["stage", "µs", "share"],
                     breakdown(engine, name, True)))
    q = "_ { vendor: 32902, device_id: 4110 }"
    out.append(table(f"One attribute get ({q}, first of 10 matches), {n:,} records",
                     ["stage", "µs", "share"], breakdown(engine, q, False)))
    record_results("Where a get's time goes (bench/unification_overhead.py)", "\n".join(out))
    engine.close()


if __name__ == "__main__":
    main()

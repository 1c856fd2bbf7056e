"""The store at 1.4 million records (the paper's microbenchmark), side by side with a raw
janus call and a Python dict.

    .venv/bin/python bench/store.py [--records 1400000]

Measures: bulk load (time, resident memory per record), get by exact name (ops/s),
attribute queries (latency), and the cost of parsing, cached and uncached.
"""

from __future__ import annotations

import argparse
import random
import time

from common import latency, pci_records, per_second, progress, record_results, rss_bytes, table

import octopus
from octopus.query.parser import _get_parser, parse


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_400_000)
    n = ap.parse_args().records
    out = []

    # --- load ------------------------------------------------------------------------
    engine = octopus.Engine()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    engine.set_many(pci_records(n), batch=10_000, progress=progress(n, "octopus load"))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.warm()
    warm_s = time.perf_counter() - t0
    per_record = (rss_bytes() - rss0) / n

    rss1 = rss_bytes()
    t0 = time.perf_counter()
    plain = dict(pci_records(n))
    dict_s = time.perf_counter() - t0
    dict_per_record = (rss_bytes() - rss1) / n
    out.append(table(f"Loading {n:,} records", ["store", "seconds", "records/s", "bytes/record"], [
        ["octopus set_many (batches of 10,000)", f"{load_s:.1f}", f"{n / load_s:,.0f}",
         f"{per_record:,.0f}"],
        ["  + warming the clause indexes", f"{warm_s:.1f}", "", ""],
        ["Python dict of dicts", f"{dict_s:.1f}", f"{n / dict_s:,.0f}", f"{dict_per_record:,.0f}"],
    ]))

    # --- get by name ------------------------------------------------------------------
    rt = engine._core.store.rt
    module = engine._core.store.module
    name = f"hw.pci.device.{n // 2}"
    rng = random.Random(7)
    hot = [f"hw.pci.device.{rng.randrange(n)}" for _ in range(1000)]
    it = iter(range(10**12))
    octo = per_second(lambda: engine.get(name))
    octo_hot = per_second(lambda: engine.get(hot[next(it) % 1000]))
    raw = per_second(lambda: rt.janus.apply_once("octopus_store", "store_get", module,
                                                 name))
    py = per_second(lambda: plain[name])
    rows = [
        ["octopus Engine.get(name)", f"{octo:,.0f}", f"{1e6 / octo:.1f}", "1.00"],
        ["octopus Engine.get, 1,000 names rotating", f"{octo_hot:,.0f}", f"{1e6 / octo_hot:.1f}",
         f"{octo_hot / octo:.2f}"],
        ["raw janus apply_once(store_get)", f"{raw:,.0f}", f"{1e6 / raw:.1f}",
         f"{raw / octo:.2f}"],
        ["Python dict lookup", f"{py:,.0f}", f"{1e6 / py:.2f}", f"{py / octo:.0f}"],
    ]
    out.append(table(f"get by exact name, {n:,} records, one thread (target ≥ 50,000 ops/s)",
                     ["call", "ops/s", "µs/op", "× octopus"], rows))

    # --- attribute queries --------------------------------------------------------------
    queries = [
        ("_ { vendor: 32902, device_id: 4110 }", "10 matches (target ≤ 2 ms)"),
        ("_ { vendor: 32902, device_id: 65534 }", "only the last record matches"),
        ("_ { vendor: 4318, device_id: 4110 }", "no match"),
        ("_ { device_id > 65270 }", "range: scans every record with the key"),
        ("r'^hw\\.pci\\.device\\.1399999$'", "name regex: scans every record"),
    ]
    rows = []
    for q, what in queries:
        med, best = latency(lambda q=q: engine.get_names(q), n=7 if "65270" in q or "r'" in q
                            else 25)
        found = len(engine.get_names(q))
        rows.append([q, what, f"{found}", f"{med * 1e3:.3f}", f"{best * 1e3:.3f}"])
    vendor, device_id = 0x8086, 0x100E
    med, best = latency(lambda: [k for k, v in plain.items()
                                 if v["vendor"] == vendor and v["device_id"] == device_id], n=3)
    rows.append(["(Python: scan the dict for vendor and device_id)", "10 matches", "10",
                 f"{med * 1e3:.1f}", f"{best * 1e3:.1f}"])
    out.append(table(f"Attribute queries (get_names), {n:,} records",
                     ["query", "case", "found", "median ms", "best ms"], rows))

    # --- parsing ----------------------------------------------------------------------------
    text = "r'^hw\\.pci' { vendor: 0x8086, device_id > 4096, class: r'C|X', bus: _ }"
    parser = _get_parser()
    uncached = per_second(lambda: parser.parse(text), seconds=0.5)
    cached = per_second(lambda: parse(text), seconds=0.5)
    out.append(table("Parsing a 5-item query", ["path", "µs/parse", "× cached"], [
        ["cached (bounded LRU)", f"{1e6 / cached:.2f}", "1"],
        ["uncached (PLY lexer + LALR parser)", f"{1e6 / uncached:.1f}", f"{cached / uncached:.0f}"],
    ]))
    record_results("Store at scale (bench/store.py)", "\n".join(out))
    engine.close()


if __name__ == "__main__":
    main()

"""Why the ordered index lives in Python and the record in one Prolog fact: the
measurements behind docs/architecture.md, "The store in Prolog".

    .venv/bin/python bench/index_choice.py [--records 200000] [--no-record]

1. Bytes per record of record layouts in SWI-Prolog (each in a fresh ``swipl``, the
   growth of its resident set over ``--records`` facts, clause index built): the
   record fact as it was (name an atom), as it is (name a string), and what one
   per-key index fact ``Table(Hash, Name)`` cost each key of each record before.
2. Bytes per entry of the Python ordered index (tracemalloc), unique and repeated values.
3. The price of an ordered structure in the Prolog database, the only store there that
   transactions and other threads see: a B-tree node is a clause, so changing an entry
   rewrites a clause of B entries (retract + assertz), beside a change of the Python
   structure (remove + add) at 1,000,000 entries. CPU time of the calling thread.
"""

from __future__ import annotations

import argparse
import gc
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from common import record_results, table

from octopus._prolog import find_swipl_home
from octopus.ordered import KeyIndex

LAYOUTS = {
    "before: rec(Atom, Rev, Dict) + 5 per-key facts Table(Hash, Name)": "old_store",
    "rec(Atom, Rev, Dict) alone": "rec_atom",
    "now: rec(String, Rev, Dict)": "rec_string",
    "(not taken) rec(String, Rev, Values): positional values, keys once per shape":
        "rec_tuple",
}

PROLOG = r"""
rss(K) :- read_file_to_string('/proc/self/status', S, []), split_string(S, "\n", "", Ls),
    member(L, Ls), string_concat("VmRSS:", R, L), !,
    split_string(R, " ", " \tkB", P), exclude(==(""), P, [X|_]), number_string(K, X).
:- dynamic rec/3, t/2.
name(atom, I, N) :- format(atom(N), 'hw.pci.device.~d', [I]).
name(string, I, N) :- format(string(N), 'hw.pci.device.~d', [I]).
dict(I, D) :- B is I mod 256, format(string(L), "dev ~d", [I]),
    dict_pairs(D, _, [vendor-32902, device_id-I, class-"C", bus-B, label-L]).
load(rec_atom, I) :- name(atom, I, N), dict(I, D), assertz(rec(N, I, D)).
load(rec_string, I) :- name(string, I, N), dict(I, D), assertz(rec(N, I, D)).
load(rec_tuple, I) :- name(string, I, N), B is I mod 256, format(string(L), "dev ~d", [I]),
    assertz(rec(N, I, v(32902, I, "C", B, L))).
load(old_store, I) :- name(atom, I, N), dict(I, D), assertz(rec(N, I, D)),
    forall(get_dict(K, D, V), ( term_hash(V, H), T =.. [K, H, N], assertz(T) )).
:- dynamic vendor/2, device_id/2, class/2, bus/2, label/2.
probe(old_store) :- !, ignore(rec(x, _, _)),
    forall(member(K, [vendor, device_id, class, bus, label]),
           ( G1 =.. [K, 0, _], G2 =.. [K, _, x], ignore(G1), ignore(G2) )).
probe(_) :- ignore(rec(x, _, _)), ignore(rec("x", _, _)).
run(What, N) :- garbage_collect, garbage_collect_atoms, rss(R0),
    forall(between(1, N, I), load(What, I)),
    probe(What), garbage_collect, garbage_collect_atoms, rss(R1),
    B is (R1 - R0) * 1024 / N, format("~1f~n", [B]).
"""


def swipl() -> str:
    found = sorted(Path(find_swipl_home()).glob("bin/*/swipl"))
    return str(found[0])


def prolog_bytes(layout: str, n: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".pl", delete=False) as f:
        f.write(PROLOG)
    try:
        out = subprocess.run([swipl(), "-q", "-g", f"run({layout}, {n})", "-t", "halt", f.name],
                             capture_output=True, text=True, check=True, timeout=600).stdout
    finally:
        Path(f.name).unlink()
    return float(out.strip().splitlines()[-1])


def python_bytes(n: int, repeated: bool) -> float:
    names = [f"hw.pci.device.{i}" for i in range(n)]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    values = [0x8086] * n if repeated else list(range(n, 2 * n))
    index = KeyIndex.build(values, names)
    del values
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del index
    # The names are shared with the caller here; an index built from Prolog's reply
    # owns its own name strings: count them too.
    return used / n + sys.getsizeof(names[n // 2]) + 8


LEAF = r"""
:- dynamic leaf/2.
mk(B, L) :- numlist(1, B, Ns),
    maplist([I, e(I, N)]>>format(string(N), 'hw.pci.device.~d', [I]), Ns, L).
rewrite(B, Rounds) :- mk(B, L), assertz(leaf(1, L)),
    statistics(cputime, T0),
    forall(between(1, Rounds, K),
           ( retract(leaf(1, L0)), nth1(1, L0, _, Rest),
             M is B // 2, nth1(M, L1, e(K, "hw.pci.device.x"), Rest),
             assertz(leaf(1, L1)) )),
    statistics(cputime, T1),
    U is (T1 - T0) / Rounds * 1e6, format("~2f~n", [U]).
"""


def leaf_rewrite_us(b: int, rounds: int = 20000) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".pl", delete=False) as f:
        f.write(LEAF)
    try:
        out = subprocess.run([swipl(), "-q", "-g", f"rewrite({b}, {rounds})", "-t", "halt",
                              f.name], capture_output=True, text=True, check=True,
                             timeout=600).stdout
    finally:
        Path(f.name).unlink()
    return float(out.strip().splitlines()[-1])


def python_change_us(n: int = 1_000_000, rounds: int = 50000) -> float:
    names = [f"hw.pci.device.{i}" for i in range(n)]
    index = KeyIndex.build(list(range(n)), names)
    rng = random.Random(5)
    picks = [rng.randrange(n) for _ in range(rounds)]
    t0 = time.thread_time()
    for i in picks:
        index.remove(i, names[i])
        index.add(i + 1, names[i])
        index.remove(i + 1, names[i])
        index.add(i, names[i])
    return (time.thread_time() - t0) / rounds / 2 * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    n = args.records
    out = []
    rows = [[what, f"{prolog_bytes(layout, n):,.0f}"] for what, layout in LAYOUTS.items()]
    rows.append(["Python ordered index entry, unique int values (device_id)",
                 f"{python_bytes(n, repeated=False):,.0f}"])
    rows.append(["Python ordered index entry, one repeated value (vendor)",
                 f"{python_bytes(n, repeated=True):,.0f}"])
    out.append(table(f"Bytes per record, {n:,} records of 5 attributes", ["layout",
                                                                         "bytes/record"], rows))
    rows = [[f"Prolog: rewrite a B-tree node clause of {b} entries", f"{leaf_rewrite_us(b):.2f}"]
            for b in (16, 64, 256)]
    rows.append(["Python: move one entry of a 1,000,000-entry SortedPairs (remove + add)",
                 f"{python_change_us():.2f}"])
    out.append(table("Changing one entry of an ordered index (CPU µs)", ["structure", "µs"],
                     rows))
    text = "\n".join(out)
    if not args.no_record:
        record_results("Where the index lives (bench/index_choice.py)", text)


if __name__ == "__main__":
    main()

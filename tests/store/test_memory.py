"""What a growing store keeps besides its records (prolog/store.pl, store_collect/3).

SWI-Prolog rebuilds the hash index of rec/3 twice as big as the store grows and frees the
old table only in a clause garbage collection; the adapter looks for a rebuild a few
records after it is due and collects then, so no retired table outlives it for long. The
C heap is measured with glibc's mallinfo2(), in a subprocess: other engines of the test
process would have their own dirty predicates collected by the same call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys
import textwrap

import pytest

import octopus


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallinfo2")
    except OSError:
        return False


needs_glibc = pytest.mark.skipif(not _has_mallinfo2(), reason="glibc's mallinfo2 only")

MALLINFO = """
import ctypes
class MallInfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
def in_use():
    m = libc.mallinfo2()
    return m.uordblks + m.hblkhd
"""


@needs_glibc
def test_a_retired_index_is_freed_soon_after_the_rebuild() -> None:
    # 13,000 records: SWI-Prolog 9.2 rebuilt the index of names at 12,288 (8,192 -> 16,384
    # buckets); the old schedule (growth by half from 4,096) would collect next at 13,824,
    # keeping the old table (~400 KB), which a collection forced now would free.
    code = MALLINFO + textwrap.dedent("""
        import octopus
        e = octopus.Engine()
        for n in range(13_000):
            e.set("k%d { vendor: 0x8086, device_id: %d, label: 'dev %d' }" % (n, n, n))
        store = e._core.store
        before = in_use()
        store._call("store_collect")
        print(before - in_use())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    freed = int(out.stdout.split()[-1])
    assert freed < 64 << 10, f"a forced collection still freed {freed} bytes"


def test_collect_follows_the_index_and_keeps_every_record() -> None:
    engine = octopus.Engine()
    try:
        store = engine._core.store
        for n in range(5000):
            engine.set(f"k{n} {{ n: {n} }}")
        assert store._buckets > 0                 # asked once the store had 4,096
        assert store._collected_at > store.count()
        store._collect(force=True)
        assert store._collected_at > 5000
        assert engine.get("k4999").attributes == {"n": 4999}
        assert len(engine.get_names("_ { n: _ }")) == 5000
    finally:
        engine.close()

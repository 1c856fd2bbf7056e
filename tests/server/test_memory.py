"""The allocator setting of ``octopus serve`` (octopus/server/memory.py), checked in a
subprocess: it changes the whole process's malloc."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

from octopus.server.memory import tune_allocator

PROBE = textwrap.dedent("""
    import ctypes, sys
    from octopus.server.memory import tune_allocator
    class MallInfo2(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks",
                    "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "tuned":
        assert tune_allocator()
    big = libc.malloc(8 << 20)          # mapped; freeing it raises glibc's threshold
    libc.free(big)
    before = libc.mallinfo2().hblks
    block = libc.malloc(256 << 10)
    print(libc.mallinfo2().hblks - before)
    libc.free(block)
""")


def _mapped(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def _glibc() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return hasattr(ctypes.CDLL(None), "gnu_get_libc_version") and \
            hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc(), reason="glibc's mallopt and mallinfo2")
def test_large_blocks_stay_mapped_after_a_larger_one_was_freed() -> None:
    assert _mapped("default") == 0        # glibc raised its threshold: from the heap
    assert _mapped("tuned") == 1          # fixed at 128 KiB: a mapping of its own



def test_elsewhere_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert tune_allocator() is False

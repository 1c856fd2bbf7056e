"""The C allocator's settings of an ``octopus serve`` process (docs/server.md, *Memory*).

The server owns its process, so it may set what a library embedded in someone else's
must not: at start-up, before the engine stores anything, :func:`tune_allocator` fixes
glibc's mmap threshold at 128 KiB.

Why: glibc serves a request of 128 KiB or more with its own mapping, which goes back to
the system when freed, but raises that threshold to the size of every such block that is
freed (up to 32 MiB). A server handles large short-lived blocks all the time (a pipeline
of requests read at once, a batch's lists, the table of an index SWI-Prolog rebuilt
bigger), so after the first few the threshold is high and they come from the heap
instead, where each leaves free pages among the records' clauses that the process keeps.
Measured (bench/server_keys.py --memory, 100,000 records SET through ``redis-cli
--pipe``): ~40 bytes a record of resident set that only ``malloc_trim()`` would give
back; with the threshold fixed, none. What it costs: a large block is mapped and
unmapped each time (a system call and page faults for 128 KiB and more, rare beside
the requests themselves).

Elsewhere (macOS, musl) there is no such threshold or it is not glibc's: nothing is set.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["MMAP_THRESHOLD", "tune_allocator"]

#: Blocks of at least this many bytes get a mapping of their own (glibc's initial
#: default, kept fixed instead of rising).
MMAP_THRESHOLD = 128 << 10

_M_MMAP_THRESHOLD = -3      # glibc's malloc.h


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` for this process; True if it
    was set (glibc on Linux), False where there is nothing to set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        if not hasattr(libc, "gnu_get_libc_version"):   # musl: its mallopt does nothing
            return False
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))

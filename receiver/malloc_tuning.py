"""Keeping freed memory for reuse: glibc's malloc thresholds for the receiver's process.

By default glibc gives a block of more than 128 kB its own ``mmap`` (the
threshold grows with what is freed, up to 32 MB) and hands free memory at
the top of a heap back to the kernel. A receiver allocates a ZeroMQ message
per frame and frees it once written, so frames of a few MB are mapped,
faulted in page by page and unmapped again, frame after frame; on a virtual
machine that reports free memory to its host, every page is a host fault as
well. With blocks up to 32 MB served from malloc's heaps and freed memory
kept, the next frame reuses the pages of the one before (2 MB frames with
writing, 1 worker: 1 260 -> 1 400 frames/s, medians of 7 alternating runs;
without writing and at 20 kB no change beyond the spread).
The price: after a series the process keeps up to ``keep_bytes`` of memory
its bounded queues no longer use.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024**2


def keep_freed_memory(keep_bytes: int) -> bool:
    """Serve blocks up to 32 MB from the heaps and keep up to ``keep_bytes`` freed.

    Process-wide, as Python's switch interval is. False where the C library
    has no ``mallopt`` that takes the values (not glibc): nothing changes.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) != 1:
        return False
    trim_set: int = mallopt(M_TRIM_THRESHOLD, min(keep_bytes, 2**31 - 1))
    return trim_set == 1

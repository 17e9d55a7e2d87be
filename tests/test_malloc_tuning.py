"""The receiver's malloc thresholds, checked with glibc's own accounting in a fresh process."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import ctypes, sys
from receiver.malloc_tuning import keep_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "tuned":
    assert keep_freed_memory(256 * 1024**2)
block = libc.malloc(8 * 1024**2)
mapped = libc.mallinfo2().hblkhd
libc.free(block)
print(mapped >= 8 * 1024**2, libc.mallinfo2().arena >= 8 * 1024**2)
"""


def _probe(mode: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_a_frame_sized_block_comes_from_the_heap_and_stays_for_the_next():
    assert _probe("tuned") == "False True"


def test_without_it_glibc_maps_the_block_and_unmaps_it_when_freed():
    assert _probe("default") == "True False"

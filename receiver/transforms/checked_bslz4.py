"""Decompress a bslz4 chunk that came off the wire, without trusting it.

bitshuffle decodes each block with LZ4's unchecked decoder, which takes the
block sizes in the chunk at their word: a truncated chunk or a damaged size
field crashes the whole process (segmentation fault) instead of raising.
Walking the block sizes first (1 210 blocks in a Pilatus 2M frame: 0.1 ms)
turns those cases into an error about that one frame. Damage inside a block
that breaks LZ4's commands is caught by bitshuffle (a RuntimeError); damaged
literal bytes decode to wrong pixels unnoticed, as the format has no checksum.
The same check belongs in ``receiver.protocols.bslz4.decompress``, which the
live view calls on wire chunks too.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from receiver.model import Buffer
from receiver.protocols import bslz4

BLOCK_SIZE = struct.Struct(">I")
BLOCKED_MULT = 8
"""bitshuffle compresses whole multiples of 8 elements; up to 7 trailing ones are copied raw."""


def decompress(chunk: Buffer, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Decompress one filter-32008 chunk; raise ValueError naming what is wrong with it."""
    dtype = np.dtype(dtype)
    check_blocks(chunk, math.prod(shape), dtype.itemsize)
    try:
        return bslz4.decompress(chunk, shape, dtype)
    except RuntimeError as exc:
        raise ValueError(f"bslz4 chunk is corrupt: bitshuffle reports {exc.args[0]}") from None


def check_blocks(chunk: Buffer, count: int, itemsize: int) -> None:
    """Check that the chunk's blocks add up to exactly its length for ``count`` elements."""
    nbytes, block_bytes = bslz4.read_header(chunk)
    if nbytes != count * itemsize:
        raise ValueError(f"bslz4 chunk holds {nbytes} bytes but the frame needs {count * itemsize}")
    if block_bytes == 0 or block_bytes % (itemsize * BLOCKED_MULT):
        raise ValueError(
            f"bslz4 block size {block_bytes} bytes is not a multiple of 8 elements of {itemsize} bytes"
        )
    full, rest = divmod(count, block_bytes // itemsize)
    blocks = full + (rest >= BLOCKED_MULT)
    raw_tail = count % BLOCKED_MULT * itemsize
    length = len(memoryview(chunk).cast("B"))
    position = bslz4.HEADER_SIZE
    for index in range(blocks):
        if position + BLOCK_SIZE.size > length:
            raise ValueError(f"bslz4 chunk ends in block {index} of {blocks} ({length} bytes)")
        position += BLOCK_SIZE.size + BLOCK_SIZE.unpack_from(chunk, position)[0]
    if position + raw_tail != length:
        raise ValueError(
            f"bslz4 chunk is {length} bytes but its {blocks} blocks"
            f" and {raw_tail} raw bytes make {position + raw_tail}"
        )

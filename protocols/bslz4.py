"""Bitshuffle-LZ4 chunks in the layout of HDF5 filter 32008.

A chunk is a 12-byte header (uint64 big-endian uncompressed byte count, uint32
big-endian block size in bytes) followed by the bitshuffle+LZ4 blocks. The
``bitshuffle`` wheel produces and consumes the blocks only, so the header is
added and checked here. Chunks in this layout go to HDF5 unchanged with a
direct chunk write.
"""

from __future__ import annotations

import struct

import bitshuffle
import numpy as np

from protocols._bslz4 import ffi, lib

HEADER = struct.Struct(">QI")
HEADER_SIZE = HEADER.size
HDF5_FILTER_ID = 32008
DEFAULT_BLOCK_BYTES = 8192
BLOCKED_MULT = 8
"""bitshuffle compresses whole multiples of 8 elements; up to 7 trailing ones are copied raw."""


def block_elements(itemsize: int) -> int:
    """The block size bitshuffle picks by default, in elements (a multiple of 8)."""
    return max(8, (DEFAULT_BLOCK_BYTES // itemsize) // 8 * 8)


def compress(array: np.ndarray) -> bytes:
    """Compress ``array`` into one filter-32008 chunk (header included)."""
    array = np.ascontiguousarray(array)
    block = block_elements(array.dtype.itemsize)
    blocks: np.ndarray = bitshuffle.compress_lz4(array.reshape(-1), block)
    return HEADER.pack(array.nbytes, block * array.dtype.itemsize) + blocks.tobytes()


def read_header(chunk: bytes | memoryview) -> tuple[int, int]:
    """Return (uncompressed byte count, block size in bytes) of a chunk."""
    if len(chunk) < HEADER_SIZE:
        raise ValueError(f"bslz4 chunk of {len(chunk)} bytes is shorter than its 12-byte header")
    return HEADER.unpack_from(chunk)


def decompress(chunk: bytes | memoryview, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Decompress one filter-32008 chunk into an array of ``shape`` and ``dtype``.

    The chunk may come straight off the wire, so its block structure is
    checked first (:func:`check_blocks`): bitshuffle decodes each block with
    LZ4's unchecked decoder and takes the sizes in the chunk at their word, so
    a truncated chunk or a damaged size field would crash the whole process
    (segmentation fault) instead of raising. Raises ``ValueError`` naming what
    is wrong with the chunk.
    """
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    block_bytes = check_blocks(chunk, count, dtype.itemsize)
    payload = np.frombuffer(chunk, dtype=np.uint8, offset=HEADER_SIZE)
    try:
        flat: np.ndarray = bitshuffle.decompress_lz4(
            payload, (count,), dtype, block_bytes // dtype.itemsize
        )
    except RuntimeError as exc:
        raise ValueError(f"bslz4 chunk is corrupt: bitshuffle reports {exc.args[0]}") from None
    return flat.reshape(shape)


def check_blocks(chunk: bytes | memoryview, count: int, itemsize: int) -> int:
    """Check that the chunk's blocks add up to exactly its length; return the block size.

    The walk over the block sizes is in C (``protocols._bslz4``; a Python
    loop cost 25 us per 1 MB frame). Damaged literal bytes inside a block
    still decode to wrong pixels unnoticed: the format has no checksum.
    """
    nbytes, block_bytes = read_header(chunk)
    if nbytes != count * itemsize:
        raise ValueError(
            f"bslz4 chunk announces {nbytes} bytes but the frame needs {count * itemsize}"
        )
    if block_bytes == 0 or block_bytes % (itemsize * BLOCKED_MULT):
        raise ValueError(
            f"bslz4 block size {block_bytes} bytes is not a multiple of 8 elements of {itemsize} bytes"
        )
    full, rest = divmod(count, block_bytes // itemsize)
    blocks = full + (rest >= BLOCKED_MULT)
    raw_tail = count % BLOCKED_MULT * itemsize
    length = len(memoryview(chunk).cast("B"))
    position = lib.bslz4_blocks_end(ffi.from_buffer(chunk), length, blocks)
    if position < 0:
        raise ValueError(f"bslz4 chunk ends in block {-position - 1} of {blocks} ({length} bytes)")
    if position + raw_tail != length:
        raise ValueError(
            f"bslz4 chunk is {length} bytes but its {blocks} blocks"
            f" and {raw_tail} raw bytes make {position + raw_tail}"
        )
    return block_bytes

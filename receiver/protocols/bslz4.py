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

HEADER = struct.Struct(">QI")
HEADER_SIZE = HEADER.size
HDF5_FILTER_ID = 32008
DEFAULT_BLOCK_BYTES = 8192


def block_elements(itemsize: int) -> int:
    """The block size bitshuffle picks by default, in elements (a multiple of 8)."""
    return max(8, (DEFAULT_BLOCK_BYTES // itemsize) // 8 * 8)


def compress(array: np.ndarray) -> bytes:
    """Compress ``array`` into one filter-32008 chunk (header included)."""
    array = np.ascontiguousarray(array)
    block = block_elements(array.dtype.itemsize)
    blocks = bitshuffle.compress_lz4(array.reshape(-1), block)
    return HEADER.pack(array.nbytes, block * array.dtype.itemsize) + blocks.tobytes()


def read_header(chunk: bytes | memoryview) -> tuple[int, int]:
    """Return (uncompressed byte count, block size in bytes) of a chunk."""
    if len(chunk) < HEADER_SIZE:
        raise ValueError(f"bslz4 chunk of {len(chunk)} bytes is shorter than its 12-byte header")
    return HEADER.unpack_from(chunk)


def decompress(chunk: bytes | memoryview, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Decompress one filter-32008 chunk into an array of ``shape`` and ``dtype``."""
    dtype = np.dtype(dtype)
    nbytes, block_bytes = read_header(chunk)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes != expected:
        raise ValueError(
            f"bslz4 chunk holds {nbytes} bytes but shape {list(shape)} of {dtype} needs {expected}"
        )
    payload = np.frombuffer(chunk, dtype=np.uint8, offset=HEADER_SIZE)
    flat = bitshuffle.decompress_lz4(
        payload, (nbytes // dtype.itemsize,), dtype, block_bytes // dtype.itemsize
    )
    return flat.reshape(shape)

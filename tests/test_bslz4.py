"""bslz4 chunks from the wire: the C walk over their blocks against a plain Python reference."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from protocols import bslz4


def reference_blocks_end(chunk: bytes, blocks: int) -> int:
    """The block walk written plainly: -(i + 1) when block i's size field is cut off."""
    position = bslz4.HEADER_SIZE
    for index in range(blocks):
        if position + 4 > len(chunk):
            return -(index + 1)
        position += 4 + struct.unpack_from(">I", chunk, position)[0]
    return position


def chunk_of(shape: tuple[int, ...], dtype: str) -> bytes:
    pixels = np.random.default_rng(7).poisson(2.0, size=shape).astype(dtype)
    return bslz4.compress(pixels)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((1065, 1030), "uint16"), ((100, 103), "uint32"), ((7,), "uint8"), ((61, 3), "float32")],
)
@pytest.mark.parametrize("cut", [0, 1, 13, 500, 5000])
def test_c_block_walk_matches_the_reference(shape, dtype, cut) -> None:
    chunk = chunk_of(shape, dtype)
    chunk = chunk[: max(bslz4.HEADER_SIZE, len(chunk) - cut)]
    itemsize = np.dtype(dtype).itemsize
    block = bslz4.block_elements(itemsize)
    count = int(np.prod(shape))
    blocks = count // block + (count % block >= 8)
    expected = reference_blocks_end(chunk, blocks)
    assert bslz4.lib.bslz4_blocks_end(bslz4.ffi.from_buffer(chunk), len(chunk), blocks) == expected


def test_an_intact_chunk_passes_and_decompresses() -> None:
    chunk = chunk_of((100, 103), "uint32")
    assert bslz4.check_blocks(chunk, 100 * 103, 4) == bslz4.block_elements(4) * 4
    assert bslz4.decompress(chunk, (100, 103), "uint32").shape == (100, 103)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda c: c[: len(c) // 2], "ends in block|blocks and 0 raw bytes make"),
        (lambda c: c[:12] + b"\xff\xff\xff\x00" + c[16:], "ends in block|blocks and 0 raw bytes"),
        (lambda c: c + b"\x00", "blocks and 0 raw bytes make"),
        (lambda c: c[:4], "shorter than its 12-byte header"),
    ],
)
def test_damaged_chunks_raise_instead_of_crashing(damage, reason) -> None:
    chunk = damage(chunk_of((200, 200), "uint16"))
    with pytest.raises(ValueError, match=reason):
        bslz4.decompress(chunk, (200, 200), "uint16")

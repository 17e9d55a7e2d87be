"""Andor's ``Mono12Packed``: two 12-bit pixels in three bytes, high bits first.

Pixels A (left) and B share bytes b0 b1 b2 as ``A = b0 << 4 | (b1 & 0xF)``
and ``B = b2 << 4 | b1 >> 4``; a row of odd width ends with its last pixel
in two bytes (research notes on Andor SDK3, section 2.6). It is GigE
Vision's older Mono12Packed, not GenICam's Mono12p (``mono12p``, the ORCA's),
whose nibbles sit the other way. On the wire (STINS compression
``mono12packed``) a frame is its rows one after the other, without the
camera's row padding.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def row_bytes(width: int) -> int:
    """Bytes of a packed row of ``width`` pixels."""
    return (3 * width + 1) // 2


def unpack_rows(rows: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint16]:
    """(height, bytes per row) packed rows, padding after ``row_bytes(width)`` ignored, as
    a (height, width) uint16 image."""
    height = rows.shape[0]
    pairs = width // 2
    image = np.empty((height, width), dtype=np.uint16)
    if pairs:
        triples = rows[:, : 3 * pairs].reshape(height, pairs, 3).astype(np.uint16)
        image[:, 0 : 2 * pairs : 2] = (triples[..., 0] << 4) | (triples[..., 1] & 0xF)
        image[:, 1 : 2 * pairs : 2] = (triples[..., 2] << 4) | (triples[..., 1] >> 4)
    if width % 2:
        last = rows[:, 3 * pairs : 3 * pairs + 2].astype(np.uint16)
        image[:, -1] = (last[:, 0] << 4) | (last[:, 1] & 0xF)
    return image

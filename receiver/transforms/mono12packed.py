"""Andor ``Mono12Packed`` frames (compression 'mono12packed') to uint16 pixels.

The layout is in ``protocols/mono12packed.py``: the rows of the frame one
after the other, each ``(3 * width + 1) // 2`` bytes.
"""

from __future__ import annotations

import numpy as np

from protocols import mono12packed
from protocols.errors import MalformedMessage
from protocols.model import Image


def decode(image: Image) -> np.ndarray:
    """The frame's pixels as a uint16 array of the frame's announced (height, width)."""
    if image.compression != "mono12packed":
        raise MalformedMessage(
            f"mono12packed: the frame's compression is {image.compression!r}, not 'mono12packed'"
        )
    if len(image.shape) != 2:
        raise MalformedMessage(f"mono12packed: a frame is [height, width], not {list(image.shape)}")
    height, width = image.shape
    packed = np.frombuffer(image.data, dtype=np.uint8)
    expected = height * mono12packed.row_bytes(width)
    if packed.size != expected:
        raise MalformedMessage(
            f"mono12packed: {packed.size} bytes, but {height} rows of {width} pixels pack "
            f"into {expected}"
        )
    return mono12packed.unpack_rows(packed.reshape(height, -1), width)

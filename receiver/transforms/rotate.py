"""Rotation by quarter turns, for detectors mounted rotated (CoSAXS's L-shaped Pilatus 2M).

Counter-clockwise by ``k`` * 90 degrees in the plane of the last two axes, as
``numpy.rot90(frame, k)``: a stack of module images (K, H, W) turns each module.
The result is a view; the pipeline makes it contiguous only when it encodes.
"""

from __future__ import annotations

import numpy as np


def rotate(frame: np.ndarray, k: int) -> np.ndarray:
    """``frame`` turned ``k`` quarter turns counter-clockwise (negative ``k``: clockwise)."""
    return np.rot90(frame, k, axes=(-2, -1))

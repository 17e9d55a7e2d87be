"""Synthetic detector frames whose pixels are a function of the frame number.

A test or the benchmark can recompute any frame from its number alone, so it
can prove that the frame stored under a number is the one sent under it. The
content is a fixed low-count Poisson background (what a photon-counting
detector sees at low flux, so bslz4 compresses it as it compresses real data)
plus the frame number in every pixel, so consecutive frames differ everywhere.
The background is made once per (shape, dtype); a frame then costs one
vectorised add, cheap enough for 20 MB frames at the benchmark's rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from protocols import bslz4

BACKGROUND_SEED = 20_240_601
BACKGROUND_MEAN_COUNTS = 0.5
CHANNEL_STEP = 100


def synthetic_frame(
    frame: int, shape: Sequence[int], dtype: npt.DTypeLike, channel: int = 0
) -> np.ndarray:
    """Frame ``frame``: the shared background plus the frame number (wrapping for integers).

    Channel (threshold) ``channel`` of a multi-threshold frame adds
    ``channel * CHANNEL_STEP`` more, so every plane says which one it is.
    A new array every call, so it can be handed to ZeroMQ without copying and
    never be changed while a send is still in flight.
    """
    dtype = np.dtype(dtype)
    background = _background(tuple(int(n) for n in shape), dtype)
    pixels: np.ndarray = np.add(
        background, _offset(frame + channel * CHANNEL_STEP, dtype), dtype=dtype
    )
    return pixels


def encoded_frame(
    frame: int, shape: Sequence[int], dtype: npt.DTypeLike, compression: str, channel: int = 0
) -> memoryview:
    """The image blob of frame ``frame``: raw C-order pixels or one bslz4 chunk.

    Not cached: every frame differs, and a cache of 20 MB blobs would hold
    gigabytes for no hit.
    """
    pixels = synthetic_frame(frame, shape, dtype, channel)
    if compression == "bslz4":
        return memoryview(bslz4.compress(pixels))
    if compression != "none":
        raise ValueError(f"unknown compression {compression!r} (expected none or bslz4)")
    return pixels.data.cast("B")


@lru_cache(maxsize=4)
def _background(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Seeded, so every process (generator, test, benchmark) computes the same pixels.

    Read-only, because it is shared by every frame of that shape and dtype.
    """
    counts = np.random.default_rng(BACKGROUND_SEED).poisson(BACKGROUND_MEAN_COUNTS, size=shape)
    background = counts.astype(dtype)
    background.setflags(write=False)
    return background


def _offset(frame: int, dtype: np.dtype) -> np.generic:
    """The frame number as a scalar of ``dtype``, wrapped into its range for integer types.

    Wrapping here (instead of letting the conversion overflow) keeps any frame
    number valid for any pixel type; the add itself then wraps per pixel.
    """
    if dtype.kind == "f":
        value: np.generic = dtype.type(frame)
        return value
    info = np.iinfo(dtype)
    span = int(info.max) - int(info.min) + 1
    wrapped: np.generic = dtype.type((frame - int(info.min)) % span + int(info.min))
    return wrapped

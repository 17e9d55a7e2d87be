"""Masking a rectangle of pixels (a beam stop, a hot region) with a fixed value."""

from __future__ import annotations

from typing import Literal

import numpy as np

from protocols.errors import MalformedMessage

MaskValue = int | float | Literal["max"]


def mask(
    frame: np.ndarray, x: int, y: int, width: int, height: int, value: MaskValue
) -> np.ndarray:
    """``frame`` with columns ``x .. x+width-1`` of rows ``y .. y+height-1`` set to ``value``.

    The rectangle must lie inside the frame: a rectangle that numpy would
    silently cut down usually means a configuration made for another detector
    or orientation. A frame decoded straight from the message is read-only
    (its buffer is the message's), so it is copied; anything a transform made
    is masked in place.
    """
    rows, columns = frame.shape[-2:]
    if x + width > columns or y + height > rows:
        raise MalformedMessage(
            f"mask: the rectangle x {x}..{x + width - 1}, y {y}..{y + height - 1}"
            f" does not fit in a frame of {columns} x {rows} pixels"
        )
    fill = fill_value(value, frame.dtype)
    if not frame.flags.writeable:
        frame = frame.copy()
    frame[..., y : y + height, x : x + width] = fill
    return frame


def fill_value(value: MaskValue, dtype: np.dtype) -> np.generic:
    """``value`` in ``dtype`` (``"max"``: the type's largest value, the Dectris mark for bad pixels)."""
    scalar: np.generic
    if value == "max":
        scalar = dtype.type((np.iinfo if dtype.kind in "iu" else np.finfo)(dtype).max)
        return scalar
    if dtype.kind == "f":
        scalar = dtype.type(value)
        return scalar
    if isinstance(value, float) and not value.is_integer():
        raise MalformedMessage(f"mask: value {value} cannot be stored in a {dtype} frame")
    try:
        scalar = dtype.type(int(value))
        return scalar
    except OverflowError:
        raise MalformedMessage(f"mask: value {value} does not fit in a {dtype} frame") from None

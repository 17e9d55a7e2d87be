"""The full image of a multi-module frame, from its planes and where each goes.

A multi-module detector's frame travels as a stack of planes, one per
module (the modules' own streams, and the receiver's forwarded stream by
default); the header says where each plane goes. This is the one place that
turns and places planes, for the receiver's live view and for any consumer
of a forwarded stack: plane k is turned ``rotation`` quarter turns
counter-clockwise (as ``numpy.rot90``) and its first row and column land at
row ``y``, column ``x`` of the full image; what no plane covers keeps the
fill value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols import bslz4
from protocols.errors import MalformedMessage
from protocols.model import StackedImage

LAYOUT_KEY = "module_layout"
"""Header metadata of a forwarded stack: ``full_shape``, ``fill_value`` and ``modules``
(each ``name``, ``x``, ``y`` and ``rotation`` in degrees, as module headers give it)."""


@dataclass(frozen=True, slots=True)
class PlanePlace:
    name: str
    x: int
    y: int
    quarter_turns: int


@dataclass(frozen=True, slots=True)
class StackLayout:
    full_shape: tuple[int, int]
    fill_value: int | float | str
    """A number, or ``"max"``: the largest value of the pixel type (the Dectris mark for gaps)."""
    planes: tuple[PlanePlace, ...]


def place(full: np.ndarray, plane: np.ndarray, x: int, y: int, quarter_turns: int) -> None:
    """Turn ``plane`` and copy it into ``full`` at row ``y``, column ``x`` (clipped at the edge)."""
    turned = np.rot90(plane, quarter_turns)
    region = full[y:, x:][: turned.shape[0], : turned.shape[1]]
    region[...] = turned[: region.shape[0], : region.shape[1]]


def assemble(planes: Sequence[np.ndarray], layout: StackLayout) -> np.ndarray:
    """The full image: every plane turned and placed, the rest the fill value."""
    if len(planes) != len(layout.planes):
        raise ValueError(f"{len(planes)} planes for a layout of {len(layout.planes)} modules")
    dtype = planes[0].dtype
    fill = layout.fill_value
    if fill == "max":
        fill = np.iinfo(dtype).max if dtype.kind in "iu" else np.finfo(dtype).max
    full = np.full(layout.full_shape, fill, dtype=dtype)
    for plane, where in zip(planes, layout.planes, strict=True):
        place(full, plane, where.x, where.y, where.quarter_turns)
    return full


def assemble_image(image: StackedImage, layout: StackLayout) -> np.ndarray:
    """The full image of a forwarded stack: each plane decoded ('none' or 'bslz4'), placed."""
    plane_shape = image.shape[1:]
    planes = []
    for chunk in image.chunks():
        if image.compression == "bslz4":
            planes.append(bslz4.decompress(chunk, plane_shape, image.dtype))
        elif image.compression == "none":
            planes.append(np.frombuffer(chunk, image.dtype).reshape(plane_shape))
        else:
            raise ValueError(f"a stack in {image.compression!r} cannot be assembled")
    return assemble(planes, layout)


def layout_from_meta(meta: Mapping[str, Any]) -> StackLayout:
    """A forwarded header's ``module_layout``; MalformedMessage saying what is wrong."""
    layout = meta.get(LAYOUT_KEY)
    try:
        rows, columns = (int(n) for n in layout["full_shape"])  # type: ignore[index]
        fill = layout["fill_value"]  # type: ignore[index]
        planes = tuple(
            PlanePlace(str(m["name"]), int(m["x"]), int(m["y"]), int(m["rotation"]) // 90 % 4)
            for m in layout["modules"]  # type: ignore[index]
        )
    except (TypeError, KeyError, ValueError) as exc:
        raise MalformedMessage(
            f"header: {LAYOUT_KEY} must give full_shape, fill_value and modules (name, x, y, "
            f"rotation), got {layout!r:.200} ({type(exc).__name__}: {exc})"
        ) from None
    if not (isinstance(fill, int | float) or fill == "max"):
        raise MalformedMessage(
            f"header: {LAYOUT_KEY}.fill_value must be a number or 'max', got {fill!r}"
        )
    return StackLayout((rows, columns), fill, planes)

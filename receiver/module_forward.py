"""A multi-module frame forwarded as the stack of its modules' chunks, as they came.

Assembling the full image costs a decode of every module and an encode of
the whole (bslz4): at ForMAX's 500 frames/s of four 512 x 1536 modules that
is more than the forwarder's thread can do on a DCU-class machine
(docs/lambda.md#the-forwarded-stream). Forwarding the stack costs nothing:
one STINS image whose ``shape`` is [K, H, W] with ``chunks`` [1, H, W] and
one part per module, each the buffer ZeroMQ received it in - the form the
module streams themselves use, and the one multi-threshold frames have. The
series' header tells where each plane goes (``module_layout``), so a
consumer assembles what it needs, when it needs it
(``protocols.module_stack``).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np

from protocols import stins
from protocols.model import Buffer, ModuleLayout, SeriesStart
from protocols.module_stack import LAYOUT_KEY
from receiver.assembly import fill_of
from receiver.stream_items import ModuleImage
from receiver.transforms.pipeline import encode


def layout_meta(layout: ModuleLayout) -> dict[str, Any]:
    return {
        "full_shape": list(layout.full_shape),
        "fill_value": layout.fill_value,
        "modules": [
            {"name": m.name, "x": m.x, "y": m.y, "rotation": m.rotation % 4 * 90}
            for m in layout.modules
        ],
    }


def stacked_header(start: SeriesStart, number: int) -> list[Buffer]:
    """The series' header, its metadata telling where each plane of the stack goes."""
    if start.modules is None:
        return stins.encode(start, number)
    meta = {**start.meta, LAYOUT_KEY: layout_meta(start.modules)}
    return stins.encode(replace(start, meta=meta), number)


def stacked_image(image: ModuleImage, number: int) -> list[Buffer]:
    """One STINS image of the modules' chunks; a module that sent nothing is a filled plane.

    Raises ValueError when a filled plane cannot be made (a fill value the type cannot hold).
    """
    plane_shape = tuple(image.shape[1:])
    chunks: list[Buffer] = [
        _filled(image, plane_shape) if chunk is None else chunk for chunk in image.chunks()
    ]
    fields = {k: v for k, v in image.fields.items() if k not in _OWN_FIELDS}
    if image.discard:
        fields["discard"] = True
    parts = stins.encode_image(
        number,
        image.frame,
        chunks[0],
        [len(chunks), *plane_shape],
        image.dtype,
        image.compression,
        chunks=[1, *plane_shape],
        **fields,
    )
    return [*parts, *chunks[1:]]


def _filled(image: ModuleImage, plane_shape: tuple[int, ...]) -> Buffer:
    fill = fill_of(image.layout, image.dtype).item() if image.layout else 0
    return _filled_plane(plane_shape, image.dtype.str, fill, image.compression)


_OWN_FIELDS = frozenset(
    {"htype", "msg_number", "frame", "shape", "type", "compression", "chunks", "discard"}
)


@lru_cache(maxsize=4)
def _filled_plane(
    shape: tuple[int, ...], dtype: str, fill: int | float, compression: str
) -> Buffer:
    return encode(np.full(shape, fill, dtype=np.dtype(dtype)), compression)

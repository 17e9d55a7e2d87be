"""The full image of a multi-module detector, assembled from its modules' planes.

Files keep every module as it came (``receiver/nexus.py``); the live view and
the forwarder show what a user expects to see: one image in which each module
is turned and placed where it sits on the detector, the gaps between modules
(and a module that sent nothing) filled with the layout's fill value. It runs
on demand (live view) or in the forwarder's own thread, never on the path to
the file.
"""

from __future__ import annotations

import numpy as np

from protocols import bslz4, module_stack
from protocols.model import Buffer, Image, ModuleLayout
from receiver.stream_items import ModuleImage
from receiver.transforms.mask import fill_value
from receiver.transforms.pipeline import encode


def assemble(image: ModuleImage) -> np.ndarray:
    """The full image of ``image``: each module decoded, turned, placed; gaps filled.

    Raises ValueError when a chunk cannot be decoded or the fill value does
    not fit the pixel type.
    """
    layout = _layout(image)
    full = np.full(layout.full_shape, fill_of(layout, image.dtype), dtype=image.dtype)
    plane_shape = image.shape[1:]
    for placement, chunk in zip(layout.modules, image.chunks(), strict=True):
        if chunk is None:
            continue
        pixels = _decode(chunk, plane_shape, image)
        module_stack.place(full, pixels, placement.x, placement.y, placement.rotation)
    return full


def assembled(image: ModuleImage) -> Image:
    """The full image as one frame in the modules' compression ('none' or 'bslz4')."""
    full = assemble(image)
    return Image(
        seq=image.seq,
        frame=image.frame,
        shape=full.shape,
        dtype=full.dtype,
        compression=image.compression,
        data=encode(full, image.compression),
        discard=image.discard,
        fields=image.fields,
    )


def fill_of(layout: ModuleLayout, dtype: np.dtype) -> np.generic:
    """The layout's fill value in ``dtype``; ValueError when it does not fit."""
    try:
        return fill_value(layout.fill_value, dtype)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"fill_value: {exc}") from None


def _layout(image: ModuleImage) -> ModuleLayout:
    if image.layout is None:
        raise ValueError(f"frame {image.frame} carries no module layout")
    return image.layout


def _decode(chunk: Buffer, shape: tuple[int, ...], image: ModuleImage) -> np.ndarray:
    if image.compression == "bslz4":
        return bslz4.decompress(chunk, shape, image.dtype)
    if image.compression == "none":
        expected = int(np.prod(shape)) * image.dtype.itemsize
        if memoryview(chunk).nbytes != expected:
            raise ValueError(
                f"frame {image.frame}: a module's plane has {memoryview(chunk).nbytes} bytes, "
                f"{expected} expected"
            )
        return np.frombuffer(chunk, dtype=image.dtype).reshape(shape)
    raise ValueError(f"frame {image.frame}: compression {image.compression!r} cannot be assembled")

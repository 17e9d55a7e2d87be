"""A chain of transforms applied to one frame: decode once, transform, encode once.

Each transform works on a numpy array. Decoding the message's blob and
encoding the result happen once per frame whatever the chain's length: on a
Pilatus 2M a bslz4 round trip (2 to 3 ms) costs as much as most transforms.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from protocols import bslz4
from protocols.errors import MalformedMessage
from protocols.model import Buffer, Image

Step = Callable[[np.ndarray], np.ndarray]
Decoder = Callable[[Image], np.ndarray]


def pixels(image: Image) -> np.ndarray:
    """The pixels of a 'none' or 'bslz4' frame; read-only when they are the message's buffer."""
    if image.compression == "none":
        length = memoryview(image.data).nbytes
        if length != image.nbytes:
            raise MalformedMessage(
                f"{length} bytes, but shape {list(image.shape)} of {image.dtype}"
                f" needs {image.nbytes}"
            )
        frame = np.frombuffer(image.data, dtype=image.dtype).reshape(image.shape)
        frame.flags.writeable = False
        return frame
    if image.compression == "bslz4":
        try:
            return bslz4.decompress(image.data, image.shape, image.dtype)
        except ValueError as exc:
            raise MalformedMessage(str(exc)) from None
    raise MalformedMessage(
        f"compression {image.compression!r} needs its decoding transform"
        " ('cbf', 'mono12p' or 'mono12packed') first in the pipeline"
    )


def encode(frame: np.ndarray, compression: str) -> Buffer:
    """The blob of ``frame`` in ``compression`` ('none' or 'bslz4')."""
    if compression == "bslz4":
        return bslz4.compress(frame)
    return np.ascontiguousarray(frame).data.cast("B")


class Pipeline:
    """``Image -> Image``: decode, apply ``steps`` in order, encode.

    ``decoder`` reads a frame's wire format (default: 'none' or 'bslz4');
    ``compression`` is the output's ('none' or 'bslz4'; default: the input's).
    A frame that cannot be transformed raises :class:`MalformedMessage` with
    the frame's ``seq`` and number, so a worker can hand it on as malformed.
    """

    def __init__(
        self,
        steps: Sequence[Step],
        decoder: Decoder = pixels,
        compression: str | None = None,
    ) -> None:
        self._steps = tuple(steps)
        self._decoder = decoder
        self._compression = compression

    def __call__(self, image: Image) -> Image:
        try:
            frame = self._decoder(image)
            for step in self._steps:
                frame = step(frame)
        except MalformedMessage as exc:
            raise MalformedMessage(
                f"frame {image.frame}: {exc.reason}", seq=image.seq, series=image.series
            ) from None
        compression = self._compression or image.compression
        return dataclasses.replace(
            image,
            shape=frame.shape,
            dtype=frame.dtype,
            compression=compression,
            data=encode(frame, compression),
        )

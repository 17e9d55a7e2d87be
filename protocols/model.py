"""The frame model every wire protocol is parsed into and encoded from.

Senders (simulators, streamers) build these and encode them with a protocol
module; the receiver's workers parse messages into them, the collector
orders them by ``seq``, the writer and the forwarder consume them. ``seq`` is
the position of the message in its stream (STINS ``msg_number``), the only
ordering key the collector needs.

Protocols without a stream-wide number (Dectris stream v1/v2, SLS) number
their messages per series instead: ``series`` names the series (the
detector's series id) and ``seq`` is the position inside it - 0 for the
header, ``frame + 1`` for frame ``frame`` - while a series end, whose position
nobody announces, has ``seq`` -1 (see ``receiver/series_reorder.py``). STINS
leaves ``series`` at None.

A multi-module detector (XSpectrum Lambda: one STINS stream per module) has
its header carry a :class:`ModuleLayout` (``SeriesStart.modules``): where
each module's plane goes in the full image.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Buffer = bytes | memoryview


@dataclass(slots=True)
class SeriesStart:
    """A series begins: open ``filename`` (empty = live view only, nothing saved)."""

    seq: int
    filename: str
    meta: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    series: Hashable | None = None
    frames: int | None = None
    """Frames the series will have, when the header announces it (per-series protocols)."""
    modules: ModuleLayout | None = None
    """Multi-module detectors: where each module's plane goes in the full image."""
    module_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Multi-module detectors: header metadata of a module that differs from ``meta``, by name."""


@dataclass(slots=True)
class Image:
    """One frame as it came off the wire; ``data`` is never copied or decompressed here."""

    seq: int
    frame: int
    shape: tuple[int, ...]
    dtype: np.dtype
    compression: str
    data: Buffer
    discard: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    series: Hashable | None = None

    @property
    def nbytes(self) -> int:
        """Size of the decompressed frame in bytes."""
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(slots=True)
class StackedImage(Image):
    """A frame of several planes along its first axis, each its own chunk as it came.

    The thresholds of a Dectris stream v2 frame come as one compressed chunk
    each; they cannot be merged without decompressing, so they are stored as
    the chunks of ``shape[0]`` planes of ``shape[1:]``. ``data`` holds the
    chunks back to back and ``chunk_sizes`` their byte lengths, so sizes add up
    like those of any frame.
    """

    chunk_sizes: tuple[int, ...] = ()

    def chunks(self) -> list[memoryview]:
        """One buffer per plane, without copying."""
        view = memoryview(self.data).cast("B")
        out, start = [], 0
        for size in self.chunk_sizes:
            out.append(view[start : start + size])
            start += size
        return out


@dataclass(frozen=True, slots=True)
class ModulePlacement:
    """One module of a multi-module detector and where its frames go in the full image.

    The module's frame is turned ``rotation`` quarter turns counter-clockwise
    (as ``numpy.rot90``), then its first row and column land at row ``y``,
    column ``x`` of the full image.
    """

    name: str
    endpoint: str
    x: int
    y: int
    rotation: int


@dataclass(frozen=True, slots=True)
class ModuleLayout:
    """The modules in stream order (plane k of a matched multi-module frame is module k)."""

    modules: tuple[ModulePlacement, ...]
    full_shape: tuple[int, int]
    fill_value: int | float | str
    """Pixels of the full image that no module covers (or whose module sent nothing);
    ``"max"``: the largest value of the pixel type (the Dectris mark for gaps)."""


@dataclass(slots=True)
class SeriesEnd:
    """The series is complete: close the file."""

    seq: int
    fields: dict[str, Any] = field(default_factory=dict)
    series: Hashable | None = None


Message = SeriesStart | Image | SeriesEnd

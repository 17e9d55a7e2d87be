"""The receiver's one internal message model: every wire protocol is parsed into these.

Workers produce them, the collector orders them by ``seq``, the writer and the
forwarder consume them. ``seq`` is the position of the message in its stream
(STINS ``msg_number``), the only ordering key the collector needs.

Protocols without a stream-wide number (Dectris stream v1/v2, SLS) number
their messages per series instead: ``series`` names the series (the
detector's series id) and ``seq`` is the position inside it - 0 for the
header, ``frame + 1`` for frame ``frame`` - while a series end, whose position
nobody announces, has ``seq`` -1 (see ``receiver/series_reorder.py``). STINS
leaves ``series`` at None.

A multi-module detector (XSpectrum Lambda: one STINS stream per module) is
joined frame by frame before the collector (``receiver/module_match.py``):
the frame of every module becomes one :class:`ModuleImage`, its header one
:class:`SeriesStart` with ``modules`` set, and what the matching finds wrong
a :class:`Problem` in the ordered stream.
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
    """The modules in stream order (plane k of a :class:`ModuleImage` is module k)."""

    modules: tuple[ModulePlacement, ...]
    full_shape: tuple[int, int]
    fill_value: int | float | str
    """Pixels of the full image that no module covers (or whose module sent nothing);
    ``"max"``: the largest value of the pixel type (the Dectris mark for gaps)."""


class ModuleParts:
    """The modules' chunks of one frame, each in the buffer it came in; None: nothing came.

    ``len()`` is their total size in bytes, as for the one blob of any other
    frame, so the receiver's byte budgets and rates count them alike.
    """

    __slots__ = ("_nbytes", "chunks")

    def __init__(self, chunks: tuple[Buffer | None, ...]) -> None:
        self.chunks = chunks
        self._nbytes = sum(len(c) for c in chunks if c is not None)

    def __len__(self) -> int:
        return self._nbytes


@dataclass(slots=True)
class ModuleImage(Image):
    """Frame ``frame`` of every module of a multi-module detector, matched by frame number.

    ``shape`` is (modules, H, W), the planes as they are stored; ``data`` is a
    :class:`ModuleParts` holding one chunk per module as it came (never copied,
    never decompressed), None for a module that sent nothing for this frame.
    ``layout`` tells where each plane goes in the full image (live view,
    forwarder: ``receiver/assembly.py``).
    """

    layout: ModuleLayout | None = None

    def chunks(self) -> list[Buffer | None]:
        """One buffer per module, None where the module sent nothing."""
        return list(self.data.chunks)  # type: ignore[union-attr]


@dataclass(slots=True)
class SeriesEnd:
    """The series is complete: close the file."""

    seq: int
    fields: dict[str, Any] = field(default_factory=dict)
    series: Hashable | None = None


@dataclass(slots=True)
class Malformed:
    """A message that could not be parsed; kept in the ordered stream so nothing waits for it."""

    seq: int
    reason: str
    series: Hashable | None = None


@dataclass(slots=True)
class Problem:
    """Something found wrong on the way (a module gone silent, modules that disagree).

    It travels in stream order like a message, so the writer puts the
    receiver in error with ``reason`` during the series it belongs to.
    ``lost`` and ``malformed`` count messages for the series' counters.
    """

    reason: str
    lost: int = 0
    malformed: int = 0


Message = SeriesStart | Image | SeriesEnd

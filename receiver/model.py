"""The receiver's one internal message model: every wire protocol is parsed into these.

Workers produce them, the collector orders them by ``seq``, the writer and the
forwarder consume them. ``seq`` is the position of the message in its stream
(STINS ``msg_number``), the only ordering key the collector needs.
"""

from __future__ import annotations

import math
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

    @property
    def nbytes(self) -> int:
        """Size of the decompressed frame in bytes."""
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(slots=True)
class SeriesEnd:
    """The series is complete: close the file."""

    seq: int
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Malformed:
    """A message that could not be parsed; kept in the ordered stream so nothing waits for it."""

    seq: int
    reason: str


Message = SeriesStart | Image | SeriesEnd

"""What the receiver's pipeline carries beside the wire messages of ``protocols.model``.

A multi-module detector (XSpectrum Lambda: one STINS stream per module) is
joined frame by frame before the collector (``receiver/module_match.py``):
the frame of every module becomes one :class:`ModuleImage`. A message that
could not be parsed becomes a :class:`Malformed` and what the matching finds
wrong a :class:`Problem`; both keep their place in the ordered stream so
that nothing waits for them.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from protocols.model import Buffer, Image, ModuleLayout


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

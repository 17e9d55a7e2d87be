"""Matching the modules' parts of a frame by frame number into one joined frame.

Frames are matched by frame number, not by position, in whatever order they
come: a module that loses a message, or whose workers deliver late, shifts
no other frame. Frame k goes on as one :class:`~receiver.stream_items.ModuleImage`
(one chunk per module, each the buffer it came in, never copied or
decompressed) as soon as every module still open in the series has sent it;
a module that ended, fell silent or never joined is not waited for.

A module whose parts differ from the series' frame layout (shape, type,
compression: :mod:`receiver.module_fit`) is reported and its parts are left
out, as they cannot go in the series' dataset; the other modules' are kept.

Each series has its own module layout (the configuration's, or the one its
headers give: :mod:`receiver.module_placement`); a joined frame has one
plane per module of that layout, in module order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from protocols.model import Image, ModuleLayout
from receiver.module_feed import ModuleFeed, ModuleState
from receiver.module_fit import FrameLayout, describe, fit_problems, layout_of, most_sent
from receiver.module_output import MatchedOutput
from receiver.module_placement import HeaderPlacedLayout
from receiver.stream_items import ModuleImage, ModuleParts


@dataclass(eq=False, slots=True)
class PendingFrame:
    """Frame ``number`` waiting for modules: one part per module (None: not yet)."""

    number: int
    parts: list[Image | None]
    first: float
    """When its first part came: how long it has waited."""


class FrameJoin:
    """The frames of the open series that wait for modules, and those already gone on."""

    def __init__(
        self,
        layout: ModuleLayout,
        modules: Sequence[ModuleFeed],
        output: MatchedOutput,
        gap_timeout: float,
    ) -> None:
        self._layout = layout
        self._gap_timeout = gap_timeout
        self._modules = modules
        self._output = output
        self._pending: dict[int, PendingFrame] = {}
        self._stored: set[int] = set()
        self._reference: FrameLayout | None = None
        self._members = {placement.name for placement in layout.modules}
        self._placed_by = (
            "the modules' headers"
            if isinstance(layout, HeaderPlacedLayout)
            else "the configuration"
        )

    def begin(self, layout: ModuleLayout | None = None) -> None:
        """A new series: no frame stored yet, its first frame fixes the frame layout.

        ``layout``: the series' module layout (None: the one given before); a
        module outside it has no plane in the series' frames.
        """
        if layout is not None:
            self._layout = layout
            self._members = {placement.name for placement in layout.modules}
        self._reference = None
        self._stored = set()

    def waiting(self) -> Iterator[PendingFrame]:
        """The frames still waiting, oldest first; nothing may go on while it is read.

        An iterator, not a copy: the caller stops at the first frame too young
        to give up on, so a full window costs nothing per look.
        """
        return iter(self._pending.values())

    def add(self, module: ModuleFeed, image: Image, now: float) -> None:
        """``module``'s part of frame ``image.frame``; the frame goes on once it is complete."""
        number = image.frame
        if number in self._stored:
            self._output.once(
                module,
                "late",
                f"{module.label} sent frame {number} after it was stored without it "
                f"(more than {self._gap_timeout:g} s late); dropped",
            )
            return
        frame = self._pending.get(number)
        if frame is None:
            frame = self._pending[number] = PendingFrame(number, [None] * len(self._modules), now)
        if frame.parts[module.index] is not None:
            self._output.report(f"{module.label} sent frame {number} twice; the first one is kept")
            return
        frame.parts[module.index] = image
        module.newest = max(module.newest, frame.first)
        module.hold(image)
        if self._complete(frame):
            self.emit(frame)

    def lacking(self, frame: PendingFrame) -> list[ModuleFeed]:
        """The modules ``frame`` still waits for."""
        return [
            m
            for m, part in zip(self._modules, frame.parts, strict=True)
            if part is None and m.state is ModuleState.OPEN
        ]

    def flush_complete(self) -> None:
        """Send on the frames that no longer wait for anyone (a module ended or fell silent)."""
        for frame in [f for f in self._pending.values() if self._complete(f)]:
            self.emit(frame)

    def finish(self) -> int:
        """The series ends: every waiting frame goes on as it is; how many frames went on."""
        for frame in list(self._pending.values()):
            self.emit(frame)
        stored = len(self._stored)
        self._pending.clear()
        self._stored = set()
        return stored

    def emit(self, frame: PendingFrame) -> None:
        """Frame ``frame.number`` goes on with the parts that came (and fit the series)."""
        del self._pending[frame.number]
        self._stored.add(frame.number)
        for module, part in zip(self._modules, frame.parts, strict=True):
            if part is not None:
                module.release(part)
        reference = self._reference or self._fix_reference(frame)
        shape, _, compression = reference
        chunks: list[Any] = []
        lead: Image | None = None
        for module, received in zip(self._modules, frame.parts, strict=True):
            if module.name not in self._members:
                continue
            part = received
            if part is not None and layout_of(part) != reference:
                self._output.once(
                    module,
                    "layout",
                    f"{module.label} sends {describe(layout_of(part))} frames but the series "
                    f"started with {describe(reference)}; its frames are not stored",
                )
                part = None
            if part is None:
                module.lacked(frame.number)
                chunks.append(None)
                continue
            chunks.append(part.data)
            lead = lead or part
        if lead is None:
            return
        self._output.append(
            ModuleImage(
                seq=lead.seq,
                frame=frame.number,
                shape=(len(chunks), *shape),
                dtype=lead.dtype,
                compression=compression,
                data=ModuleParts(tuple(chunks)),  # type: ignore[arg-type]
                discard=lead.discard,
                fields=lead.fields,
                layout=self._layout,
            )
        )

    def _complete(self, frame: PendingFrame) -> bool:
        return all(
            part is not None or module.state is not ModuleState.OPEN
            for part, module in zip(frame.parts, self._modules, strict=True)
        )

    def _fix_reference(self, frame: PendingFrame) -> FrameLayout:
        """The series' first frame fixes its layout; the modules' fit is checked then."""
        reference = self._reference = most_sent(frame.parts)
        for reason in fit_problems(reference[0], self._layout, self._placed_by):
            self._output.report(reason)
        return reference

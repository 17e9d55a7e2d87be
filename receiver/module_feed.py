"""One module's stream as the module matcher sees it: what it took, holds and did.

Each module of a multi-module detector has its own reorderer; the matcher
takes that module's messages from it only while the module holds fewer than
``window`` frames (and its share of the byte budget) waiting for the other
modules, and nothing while messages it took before still wait (a header for
the next series). So what waits is at most one reorderer's worth per module,
and a module running ahead is pushed back through its reorderer, workers and
socket instead of being buffered without bound. Modules that send frames in
very different orders (beyond the window) end up waiting for each other
until ``gap_timeout``, which is reported.

The counters (frames received, missing, the first missing) are what the
status shows per module and what the series end compares.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from protocols.model import Image, Message, ModulePlacement, SeriesEnd, SeriesStart
from receiver.reorder import Gap, OutOfTurn, Placed, Reorderer, Stale
from receiver.stream_items import Malformed


class ModuleState(StrEnum):
    WAITING = "waiting"
    """No series yet."""
    OPEN = "open"
    """In the series: frames wait for it."""
    SILENT = "silent"
    """In the series but sent nothing while the others went on; frames do not wait."""
    ENDED = "ended"
    """Sent its series end (or a new header: its end was lost)."""
    ABSENT = "absent"
    """Sent no header for this series in time; may still join with one."""
    EXCLUDED = "excluded"
    """Left out of this series: it named another file than the other modules, or (placed
    by its headers) its header came too late or did not place it."""


def module_label(placement: ModulePlacement) -> str:
    """How every report names a module: its name and the endpoint its frames come from."""
    return f"module {placement.name!r} ({placement.endpoint})"


@dataclass(eq=False)
class ModuleFeed:
    """Module ``index`` of the layout: its reorderer, what was taken from it, its counters."""

    index: int
    placement: ModulePlacement
    input: Reorderer[Message | Malformed]
    inbox: deque[Message | Malformed | Gap | Stale] = field(default_factory=deque)
    state: ModuleState = ModuleState.WAITING
    held: int = 0
    held_bytes: int = 0
    last_taken: float = 0.0
    newest: float = 0.0
    """When the newest frame it sent a part of was first seen: it has moved on past older ones."""
    frames: int = 0
    missing: int = 0
    first_missing: int | None = None
    end: SeriesEnd | None = None
    told: set[str] = field(default_factory=set)
    """Kinds of problem already reported for it in this series (or between series)."""

    @property
    def name(self) -> str:
        return self.placement.name

    @property
    def label(self) -> str:
        return module_label(self.placement)

    @property
    def heading(self) -> bool:
        """Its next message is a header: it waits for the next series to open."""
        return bool(self.inbox) and isinstance(self.inbox[0], SeriesStart)

    def new_series(self) -> None:
        self.newest = 0.0
        self.frames = self.missing = 0
        self.first_missing = None
        self.end = None
        self.told.clear()

    def pull(self, now: float, window: int, window_bytes: int) -> bool:
        """Take what its reorderer has ready, as far as its budget allows; True if anything.

        Nothing while messages taken before still wait (a header for the next
        series): what waits is then at most one reorderer's worth of bytes.
        """
        room = window - self.held
        if self.inbox or room <= 0 or self.held_bytes >= window_bytes:
            return False
        items = self.input.take_ready(room)
        if not items:
            return False
        # Module inputs are built without frame_of: nothing of theirs goes ahead of its turn.
        self.inbox.extend(item for item in items if not isinstance(item, Placed | OutOfTurn))
        self.last_taken = now
        return True

    def hold(self, part: Image) -> None:
        """``part`` waits for the other modules' parts of its frame: it counts on the budget."""
        self.held += 1
        self.held_bytes += len(part.data)

    def release(self, part: Image) -> None:
        """``part``'s frame went on: it no longer counts on the budget."""
        self.held -= 1
        self.held_bytes -= len(part.data)

    def lacked(self, frame: int) -> None:
        """Frame ``frame`` was stored without this module."""
        self.missing += 1
        if self.first_missing is None:
            self.first_missing = frame

    def status(self) -> dict[str, Any]:
        """What it did in the current (or last) series, as the status shows it."""
        return {
            "name": self.name,
            "connect": self.placement.endpoint,
            "state": str(self.state),
            "frames_received": self.frames,
            "frames_missing": self.missing,
            "first_missing": self.first_missing,
        }


def tally(modules: Sequence[ModuleFeed], stored: int) -> list[str]:
    """At the series end: whether the modules' frame counts agree, who is missing from frames.

    Only the modules that were in the series count: those that ended, fell
    silent or sent frames (not one that never joined or was left out).
    """
    in_series = [
        m for m in modules if m.state in (ModuleState.ENDED, ModuleState.SILENT) or m.frames
    ]
    problems = []
    counts = {m.name: m.frames for m in in_series}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name!r} {frames}" for name, frames in counts.items())
        problems.append(f"the modules disagree on the number of frames: {listed}")
    for module in in_series:
        if module.missing:
            problems.append(
                f"{module.label} is missing from {module.missing} of the {stored} frames "
                f"stored (the first: frame {module.first_missing})"
            )
    return problems

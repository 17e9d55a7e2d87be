"""When a frame stops waiting for a module, and whether that module is silent or skipped it.

A frame that one module has not sent ``gap_timeout`` after the first module
sent it goes on without that module, which is reported by name. A module
that has sent nothing at all meanwhile (its stream ended or went silent) is
marked silent: frames stop waiting for it, and it rejoins if it sends again.
A module that has since sent parts of newer frames skipped this one. A module
that sent something lately but nothing newer (it lags behind the others, or
died just after) is given until it has been quiet for ``gap_timeout``, and
one whose own stream waits behind a lost message until its reorderer skips
that gap.
"""

from __future__ import annotations

from receiver.module_feed import ModuleFeed, ModuleState
from receiver.module_frames import FrameJoin, PendingFrame
from receiver.module_output import MatchedOutput


class Alarm:
    """When the matcher must look again though nothing woke it: the earliest deadline set."""

    def __init__(self) -> None:
        self.at: float | None = None

    def set(self, due: float) -> None:
        self.at = due if self.at is None else min(self.at, due)

    def clear(self) -> None:
        self.at = None


class FrameTimeouts:
    """Sends on the frames that waited ``gap_timeout`` for a module, naming that module."""

    def __init__(self, frames: FrameJoin, output: MatchedOutput, gap_timeout: float) -> None:
        self._frames = frames
        self._output = output
        self._gap_timeout = gap_timeout

    def expire(self, now: float, alarm: Alarm) -> bool:
        """Frames that waited long enough go on; True if any did. ``alarm``: the next one due."""
        old = []
        for frame in self._frames.waiting():  # in the order first seen: the rest is younger
            due = frame.first + self._gap_timeout
            if now < due:
                alarm.set(due)
                break
            old.append(frame)
        progress = False
        for frame in old:
            due = frame.first + self._gap_timeout
            lacking = self._frames.lacking(frame)
            for module in lacking:
                if module.input.stalled:
                    due = max(due, now + self._gap_timeout / 4)
                elif module.newest <= frame.first:
                    due = max(due, module.last_taken + self._gap_timeout)
            if now < due:
                alarm.set(due)
                continue
            for module in lacking:
                self._lacks(module, frame, now)
            self._frames.emit(frame)
            progress = True
        if progress:
            self._frames.flush_complete()
        return progress

    def _lacks(self, module: ModuleFeed, frame: PendingFrame, now: float) -> None:
        if now - module.last_taken >= self._gap_timeout and not module.input.pending:
            module.state = ModuleState.SILENT
            self._output.report(
                f"{module.label} sent nothing for frame {frame.number} after "
                f"{self._gap_timeout:g} s; the frames of the other modules are stored without it"
            )
        else:
            self._output.once(
                module,
                "skipped",
                f"{module.label} sent no frame {frame.number} within {self._gap_timeout:g} s "
                "of the other modules; it is stored without it",
            )

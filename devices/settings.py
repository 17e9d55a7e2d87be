"""What a client asks of an acquisition, checked once, before any hardware is touched.

The Tango device stores the attribute values here; a backend receives one
validated :class:`AcquisitionSettings` at Arm, so every backend sees the same
rules and the client gets the same error text whatever the hardware.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class TriggerMode(IntEnum):
    """The MAX IV trigger modes; clients write them by label (``TriggerMode = "SOFTWARE"``)."""

    INTERNAL = 0
    SOFTWARE = 1
    EXTERNAL = 2
    EXTERNAL_MULTI = 3
    GATE = 4


TRIGGER_MODE_HELP = (
    "INTERNAL: Arm starts nTriggers x nFramesPerTrigger frames at FrameTime; "
    "SOFTWARE: each SoftwareTrigger gives nFramesPerTrigger frames; "
    "EXTERNAL: one external trigger starts all frames; "
    "EXTERNAL_MULTI: each external trigger gives nFramesPerTrigger frames; "
    "GATE: each external gate pulse gives one frame exposed for the gate's width"
)


class SettingsError(ValueError):
    """A setting the client wrote cannot be used; the text says which and what is allowed."""


@dataclass(frozen=True, slots=True)
class AcquisitionSettings:
    """One series: ``n_triggers`` triggers of ``frames_per_trigger`` frames each."""

    exposure_time: float = 0.1
    frame_time: float = 0.1
    trigger_mode: TriggerMode = TriggerMode.INTERNAL
    n_triggers: int = 1
    frames_per_trigger: int = 1
    filename: str = ""

    @property
    def total_frames(self) -> int:
        return self.n_triggers * self.frames_per_trigger

    def validate(self) -> AcquisitionSettings:
        """Return self, or raise :class:`SettingsError` naming the setting to fix."""
        if not self.exposure_time > 0:
            raise SettingsError(f"ExposureTime must be > 0 s, not {self.exposure_time:g}")
        if self.frame_time < self.exposure_time:
            raise SettingsError(
                f"FrameTime ({self.frame_time:g} s) must be at least ExposureTime "
                f"({self.exposure_time:g} s): the detector cannot expose longer than a frame lasts"
            )
        if self.n_triggers < 1:
            raise SettingsError(f"nTriggers must be >= 1, not {self.n_triggers}")
        if self.frames_per_trigger < 1:
            raise SettingsError(f"nFramesPerTrigger must be >= 1, not {self.frames_per_trigger}")
        if self.trigger_mode is TriggerMode.GATE and self.frames_per_trigger != 1:
            raise SettingsError(
                "TriggerMode GATE takes one frame per gate pulse: set nFramesPerTrigger to 1 "
                "and nTriggers to the number of gates"
            )
        return self

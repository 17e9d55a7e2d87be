"""The lambda-streamer's control channel: JSON over HTTP, between the Tango backend and a DCU.

A Lambda's modules are read on their DCUs (two modules per DCU at ForMAX),
where ``lambda-streamer`` holds the SDK; the Tango device may run elsewhere,
so the backend configures, starts and stops each streamer over HTTP, and
learns from it how the series goes, a stalled module or an SDK error
included. Both ends validate with these models, so a field that does not fit
is an error naming the field, never a default read in its place.

- ``GET /status`` -> :class:`StreamerStatus`
- ``POST /arm`` with :class:`ArmRequest` -> :class:`StreamerStatus` (armed), or HTTP 409
  (busy) / 422 (refused) with ``{"detail": "<the reason>"}``
- ``POST /stop`` -> :class:`StreamerStatus` once every module's series end is sent; an
  error of the last series is cleared when the streamer is idle
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt

DROPPED_SHOWN = 20
"""Frames listed per module in ``dropped``; ``dropped_count`` counts them all."""


class SdkTrigger(StrEnum):
    """The Lambda's trigger modes, as libxsp names them (``xsp::lambda::TrigMode``)."""

    SOFTWARE = "software"
    """Internal: the frames start at Arm, one every shutter time."""
    EXT_SEQUENCE = "ext_sequence"
    """One external trigger starts all frames."""
    EXT_FRAMES = "ext_frames"
    """Each external trigger takes one frame."""


class ArmRequest(BaseModel):
    """One series on every module this streamer serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: PositiveInt = Field(description="frames in the series")
    shutter_time: PositiveFloat = Field(description="s; a Lambda's frames follow without gap")
    trigger: SdkTrigger = SdkTrigger.SOFTWARE
    filename: str = Field("", description="the receiver's file ('': live view only)")
    meta: dict[str, Any] = Field(
        default_factory=dict, description="metadata for the header's 2nd part, besides placement"
    )


class ModuleState(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    STALLED = "stalled"
    """No frame from the SDK for longer than the stall timeout while the detector is busy."""
    FAILED = "failed"
    """The SDK or the stream failed; ``error`` says how."""


class DroppedFrame(BaseModel):
    """A frame a module did not stream, and why (``lost``, ``missing``, ``corrupt``)."""

    model_config = ConfigDict(frozen=True)

    frame: NonNegativeInt
    reason: str


class ModuleStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(description="the SDK's receiver id, the receiver's module name")
    index: NonNegativeInt = Field(description="position in the whole detector")
    endpoint: str = Field(description="the module's STINS stream, as bound")
    state: ModuleState
    frames_sent: NonNegativeInt
    dropped_count: NonNegativeInt = 0
    dropped: list[DroppedFrame] = Field(default_factory=list, max_length=DROPPED_SHOWN)
    error: str = ""


class StreamerState(StrEnum):
    IDLE = "idle"
    ARMED = "armed"
    ERROR = "error"


class StreamerStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    system: str = Field(description="the SDK's system id")
    sdk_version: str
    state: StreamerState
    error: str = ""
    series: NonNegativeInt = Field(description="series armed since the streamer started")
    frames: NonNegativeInt = Field(description="frames of the current (or last) series")
    modules: list[ModuleStatus]

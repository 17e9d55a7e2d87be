"""camera-streamer's control: the models of its HTTP channel, and of its in-process use.

An sCMOS camera (Andor Zyla or Balor, Hamamatsu ORCA) is read through its
vendor SDK by ``camera-streamer`` on the machine the camera is plugged into.
The Tango backend drives it over HTTP when the device server runs
elsewhere, or holds it in its own process when the device server runs on
that machine, as at MAX IV; both ways speak these models, so a field that
does not fit is an error naming the field.

- ``GET /status`` -> :class:`CameraStatus`
- ``POST /arm`` with :class:`CameraArm` -> :class:`CameraStatus`, or HTTP 409 (busy) /
  422 (the camera refused the settings, with its limits) with ``{"detail": "<reason>"}``
- ``POST /trigger`` -> :class:`CameraStatus` (SOFTWARE: one frame)
- ``POST /stop`` -> :class:`CameraStatus` once the series end is sent
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt


class CameraTrigger(StrEnum):
    """What starts the camera's frames (the SDKs name them differently)."""

    INTERNAL = "internal"
    """Arm starts the frames, one every frame time."""
    SOFTWARE = "software"
    """Each software trigger takes one frame."""
    EXTERNAL_START = "external_start"
    """One external trigger starts all frames at the frame time."""
    EXTERNAL = "external"
    """Each external trigger takes one frame."""
    GATE = "gate"
    """Each external pulse takes one frame, exposed for the pulse's width."""


class CameraArm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: PositiveInt
    exposure_time: PositiveFloat = Field(description="s")
    frame_time: PositiveFloat = Field(description="s, from one frame's start to the next")
    trigger: CameraTrigger = CameraTrigger.INTERNAL
    filename: str = Field("", description="the receiver's file ('': live view only)")
    aoi: tuple[NonNegativeInt, NonNegativeInt, PositiveInt, PositiveInt] | None = Field(
        None,
        description="region read: column and row of its first pixel (0-based, on the sensor), "
        "width and height; none: the whole sensor",
    )


class CameraState(StrEnum):
    IDLE = "idle"
    ARMED = "armed"
    ERROR = "error"


class CameraStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    sdk: str = Field(description="'andor' or 'dcam'")
    model: str
    serial: str
    sensor_shape: tuple[int, int]
    image_shape: tuple[int, int] = Field(description="rows, columns of the frames sent")
    wire_format: str = Field(description="the images' STINS compression: none, mono12p, ...")
    triggers: list[CameraTrigger]
    endpoint: str = Field(description="the STINS stream, as bound")
    state: CameraState
    error: str = ""
    series: NonNegativeInt
    frames: NonNegativeInt = Field(description="frames of the current (or last) series")
    frames_sent: NonNegativeInt

"""What a client asks of an acquisition, checked once, before any hardware is touched.

A client writes the settings one Tango attribute at a time and may pass
through combinations that are not a series yet (TriggerMode GATE written
before nFramesPerTrigger 1), so the device keeps what was written as
:class:`WrittenSettings` and Arm builds one validated, frozen
:class:`AcquisitionSettings` from it. Backends receive only that model, so
every backend sees the same rules and the client gets the same error text,
naming the attribute to fix, whatever the hardware.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError


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

CONSISTENCY = "consistency"
"""The error type of a rule between settings; its message is the client's, as it stands."""


class SettingsError(ValueError):
    """A setting the client wrote cannot be used; the text says which and what is allowed."""


class AcquisitionSettings(BaseModel):
    """One series: ``n_triggers`` triggers of ``frames_per_trigger`` frames each.

    Each field's title is the Tango attribute a client writes it with, so a
    refusal names what the client can change.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    exposure_time: float = Field(
        default=0.1,
        gt=0,
        title="ExposureTime",
        description="count time of each frame",
        json_schema_extra={"unit": "s"},
    )
    frame_time: float = Field(
        default=0.1,
        gt=0,
        title="FrameTime",
        description="period of the frames within a trigger, at least exposure_time",
        json_schema_extra={"unit": "s"},
    )
    trigger_mode: TriggerMode = Field(
        default=TriggerMode.INTERNAL, title="TriggerMode", description=TRIGGER_MODE_HELP
    )
    n_triggers: int = Field(
        default=1, ge=1, title="nTriggers", description="triggers in the series"
    )
    frames_per_trigger: int = Field(
        default=1, ge=1, title="nFramesPerTrigger", description="frames taken for each trigger"
    )
    filename: str = Field(
        default="",
        title="DestinationFilename",
        description="file of the series for the receiver; empty: not saved",
    )

    @property
    def total_frames(self) -> int:
        return self.n_triggers * self.frames_per_trigger

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.frame_time < self.exposure_time:
            raise PydanticCustomError(
                CONSISTENCY,
                f"FrameTime ({self.frame_time:g} s) must be at least ExposureTime "
                f"({self.exposure_time:g} s): the detector cannot expose longer than a frame lasts",
            )
        if self.trigger_mode is TriggerMode.GATE and self.frames_per_trigger != 1:
            raise PydanticCustomError(
                CONSISTENCY,
                "TriggerMode GATE takes one frame per gate pulse: set nFramesPerTrigger to 1 "
                "and nTriggers to the number of gates",
            )
        return self


@dataclass(slots=True)
class WrittenSettings:
    """The settings as the client wrote them, not checked together until :meth:`settings`."""

    exposure_time: float
    frame_time: float
    trigger_mode: TriggerMode
    n_triggers: int
    frames_per_trigger: int
    filename: str

    @classmethod
    def defaults(cls) -> WrittenSettings:
        """What a device starts with: the model's defaults."""
        return cls(**AcquisitionSettings().model_dump())

    def settings(self) -> AcquisitionSettings:
        """The validated settings of a series, or :class:`SettingsError` naming what to fix."""
        try:
            return AcquisitionSettings.model_validate(dataclasses.asdict(self))
        except ValidationError as exc:
            raise SettingsError("; ".join(_refusal(error) for error in exc.errors())) from None


BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">=")}


def check_written(title: str, value: float) -> None:
    """Refuse, as it is written, a value below the least any series could use.

    ``title`` is the Tango attribute (a field's title). The bound is the
    field's own: a value at a strict bound (ExposureTime 0) is kept while the
    client writes its settings and refused at Arm, as the model refuses it;
    below it (ExposureTime -1, nTriggers 0) nothing can make it a series.
    """
    name = next(
        key for key, field in AcquisitionSettings.model_fields.items() if field.title == title
    )
    field = AcquisitionSettings.model_fields[name]
    bounds = [
        bound
        for meta in field.metadata
        for bound in (getattr(meta, "gt", None), getattr(meta, "ge", None))
        if isinstance(bound, int | float)
    ]
    for bound in bounds:
        refuse_below(title, value, bound, _unit(name))


def refuse_below(title: str, value: float, least: float, unit: str = "") -> None:
    """:class:`SettingsError` ``<title> must be at least <least> <unit>, got <value>`` (NaN too)."""
    if not value >= least:
        spaced = f" {unit}" if unit else ""
        raise SettingsError(
            f"{title} must be at least {_number(least)}{spaced}, got {_number(value)}"
        )


def _unit(name: str) -> str:
    extra = AcquisitionSettings.model_fields[name].json_schema_extra
    return str(extra["unit"]) if isinstance(extra, dict) and "unit" in extra else ""


def _refusal(error: ErrorDetails) -> str:
    """One validation error in the client's words: the Tango attribute, the bound, the value."""
    if error["type"] == CONSISTENCY or not error["loc"]:
        return error["msg"]
    field = AcquisitionSettings.model_fields[str(error["loc"][0])]
    name = field.title or str(error["loc"][0])
    if error["type"] not in BOUNDS:
        return f"{name}: {error['msg']}"
    key, relation = BOUNDS[error["type"]]
    extra = field.json_schema_extra
    unit = f" {extra['unit']}" if isinstance(extra, dict) and "unit" in extra else ""
    bound = error.get("ctx", {})[key]
    return f"{name} must be {relation} {_number(bound)}{unit}, not {_number(error['input'])}"


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)

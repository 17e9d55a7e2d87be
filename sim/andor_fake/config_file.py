"""The fake Andor SDK's configuration file, as a model that writes it.

The fake (``fake_atcore.c``) reads a flat text file of ``key = value`` lines
when ``AT_InitialiseLibrary`` is called, from the path in the environment
variable ``ANDOR_FAKE_CONFIG``; without the variable it is one Zyla 5.5
with the defaults below. Tests and demos describe the cameras here and
:meth:`ConfigFile.write` the file, so nobody writes the format by hand; the
C side still checks every line, as the SDK would check what it is given.

Faults are not in the file: they come from ``ANDOR_FAKE_FAULTS``, read by
every ``AT_Open`` (see the package docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, model_validator

Model = Literal["zyla-5.5", "zyla-4.2", "balor"]
Encoding = Literal["Mono12", "Mono12Packed", "Mono16", "Mono32"]

ENCODINGS: tuple[Encoding, ...] = ("Mono12", "Mono12Packed", "Mono16", "Mono32")
"""PixelEncoding's options, in the fake's index order."""
MAX_CAMERAS = 4
"""Cameras the fake can show (DeviceCount), as in fake_atcore.c."""

_ONE_LINE = r"^\S(?:[^\n\r]*\S)?$"


@dataclass(frozen=True)
class SensorModel:
    """What the fake makes of a model (the numbers and their sources: fake_atcore.c)."""

    camera_model: str
    """CameraModel: the fake's own string; the real cameras' are not known here."""
    width: int
    """SensorWidth."""
    height: int
    """SensorHeight."""
    row_time_s: float
    """Time to read one row of each half of the sensor (ReadoutTime per row read)."""


MODELS: dict[Model, SensorModel] = {
    "zyla-5.5": SensorModel("Zyla 5.5 (fake)", 2560, 2160, 9.24e-6),
    "zyla-4.2": SensorModel("Zyla 4.2 (fake)", 2048, 2048, 9.76e-6),
    "balor": SensorModel("Balor (fake)", 4128, 4104, 9.02e-6),
}


class ConfigFile(BaseModel):
    """The fake's configuration; the keys are the fields.

    ``serial`` is camera 0's SerialNumber; camera k > 0 reports
    ``<serial>-<k>``. The pulse generator on the external trigger input gives
    a pulse every ``trigger_period_ms``, the first ``trigger_delay_ms`` after
    AcquisitionStart, each high for half the period (the exposure in
    TriggerMode "External Exposure"). ``unavailable_encodings`` are
    implemented but not available (as on a real camera, depending on its
    other settings; which ones is not known here, so a test chooses).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Model = "zyla-5.5"
    serial: str = Field("FAKE-0001", pattern=_ONE_LINE, max_length=63)
    cameras: int = Field(1, ge=1, le=MAX_CAMERAS)
    trigger_period_ms: PositiveFloat = 10.0
    trigger_delay_ms: NonNegativeFloat = 0.0
    unavailable_encodings: list[Encoding] = Field(default_factory=list)

    @model_validator(mode="after")
    def _an_encoding_is_left(self) -> ConfigFile:
        if set(ENCODINGS) <= set(self.unavailable_encodings):
            raise ValueError("unavailable_encodings leaves no pixel encoding")
        return self

    @property
    def sensor(self) -> SensorModel:
        return MODELS[self.model]

    def render(self) -> str:
        lines = [
            "# fake Andor SDK3 configuration, written by sim.andor_fake.config_file",
            f"model = {self.model}",
            f"serial = {self.serial}",
            f"cameras = {self.cameras}",
            f"trigger_period_ms = {self.trigger_period_ms!r}",
            f"trigger_delay_ms = {self.trigger_delay_ms!r}",
        ]
        if self.unavailable_encodings:
            lines.append("unavailable_encodings = " + ", ".join(self.unavailable_encodings))
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write the file (replacing one there); returns its path."""
        written = Path(path)
        written.write_text(self.render())
        return written

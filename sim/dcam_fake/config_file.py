"""The fake DCAM camera's configuration file, as a model that writes it.

The fake SDK (``fake_dcam.c``) reads a flat text file of ``key = value``
lines from the path in the environment variable ``DCAM_FAKE_CONFIG`` when
``dcamapi_init`` is called; without it, it simulates an ORCA-Flash4.0 V3
with the defaults below. Tests and demos describe the camera here and
:meth:`ConfigFile.write` it, so nobody writes the format by hand; the C side
still checks every line. Faults are not part of the file: they come from
``DCAM_FAKE_FAULTS`` (see the package docstring), so that a test can add one
to any camera.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, model_validator

Model = Literal["ORCA-Flash4.0 V3", "ORCA-Fusion", "ORCA-Lightning"]
"""The cameras the fake simulates, by series name (``DCAM_IDSTR_CAMERA_SERIESNAME``)."""

_ONE_LINE = r"^\S(?:[^\n\r]*\S)?$"


class ConfigFile(BaseModel):
    """The fake camera: its model and id, and the pulse generator on its trigger input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Model = "ORCA-Flash4.0 V3"
    camera_id: str = Field("S/N: 000001", pattern=_ONE_LINE, max_length=63)
    trigger_period_ms: PositiveFloat = Field(
        10.0, description="period of the pulses on the external trigger input"
    )
    trigger_delay_ms: NonNegativeFloat = Field(
        0.0, description="from dcamcap_start to the first pulse"
    )
    trigger_width_ms: PositiveFloat = Field(
        1.0, description="width of each pulse: the exposure with TRIGGERACTIVE LEVEL"
    )

    @model_validator(mode="after")
    def _pulses_end(self) -> ConfigFile:
        if self.trigger_width_ms >= self.trigger_period_ms:
            raise ValueError(
                f"trigger_width_ms {self.trigger_width_ms} must be shorter than "
                f"trigger_period_ms {self.trigger_period_ms}"
            )
        return self

    def render(self) -> str:
        lines = ["# fake DCAM camera, written by sim.dcam_fake.config_file"]
        lines.extend(f"{key} = {value}" for key, value in self.model_dump().items())
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write the file (replacing one there); returns its path."""
        written = Path(path)
        written.write_text(self.render())
        return written

"""The fake Lambda's system file, as a model that writes it.

The fake SDK (``fake_xsp.c``) reads a flat text file of ``key = value``
lines, one file per system (one DCU and the modules it serves). Tests and
``daq-sim lambda`` describe a system here and :meth:`SystemFile.write` it,
so nobody writes the format by hand; the C side still checks every line,
as the real SDK would check its own file. A field left at ``None`` is not
written, and the fake works it out: ``detector_modules`` from the module
lines, ``full_height`` and ``full_width`` from where the modules reach,
``max_frame_rate`` from the depth (2000 Hz at 12 bits, 1000 Hz at 24).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from sim.geometry import windmill

MAX_MODULES = 64
"""Module lines the fake reads, and the limit of a module index (as in fake_xsp.c)."""

FAULT_KEYS = ("lose_frame", "missing_frame", "corrupt_frame", "stall_module")

Fault = tuple[NonNegativeInt, NonNegativeInt]
"""(module index in the whole detector, frame number)."""

_ONE_LINE = r"^\S(?:[^\n\r]*\S)?$"


class ModuleLine(BaseModel):
    """``module = <id> <index> <x> <y> <rotation>``: a module this system serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^\S+$", max_length=63)
    index: NonNegativeInt = Field(lt=MAX_MODULES, description="position in the whole detector")
    x: NonNegativeInt
    y: NonNegativeInt
    rotation: int = Field(0, ge=0, le=3, description="quarter turns counter-clockwise")

    def render(self) -> str:
        return f"{self.id} {self.index} {self.x} {self.y} {self.rotation}"


class SystemFile(BaseModel):
    """One system file of the fake; the keys are the fields (see fake_xsp.c)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_id: str = Field(pattern=_ONE_LINE, max_length=63)
    modules: list[ModuleLine] = Field(min_length=1, max_length=MAX_MODULES)
    module_height: PositiveInt = 512
    module_width: PositiveInt = 1536
    depth: Literal[12, 24] = 12
    detector_modules: PositiveInt | None = None
    full_height: PositiveInt | None = None
    full_width: PositiveInt | None = None
    max_frame_rate: PositiveFloat | None = None
    buffers: PositiveInt = 1024
    trigger_period_ms: PositiveFloat = 2.0
    trigger_delay_ms: NonNegativeFloat = 20.0
    lose_frame: list[Fault] = Field(default_factory=list)
    missing_frame: list[Fault] = Field(default_factory=list)
    corrupt_frame: list[Fault] = Field(default_factory=list)
    stall_module: list[Fault] = Field(default_factory=list)
    open_error: str | None = Field(None, pattern=_ONE_LINE)

    @model_validator(mode="after")
    def _modules_differ(self) -> SystemFile:
        for attribute in ("id", "index"):
            values = [getattr(module, attribute) for module in self.modules]
            if len(set(values)) != len(values):
                raise ValueError(f"module {attribute}s must differ, got {values}")
        if self.detector_modules is not None:
            beyond = [m.id for m in self.modules if m.index >= self.detector_modules]
            if beyond:
                raise ValueError(
                    f"modules {beyond} have an index beyond detector_modules "
                    f"{self.detector_modules}"
                )
        return self

    def render(self) -> str:
        """The file's text: settings first, then the module lines, then the faults."""
        lines = [f"# Lambda system {self.system_id}, written by sim.lambda_fake.system_file"]
        for key in (
            "system_id",
            "module_height",
            "module_width",
            "depth",
            "detector_modules",
            "full_height",
            "full_width",
            "max_frame_rate",
            "buffers",
            "trigger_period_ms",
            "trigger_delay_ms",
        ):
            value = getattr(self, key)
            if value is not None:
                lines.append(f"{key} = {value}")
        lines.extend(f"module = {module.render()}" for module in self.modules)
        for key in FAULT_KEYS:
            faults: list[Fault] = getattr(self, key)
            if faults:
                lines.append(f"{key} = " + ",".join(f"{m}:{n}" for m, n in faults))
        if self.open_error is not None:
            lines.append(f"open_error = {self.open_error}")
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write the file (replacing one there); returns its path."""
        written = Path(path)
        written.write_text(self.render())
        return written


def windmill_systems(
    module_shape: Sequence[int] = (512, 1536),
    *,
    system_id: str = "formax-lambda",
    **settings: Any,
) -> tuple[SystemFile, SystemFile]:
    """The two systems (DCUs) of ForMAX's four-module windmill, two modules each.

    Placement and full image come from :func:`sim.geometry.windmill`, so the
    fake's module info agrees with the generator's and the receiver's idea of
    the detector; module ``k`` of the windmill is index ``k`` and the first
    system serves m0 and m1, the second m2 and m3. ``settings`` are further
    fields of both files (``depth``, ``buffers``, faults, ...).
    """
    rows, columns = (int(n) for n in module_shape)
    geometry = windmill((rows, columns))
    modules = [
        ModuleLine(id=place.name, index=k, x=place.x, y=place.y, rotation=place.rotation % 4)
        for k, place in enumerate(geometry.modules)
    ]
    common: dict[str, Any] = {
        "system_id": system_id,
        "module_height": rows,
        "module_width": columns,
        "detector_modules": len(modules),
        "full_height": geometry.full_shape[0],
        "full_width": geometry.full_shape[1],
        **settings,
    }
    return (
        SystemFile.model_validate({**common, "modules": modules[:2]}),
        SystemFile.model_validate({**common, "modules": modules[2:]}),
    )

"""Where the modules of a simulated multi-module detector sit in its full image.

A multi-module detector (XSpectrum Lambda at ForMAX: four modules in a
"windmill" around a central hole, docs/architecture.md#multi-module-detectors) sends one stream per
module. The generator cuts each synthetic full frame into the modules' parts
so that whoever assembles them again can compare with the full frame.

Placement, as the receiver's configuration and MAX IV's Lambda headers give
it: a module's frame is turned ``rotation`` quarter turns counter-clockwise
(``numpy.rot90``) and its first row and column land at row ``y``, column
``x`` of the full image. The JSON geometry file has the receiver's shape:
``{"full_shape": [H, W], "modules": [{"name", "x", "y", "rotation"}, ...]}``
(other keys of a module, such as the receiver's ``connect``, are ignored).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, model_validator

ROW_GAP = 4
"""Pixels between modules placed in a row (any count but the windmill's four)."""


class ModulePlace(BaseModel):
    """One module: its name and where its (turned) frame goes in the full image."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    x: NonNegativeInt
    y: NonNegativeInt
    rotation: int = Field(0, description="quarter turns counter-clockwise, as numpy.rot90")

    def placed_shape(self, module_shape: Sequence[int]) -> tuple[int, int]:
        """Rows and columns the module covers in the full image once turned."""
        rows, columns = module_shape
        return (rows, columns) if self.rotation % 2 == 0 else (columns, rows)


class Geometry(BaseModel):
    """The full image and its modules, in stream order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    full_shape: tuple[PositiveInt, PositiveInt]
    modules: list[ModulePlace] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _distinct_names(self) -> Geometry:
        names = [module.name for module in self.modules]
        if len(set(names)) != len(names):
            raise ValueError(f"module names must differ, got {names}")
        return self

    def check_fits(self, module_shape: Sequence[int]) -> None:
        """Raise ValueError naming a module that reaches out of the full image or overlaps."""
        taken = np.zeros(self.full_shape, dtype=bool)
        for module in self.modules:
            rows, columns = module.placed_shape(module_shape)
            if module.y + rows > self.full_shape[0] or module.x + columns > self.full_shape[1]:
                raise ValueError(
                    f"module {module.name!r} ({rows}x{columns} once turned, at x={module.x}, "
                    f"y={module.y}) reaches out of full_shape {list(self.full_shape)}"
                )
            region = taken[module.y : module.y + rows, module.x : module.x + columns]
            if region.any():
                raise ValueError(f"module {module.name!r} overlaps another module")
            region[...] = True

    def names(self) -> list[str]:
        return [module.name for module in self.modules]


def windmill(module_shape: Sequence[int]) -> Geometry:
    """Four modules turned a quarter more each, around a central hole (ForMAX's Lambda).

    For modules of H x W the full image is (H + W) square and the hole
    |W - H| square: m0 along the top, m1 down the right side, m2 along the
    bottom, m3 up the left side.
    """
    rows, columns = (int(n) for n in module_shape)
    side = rows + columns
    return Geometry(
        full_shape=(side, side),
        modules=[
            ModulePlace(name="m0", x=0, y=0, rotation=0),
            ModulePlace(name="m1", x=columns, y=0, rotation=1),
            ModulePlace(name="m2", x=rows, y=columns, rotation=2),
            ModulePlace(name="m3", x=0, y=rows, rotation=3),
        ],
    )


def in_a_row(count: int, module_shape: Sequence[int]) -> Geometry:
    """``count`` modules side by side, unturned, ROW_GAP pixels apart."""
    rows, columns = (int(n) for n in module_shape)
    return Geometry(
        full_shape=(rows, count * columns + (count - 1) * ROW_GAP),
        modules=[
            ModulePlace(name=f"m{k}", x=k * (columns + ROW_GAP), y=0, rotation=0)
            for k in range(count)
        ],
    )


def default_geometry(count: int, module_shape: Sequence[int]) -> Geometry:
    """The windmill for four modules, a row for any other count."""
    return windmill(module_shape) if count == 4 else in_a_row(count, module_shape)


def load_geometry(path: Path) -> Geometry:
    """A geometry file (JSON, see the module docstring); ValueError says what is wrong."""
    try:
        return Geometry.model_validate(json.loads(path.read_text()))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def module_pixels(full: np.ndarray, module: ModulePlace, module_shape: Sequence[int]) -> np.ndarray:
    """The module's frame: its region of ``full``, turned back to how the module sees it."""
    rows, columns = module.placed_shape(module_shape)
    region = full[module.y : module.y + rows, module.x : module.x + columns]
    return np.ascontiguousarray(np.rot90(region, -module.rotation))


def covered(geometry: Geometry, module_shape: Sequence[int]) -> np.ndarray:
    """True for the pixels of the full image that some module covers."""
    mask = np.zeros(geometry.full_shape, dtype=bool)
    for module in geometry.modules:
        rows, columns = module.placed_shape(module_shape)
        mask[module.y : module.y + rows, module.x : module.x + columns] = True
    return mask

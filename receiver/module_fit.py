"""What the module frames of a series look like, and whether they fit the full image.

All module planes of a series go in one dataset, so they must share shape,
type and compression. The series' first frame fixes them: what most modules
send (ties: the first module). Only then is a module's shape known, so only
then can it be checked that every module, turned and placed as configured,
lies inside the full image and overlaps no other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from protocols.model import Image, ModuleLayout
from receiver.module_feed import module_label

FrameLayout = tuple[tuple[int, ...], str, str]
"""A module frame's shape, dtype (as ``numpy.dtype.str``) and compression."""


def layout_of(image: Image) -> FrameLayout:
    return image.shape, image.dtype.str, image.compression


def describe(layout: FrameLayout) -> str:
    """A layout as a report names it: ``6x10 uint16 bslz4``."""
    shape, dtype, compression = layout
    return f"{'x'.join(map(str, shape))} {np.dtype(dtype).name} {compression}"


def most_sent(parts: Sequence[Image | None]) -> FrameLayout:
    """What most modules send in a frame (ties: the first module); one part at least."""
    layouts = [layout_of(part) for part in parts if part is not None]
    counts = Counter(layouts)
    return max(layouts, key=lambda layout: counts[layout])


def fit_problems(
    shape: tuple[int, ...], layout: ModuleLayout, placed_by: str = "the configuration"
) -> list[str]:
    """Modules whose ``shape`` frames, placed as ``placed_by`` says, leave the full image or overlap."""
    if len(shape) != 2:
        return [
            f"module frames must have 2 dimensions to be placed in the full image; "
            f"they have shape {list(shape)}"
        ]
    height, width = layout.full_shape
    problems = []
    boxes: list[tuple[str, tuple[int, int, int, int]]] = []
    for module in layout.modules:
        label = module_label(module)
        rotation = module.rotation % 4
        rows, columns = shape if rotation % 2 == 0 else shape[::-1]
        box = (module.y, module.x, module.y + rows, module.x + columns)
        if box[2] > height or box[3] > width:
            problems.append(
                f"{label}: its {shape[0]}x{shape[1]} frames, turned {rotation} "
                f"quarter turns and placed at x={module.x}, y={module.y}, reach beyond "
                f"full_shape {list(layout.full_shape)}; the assembled image cuts them"
            )
        for other, other_box in boxes:
            if _overlap(box, other_box):
                problems.append(
                    f"{label} overlaps module {other!r} in the full image; "
                    f"check x, y and rotation in {placed_by}"
                )
        boxes.append((module.name, box))
    return problems


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Boxes (top, left, bottom, right) that share a pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

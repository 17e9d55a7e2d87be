"""Modules placed by their own headers, as MAX IV's Lambda entries leave it to them.

A MAX IV ``class: Lambda`` entry names one DCU address per module and
nothing else: each module's streamer puts its place in the 2nd part of its
series header (``x``, ``y``, ``rotation`` in degrees, ``full_shape``;
docs/protocols.md#multi-module-stins). When the configuration places no
module (no ``x``/``y``), the receiver's layout is a :class:`HeaderPlacedLayout`:
the modules' names and endpoints, and whatever ``full_shape`` the
configuration gives. Every series then gets its own layout from its
headers (:func:`layout_from_headers`): the modules' placements, and the full
image most of them name. A module whose header does not place it, or that
sent no header in time, cannot be placed: it is left out of the series
(reported), so nothing is stored at a made-up place; one that names another
full image is reported and stored where it places itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protocols.model import ModuleLayout, ModulePlacement
from receiver.module_feed import module_label

PLACEMENT_KEYS = ("x", "y", "rotation", "full_shape")
"""Keys of a module header's 2nd part that place the module (MAX IV's Lambda streamers)."""


@dataclass(frozen=True, slots=True)
class HeaderPlacedLayout(ModuleLayout):
    """The configured modules, placed anew by their headers at each series.

    The placements' ``x``, ``y`` and ``rotation`` are 0 and mean nothing;
    ``full_shape`` is the configured one when ``shape_given``, else (0, 0).
    """

    shape_given: bool = False


def _integer(value: Any) -> int | None:
    """``value`` as an int when it is one (JSON may give 90.0); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def placement_from_header(
    placement: ModulePlacement, meta: dict[str, Any]
) -> tuple[ModulePlacement, tuple[int, int]] | str:
    """The module placed as its header says, with the full image it names; or why it cannot be."""
    missing = [key for key in PLACEMENT_KEYS if key not in meta]
    if missing:
        return (
            f"{module_label(placement)} sent a header without {', '.join(missing)}, which "
            "place it in the full image (the configuration leaves that to the headers)"
        )
    x, y, degrees = (_integer(meta[key]) for key in ("x", "y", "rotation"))
    shape = meta["full_shape"]
    sides = [_integer(n) for n in shape] if isinstance(shape, list | tuple) else []
    problems = []
    if x is None or y is None or x < 0 or y < 0:
        problems.append(f"x {meta['x']!r} and y {meta['y']!r} must be integers >= 0")
    if degrees is None or degrees % 90:
        problems.append(f"rotation {meta['rotation']!r} must be a multiple of 90 degrees")
    if len(sides) != 2 or any(n is None or n <= 0 for n in sides):
        problems.append(f"full_shape {shape!r} must be [rows, columns], positive integers")
    if problems or x is None or y is None or degrees is None:
        return f"{module_label(placement)} cannot be placed by its header: {'; '.join(problems)}"
    rows, columns = (int(n) for n in sides if n is not None)
    placed = ModulePlacement(placement.name, placement.endpoint, x, y, degrees // 90 % 4)
    return placed, (rows, columns)


def layout_from_headers(
    configured: HeaderPlacedLayout, placed: Sequence[tuple[ModulePlacement, tuple[int, int]]]
) -> tuple[ModuleLayout, list[str]]:
    """One series' layout from its modules' header placements (in module order).

    The full image is the configured one, else the one most modules name
    (ties: the first module's); a module naming another is reported.
    """
    problems: list[str] = []
    if configured.shape_given:
        full_shape = configured.full_shape
        source = "the configuration's"
    elif placed:
        named = Counter(shape for _, shape in placed)
        most = max(named.values())
        full_shape = next(shape for _, shape in placed if named[shape] == most)
        source = "the other modules'"
    else:
        full_shape, source = (0, 0), ""
    for placement, shape in placed:
        if shape != full_shape:
            problems.append(
                f"{module_label(placement)} names the full image {list(shape)} in its header, "
                f"unlike {source} {list(full_shape)}; {list(full_shape)} is used"
            )
    layout = ModuleLayout(
        modules=tuple(placement for placement, _ in placed),
        full_shape=full_shape,
        fill_value=configured.fill_value,
    )
    return layout, problems

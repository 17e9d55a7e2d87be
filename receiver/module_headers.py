"""Opening a multi-module series: when, with which modules, under which header.

A series starts when every module's header has come, or ``gap_timeout``
after the first one: the missing modules are reported and left out (they may
join later with a header naming the same file). The file name is the one
most modules name (ties: the first module in the configuration); a module
naming another file is reported and left out of the series, as its frames
cannot go in that file.

The headers' placement fields (``x``, ``y``, ``rotation`` in degrees,
``full_shape``, as MAX IV's Lambda streamers send them) are checked against
the configuration, which is what is stored: a module that places itself
elsewhere is reported. When the configuration places no module (a MAX IV
``class: Lambda`` entry), the headers are the placement instead
(:mod:`receiver.module_placement`): each series gets the layout its headers
give, and a module that cannot be placed (no usable placement in its
header, or no header in time) is left out of that series. The first
module's header metadata becomes the series'; a key in which another
module's header differs goes to that module's own group.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any, cast

from protocols.model import ModuleLayout, ModulePlacement, SeriesStart
from receiver.module_feed import ModuleFeed, ModuleState, module_label
from receiver.module_placement import (
    PLACEMENT_KEYS,
    HeaderPlacedLayout,
    layout_from_headers,
    placement_from_header,
)
from receiver.module_timeouts import Alarm
from receiver.nexus import DETECTOR_FIELDS

__all__ = ["PLACEMENT_KEYS", "SeriesOpener", "most_named", "placement_problems", "series_header"]


class SeriesOpener:
    """Opens the next series from the headers at the front of the modules' inboxes."""

    def __init__(
        self, layout: ModuleLayout, modules: Sequence[ModuleFeed], gap_timeout: float
    ) -> None:
        self._layout = layout
        self._modules = modules
        self._gap_timeout = gap_timeout
        self._first_header: float | None = None

    def open(self, now: float, alarm: Alarm) -> tuple[SeriesStart, list[str]] | None:
        """The series' header and what is wrong with it, once it may open; None meanwhile.

        Opening takes the headers out of the inboxes and puts every module in
        its state for the series: open, absent or excluded.
        """
        heads = [m for m in self._modules if m.heading]
        if not heads:
            self._first_header = None
            return None
        if self._first_header is None:
            self._first_header = now
        if len(heads) < len(self._modules):
            due = self._first_header + self._gap_timeout
            if now < due:
                alarm.set(due)
                return None
        self._first_header = None
        headers = {m.index: cast(SeriesStart, m.inbox.popleft()) for m in heads}
        filename = most_named(list(headers.values()))
        problems: list[str] = []
        by_headers = isinstance(self._layout, HeaderPlacedLayout)
        for module in self._modules:
            module.new_series()
            module.last_taken = now
            header = headers.get(module.index)
            if header is None:
                late = (
                    f"{module.label} sent no header within {self._gap_timeout:g} s of the "
                    "other modules"
                )
                if by_headers:
                    module.state = ModuleState.EXCLUDED
                    problems.append(
                        f"{late}; its header would place it, so the series {filename!r} goes "
                        "on without it and its frames are not stored"
                    )
                else:
                    module.state = ModuleState.ABSENT
                    problems.append(f"{late}; the series {filename!r} goes on without it")
            elif header.filename != filename:
                module.state = ModuleState.EXCLUDED
                problems.append(
                    f"{module.label} names the file {header.filename!r} but the other "
                    f"modules {filename!r}; its frames are not stored"
                )
            else:
                module.state = ModuleState.OPEN
                if not by_headers:
                    problems.extend(placement_problems(module.placement, header.meta, self._layout))
        layout = self._layout
        placements = {m.index: m.placement for m in self._modules}
        if isinstance(layout, HeaderPlacedLayout):
            layout, placed_problems = self._placed(layout, headers, placements)
            problems.extend(placed_problems)
        taken = [
            (placements[m.index], headers[m.index])
            for m in self._modules
            if m.state is ModuleState.OPEN
        ]
        first = next(h for h in headers.values() if h.filename == filename)
        start, meta_problems = series_header(taken, layout, first)
        return start, problems + meta_problems

    def _placed(
        self,
        configured: HeaderPlacedLayout,
        headers: dict[int, SeriesStart],
        placements: dict[int, ModulePlacement],
    ) -> tuple[ModuleLayout, list[str]]:
        """The series' layout from the open modules' headers; a module they cannot place is
        left out (its frames are not stored), and ``placements`` gets the others' places."""
        problems: list[str] = []
        placed: list[tuple[ModulePlacement, tuple[int, int]]] = []
        for module in self._modules:
            if module.state is not ModuleState.OPEN:
                continue
            found = placement_from_header(module.placement, headers[module.index].meta)
            if isinstance(found, str):
                module.state = ModuleState.EXCLUDED
                problems.append(f"{found}; its frames are not stored in this series")
                continue
            placements[module.index] = found[0]
            placed.append(found)
        layout, shape_problems = layout_from_headers(configured, placed)
        return layout, problems + shape_problems


def most_named(headers: Sequence[SeriesStart]) -> str:
    """The file name most headers name; ties: the first header's (in module order)."""
    names = Counter(h.filename for h in headers)
    most = max(names.values())
    return next(h.filename for h in headers if names[h.filename] == most)


def placement_problems(
    placement: ModulePlacement, meta: dict[str, Any], layout: ModuleLayout
) -> list[str]:
    """The header's placement (MAX IV: x, y, rotation in degrees, full_shape) against ours."""
    told = {key: meta[key] for key in PLACEMENT_KEYS if key in meta}
    ours = {
        "x": placement.x,
        "y": placement.y,
        "rotation": placement.rotation % 4 * 90,
        "full_shape": list(layout.full_shape),
    }
    wrong = [
        key
        for key, value in told.items()
        if (value % 360 if key == "rotation" and isinstance(value, int) else value) != ours[key]
    ]
    if not wrong:
        return []
    theirs = ", ".join(f"{key} {told[key]!r}" for key in wrong)
    mine = ", ".join(f"{key} {ours[key]!r}" for key in wrong)
    return [
        f"{module_label(placement)} places itself at {theirs} in its header but the "
        f"configuration at {mine}; the configuration's placement is stored and used"
    ]


def series_header(
    taken: Sequence[tuple[ModulePlacement, SeriesStart]],
    layout: ModuleLayout,
    first: SeriesStart | None = None,
) -> tuple[SeriesStart, list[str]]:
    """One header for the series from the modules in it, and the metadata it had to drop.

    The first module's metadata is the series'; another module's keys whose
    values differ are its own. Placement keys are the layout's, not
    metadata; a key named like a module or like the file's own data would
    clash with that group or dataset, so it is dropped and reported. When no
    module is in the series (none could be placed), ``first`` (the first
    header that came) names the file and the series has no metadata.
    """
    if not taken:
        if first is None:
            raise ValueError("a series needs a module in it or the first header that came")
        return replace(first, meta={}, modules=layout, module_meta={}), []
    lead = taken[0][1]
    reserved: Collection[str] = {p.name for p in layout.modules} | DETECTOR_FIELDS
    problems = []
    meta = {k: v for k, v in lead.meta.items() if k not in PLACEMENT_KEYS}
    for key in [k for k in meta if k in reserved]:
        del meta[key]
        problems.append(
            f"header metadata {key!r} has the name of a module or of the file's own "
            "data; it was not stored"
        )
    module_meta = {}
    for placement, header in taken:
        own = {
            k: v
            for k, v in header.meta.items()
            if k not in PLACEMENT_KEYS and (k not in meta or meta[k] != v) and k not in reserved
        }
        if own:
            module_meta[placement.name] = own
    start = SeriesStart(
        seq=lead.seq,
        filename=lead.filename,
        meta=meta,
        fields=lead.fields,
        modules=layout,
        module_meta=module_meta,
    )
    return start, problems

"""Modules placed by their headers (a MAX IV Lambda entry), piece by piece, without sockets.

MAX IV's ``class: Lambda`` entry names the modules' DCUs only; each module's
header places it (``x``, ``y``, ``rotation`` in degrees, ``full_shape``).
With real streams: ``test_maxiv_drop_in_e2e.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from protocols.model import Image, ModuleLayout, ModulePlacement, SeriesStart
from receiver.config import ConfigError, load
from receiver.module_feed import ModuleFeed, ModuleState
from receiver.module_frames import FrameJoin
from receiver.module_headers import SeriesOpener
from receiver.module_output import MatchedOutput
from receiver.module_placement import (
    HeaderPlacedLayout,
    layout_from_headers,
    placement_from_header,
)
from receiver.module_timeouts import Alarm
from receiver.reorder import Reorderer
from receiver.stream_items import ModuleImage, Problem

pytestmark = pytest.mark.timeout(20)

GAP = 2.0
SHAPE = (4, 6)
UNPLACED = HeaderPlacedLayout(
    modules=tuple(
        ModulePlacement(f"m{k}", f"tcp://dcu{k // 2 + 1}:{9010 + k}", 0, 0, 0) for k in range(3)
    ),
    full_shape=(0, 0),
    fill_value=0,
)
PLACES = [
    {"x": 0, "y": 0, "rotation": 0, "full_shape": [4, 18]},
    {"x": 6, "y": 0, "rotation": 0, "full_shape": [4, 18]},
    {"x": 12, "y": 0, "rotation": 360, "full_shape": [4, 18]},
]


def feeds(layout: ModuleLayout = UNPLACED) -> list[ModuleFeed]:
    return [
        ModuleFeed(index, placement, Reorderer(8, GAP))
        for index, placement in enumerate(layout.modules)
    ]


def header(meta: dict[str, Any], filename: str = "scan.h5") -> SeriesStart:
    return SeriesStart(0, filename, dict(meta))


def image(frame: int) -> Image:
    return Image(frame + 1, frame, SHAPE, np.dtype("uint16"), "none", bytes(math.prod(SHAPE) * 2))


def open_series(
    metas: list[dict[str, Any] | None], layout: HeaderPlacedLayout = UNPLACED
) -> tuple[list[ModuleFeed], SeriesStart, list[str]]:
    modules = feeds(layout)
    for module, meta in zip(modules, metas, strict=True):
        if meta is not None:
            module.inbox.append(header(meta))
    opener, alarm = SeriesOpener(layout, modules, GAP), Alarm()
    opened = opener.open(0.0, alarm) or opener.open(GAP, alarm)
    assert opened is not None, "the series did not open"
    return modules, *opened


def test_a_header_places_its_module_in_degrees_counter_clockwise() -> None:
    module = UNPLACED.modules[1]

    placed = placement_from_header(
        module, {"x": 8, "y": 2.0, "rotation": -90, "full_shape": [9, 9]}
    )

    assert placed == (ModulePlacement("m1", module.endpoint, 8, 2, 3), (9, 9))


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        ({"sensor": "CdTe"}, "sent a header without x, y, rotation, full_shape"),
        ({"x": 0, "y": 0, "full_shape": [4, 18]}, "sent a header without rotation"),
        ({"x": -1, "y": 0, "rotation": 0, "full_shape": [4, 18]}, "x -1 and y 0 must be"),
        ({"x": 0, "y": 0, "rotation": 45, "full_shape": [4, 18]}, "rotation 45 must be a multiple"),
        ({"x": 0, "y": 0, "rotation": 0, "full_shape": [4]}, "full_shape [4] must be"),
        ({"x": True, "y": 0, "rotation": 0, "full_shape": [4, 18]}, "x True and y 0 must be"),
    ],
)
def test_a_header_that_does_not_place_its_module_says_why(meta: dict, reason: str) -> None:
    found = placement_from_header(UNPLACED.modules[0], meta)

    assert isinstance(found, str)
    assert found.startswith("module 'm0' (tcp://dcu1:9010)")
    assert reason in found


def test_the_full_image_is_the_one_most_modules_name() -> None:
    m0, m1, m2 = (ModulePlacement(f"m{k}", f"tcp://a:{k}", 6 * k, 0, 0) for k in range(3))

    layout, problems = layout_from_headers(UNPLACED, [(m0, (4, 18)), (m1, (5, 18)), (m2, (4, 18))])

    assert layout == ModuleLayout((m0, m1, m2), (4, 18), 0)
    assert problems == [
        "module 'm1' (tcp://a:1) names the full image [5, 18] in its header, unlike the other "
        "modules' [4, 18]; [4, 18] is used"
    ]
    given = HeaderPlacedLayout(UNPLACED.modules, (8, 18), 0, shape_given=True)
    layout, problems = layout_from_headers(given, [(m0, (4, 18))])
    assert layout.full_shape == (8, 18)
    assert "unlike the configuration's [8, 18]" in problems[0]


def test_a_series_takes_its_layout_from_the_headers() -> None:
    metas = [{**place, "count_time": 0.1} for place in PLACES]

    modules, start, problems = open_series(metas)

    assert problems == []
    assert start.modules == ModuleLayout(
        modules=(
            ModulePlacement("m0", "tcp://dcu1:9010", 0, 0, 0),
            ModulePlacement("m1", "tcp://dcu1:9011", 6, 0, 0),
            ModulePlacement("m2", "tcp://dcu2:9012", 12, 0, 0),
        ),
        full_shape=(4, 18),
        fill_value=0,
    )
    assert start.meta == {"count_time": 0.1}
    assert all(m.state is ModuleState.OPEN for m in modules)


def test_a_module_its_header_cannot_place_or_without_a_header_is_left_out() -> None:
    modules, start, problems = open_series([PLACES[0], {"sensor": "CdTe"}, None])

    assert [m.state for m in modules] == [
        ModuleState.OPEN,
        ModuleState.EXCLUDED,
        ModuleState.EXCLUDED,
    ]
    assert start.modules is not None
    assert [p.name for p in start.modules.modules] == ["m0"]
    assert problems == [
        "module 'm2' (tcp://dcu2:9012) sent no header within 2 s of the other modules; its "
        "header would place it, so the series 'scan.h5' goes on without it and its frames "
        "are not stored",
        "module 'm1' (tcp://dcu1:9011) sent a header without x, y, rotation, full_shape, which "
        "place it in the full image (the configuration leaves that to the headers); its "
        "frames are not stored in this series",
    ]


def test_a_series_none_of_whose_modules_can_be_placed_still_opens_and_says_so() -> None:
    modules, start, problems = open_series([{}, {}, {}])

    assert start.filename == "scan.h5"
    assert start.modules == ModuleLayout((), (0, 0), 0)
    assert all(m.state is ModuleState.EXCLUDED for m in modules)
    assert len(problems) == 3


def test_frames_have_one_plane_per_module_of_the_series_layout() -> None:
    modules, start, _ = open_series([PLACES[0], {}, PLACES[2]])
    output = MatchedOutput()
    output.open_series(start, [])
    output.take(10)
    join = FrameJoin(UNPLACED, modules, output, GAP)
    assert start.modules is not None
    join.begin(start.modules)

    join.add(modules[0], image(0), now=0.0)
    join.add(modules[2], image(0), now=0.1)

    (joined,) = output.take(10)
    assert isinstance(joined, ModuleImage)
    assert joined.shape == (2, *SHAPE)
    assert joined.layout is start.modules
    assert len(joined.chunks()) == 2


def test_modules_whose_header_places_them_overlapping_are_named_by_their_headers() -> None:
    overlapping = [PLACES[0], {**PLACES[1], "x": 3}, PLACES[2]]
    modules, start, _ = open_series(overlapping)
    output = MatchedOutput()
    output.open_series(start, [])
    output.take(10)
    join = FrameJoin(UNPLACED, modules, output, GAP)
    assert start.modules is not None
    join.begin(start.modules)

    for module in modules:
        join.add(module, image(0), now=0.0)

    reasons = [item.reason for item in output.take(10) if isinstance(item, Problem)]
    assert reasons == [
        "module 'm1' (tcp://dcu1:9011) overlaps module 'm0' in the full image; check x, y "
        "and rotation in the modules' headers"
    ]


# ------------------------------------------------------------ configuration


def modules_settings(tmp_path: Any, *modules: dict[str, Any]) -> dict[str, Any]:
    return {"modules": list(modules), "data_root": str(tmp_path)}


def test_modules_without_x_and_y_need_no_full_shape(tmp_path: Any) -> None:
    config = load(
        overrides=modules_settings(
            tmp_path,
            {"name": "m0", "connect": "tcp://127.0.0.1:9010"},
            {"name": "m1", "connect": "tcp://127.0.0.1:9011"},
        )
    )

    assert [m.placed for m in config.modules] == [False, False]
    assert config.full_shape is None


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        ({"x": 8, "y": 0}, "either every module is placed here (x, y) or none is"),
        ({"x": 8}, "module 'm1': give both x and y, or neither"),
        ({"rotation": 1}, "module 'm1': a rotation needs x and y too"),
    ],
)
def test_a_half_placed_detector_is_refused_with_the_reason(
    tmp_path: Any, second: dict[str, Any], expected: str
) -> None:
    settings = modules_settings(
        tmp_path,
        {"name": "m0", "connect": "tcp://127.0.0.1:9010"},
        {"name": "m1", "connect": "tcp://127.0.0.1:9011", **second},
    )

    with pytest.raises(ConfigError) as refused:
        load(overrides=settings)
    assert expected in str(refused.value)

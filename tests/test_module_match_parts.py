"""The pieces of the module matcher, each on its own, without sockets or threads.

The receiver's behaviour with real module streams is in ``test_modules.py``;
here each piece's own rule is pinned down with times given by the test, so
no outcome depends on scheduling: which series opens and under which
header, what fits the full image, when a frame is complete, when a waiting
frame gives up on a module and what that module is called.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from protocols.model import (
    Image,
    Message,
    ModuleLayout,
    ModulePlacement,
    SeriesEnd,
    SeriesStart,
)
from receiver.module_feed import ModuleFeed, ModuleState, tally
from receiver.module_fit import fit_problems, most_sent
from receiver.module_frames import FrameJoin
from receiver.module_headers import SeriesOpener, placement_problems, series_header
from receiver.module_output import Item, MatchedOutput
from receiver.module_timeouts import Alarm, FrameTimeouts
from receiver.reorder import Reorderer
from receiver.stream_items import Malformed, ModuleImage, Problem

pytestmark = pytest.mark.timeout(20)

GAP = 2.0
SHAPE = (4, 6)
LAYOUT = ModuleLayout(
    modules=(
        ModulePlacement("m0", "tcp://dcu1:9010", x=0, y=0, rotation=0),
        ModulePlacement("m1", "tcp://dcu1:9011", x=6, y=0, rotation=0),
        ModulePlacement("m2", "tcp://dcu2:9012", x=12, y=0, rotation=0),
    ),
    full_shape=(4, 18),
    fill_value=0,
)


def feeds(layout: ModuleLayout = LAYOUT) -> list[ModuleFeed]:
    return [
        ModuleFeed(index, placement, Reorderer(8, GAP))
        for index, placement in enumerate(layout.modules)
    ]


def image(frame: int, shape: tuple[int, ...] = SHAPE, dtype: str = "uint16") -> Image:
    size = math.prod(shape) * np.dtype(dtype).itemsize
    return Image(frame + 1, frame, shape, np.dtype(dtype), "none", bytes(size))


def header(filename: str = "scan.h5", **meta: object) -> SeriesStart:
    return SeriesStart(0, filename, dict(meta))


def reasons_in(items: list[Item]) -> list[str]:
    return [item.reason for item in items if isinstance(item, Problem)]


def reasons(output: MatchedOutput) -> list[str]:
    return reasons_in(output.take(100))


def opened(modules: list[ModuleFeed]) -> tuple[FrameJoin, MatchedOutput]:
    """A join over ``modules``, all open in a series whose header is already out."""
    output = MatchedOutput()
    output.open_series(header(), [])
    output.take(100)
    for module in modules:
        module.state = ModuleState.OPEN
    join = FrameJoin(LAYOUT, modules, output, GAP)
    join.begin()
    return join, output


# ------------------------------------------------------------------ headers


def test_a_series_waits_for_every_header_until_gap_timeout_then_opens_without_the_late() -> None:
    modules = feeds()
    modules[0].inbox.append(header())
    modules[2].inbox.append(header())
    opener, alarm = SeriesOpener(LAYOUT, modules, GAP), Alarm()

    assert opener.open(10.0, alarm) is None
    assert alarm.at == 10.0 + GAP
    assert opener.open(10.0 + GAP - 0.01, alarm) is None

    start, problems = opener.open(10.0 + GAP, alarm) or pytest.fail("the series did not open")
    assert start.filename == "scan.h5"
    assert [m.state for m in modules] == [ModuleState.OPEN, ModuleState.ABSENT, ModuleState.OPEN]
    assert problems == [
        "module 'm1' (tcp://dcu1:9011) sent no header within 2 s of the other modules; "
        "the series 'scan.h5' goes on without it"
    ]
    assert not any(m.heading for m in modules)


def test_the_file_most_modules_name_wins_and_ties_go_to_the_first_module() -> None:
    modules = feeds()
    for module, name in zip(modules, ["b.h5", "a.h5", "a.h5"], strict=True):
        module.inbox.append(header(name))
    start, problems = SeriesOpener(LAYOUT, modules, GAP).open(0.0, Alarm()) or pytest.fail()
    assert start.filename == "a.h5"
    assert modules[0].state is ModuleState.EXCLUDED
    assert problems == [
        "module 'm0' (tcp://dcu1:9010) names the file 'b.h5' but the other modules 'a.h5'; "
        "its frames are not stored"
    ]

    two = ModuleLayout(LAYOUT.modules[:2], LAYOUT.full_shape, 0)
    tied = feeds(two)
    tied[0].inbox.append(header("b.h5"))
    tied[1].inbox.append(header("a.h5"))
    start, _ = SeriesOpener(two, tied, GAP).open(0.0, Alarm()) or pytest.fail()
    assert start.filename == "b.h5"


def test_a_header_placement_is_compared_with_the_configuration_in_degrees() -> None:
    turned = ModulePlacement("m1", "tcp://dcu1:9011", x=6, y=0, rotation=1)
    agreeing = {"x": 6, "y": 0, "rotation": 450, "full_shape": [4, 18], "sensor": "CdTe"}
    assert placement_problems(turned, agreeing, LAYOUT) == []
    assert placement_problems(turned, {"sensor": "CdTe"}, LAYOUT) == []

    assert placement_problems(turned, {"x": 7, "rotation": 180, "y": 0}, LAYOUT) == [
        "module 'm1' (tcp://dcu1:9011) places itself at x 7, rotation 180 in its header but "
        "the configuration at x 6, rotation 90; the configuration's placement is stored and used"
    ]


def test_the_series_header_is_the_first_modules_and_a_module_keeps_what_differs() -> None:
    taken = [
        (LAYOUT.modules[0], header(count_time=0.1, sensor="CdTe", x=0, data=1)),
        (LAYOUT.modules[1], header(count_time=0.1, sensor="Si", x=6, gain="high")),
    ]
    start, problems = series_header(taken, LAYOUT)

    assert start.meta == {"count_time": 0.1, "sensor": "CdTe"}
    assert start.module_meta == {"m1": {"sensor": "Si", "gain": "high"}}
    assert start.modules is LAYOUT
    assert problems == [
        "header metadata 'data' has the name of a module or of the file's own data; "
        "it was not stored"
    ]


# ---------------------------------------------------------------------- fit


def test_modules_reaching_beyond_the_full_image_or_overlapping_are_named() -> None:
    assert fit_problems(SHAPE, LAYOUT) == []
    crowded = ModuleLayout(
        (
            ModulePlacement("m0", "tcp://a:1", x=0, y=0, rotation=0),
            ModulePlacement("m1", "tcp://a:2", x=3, y=0, rotation=1),
        ),
        full_shape=(4, 18),
        fill_value=0,
    )
    assert fit_problems(SHAPE, crowded) == [
        "module 'm1' (tcp://a:2): its 4x6 frames, turned 1 quarter turns and placed at x=3, "
        "y=0, reach beyond full_shape [4, 18]; the assembled image cuts them",
        "module 'm1' (tcp://a:2) overlaps module 'm0' in the full image; "
        "check x, y and rotation in the configuration",
    ]
    assert fit_problems((2, 4, 6), LAYOUT) == [
        "module frames must have 2 dimensions to be placed in the full image; "
        "they have shape [2, 4, 6]"
    ]


def test_the_layout_most_modules_send_is_the_series_and_ties_go_to_the_first() -> None:
    small, large = image(0, (2, 3)), image(0)
    assert most_sent([small, large, large]) == (SHAPE, "<u2", "none")
    assert most_sent([small, None, large]) == ((2, 3), "<u2", "none")


# ------------------------------------------------------------------- frames


def test_a_frame_goes_on_once_every_open_module_sent_it_in_any_order() -> None:
    modules = feeds()
    join, output = opened(modules)
    join.add(modules[2], image(1), now=0.0)
    join.add(modules[0], image(1), now=0.1)
    assert len(output) == 0
    assert (modules[0].held, modules[0].held_bytes) == (1, math.prod(SHAPE) * 2)

    join.add(modules[1], image(1), now=0.2)
    (joined,) = output.take(10)
    assert isinstance(joined, ModuleImage)
    assert (joined.frame, joined.shape) == (1, (3, *SHAPE))
    assert [m.held_bytes for m in modules] == [0, 0, 0]


def test_a_module_that_ended_is_not_waited_for_and_counts_as_missing() -> None:
    modules = feeds()
    join, output = opened(modules)
    join.add(modules[0], image(0), now=0.0)
    join.add(modules[1], image(0), now=0.0)
    modules[2].state = ModuleState.ENDED
    join.flush_complete()

    (joined,) = output.take(10)
    assert isinstance(joined, ModuleImage)
    assert joined.chunks()[2] is None
    assert (modules[2].missing, modules[2].first_missing) == (1, 0)


def test_parts_of_another_layout_are_left_out_and_named_once() -> None:
    modules = feeds()
    join, output = opened(modules)
    for frame in (0, 1):
        join.add(modules[0], image(frame), now=0.0)
        join.add(modules[1], image(frame, dtype="uint32"), now=0.0)
        join.add(modules[2], image(frame), now=0.0)

    items = output.take(10)
    assert [type(item) for item in items] == [Problem, ModuleImage, ModuleImage]
    assert reasons_in(items) == [
        "module 'm1' (tcp://dcu1:9011) sends 4x6 uint32 none frames but the series started "
        "with 4x6 uint16 none; its frames are not stored"
    ]
    assert modules[1].missing == 2


def test_a_part_of_a_frame_already_stored_is_dropped_and_named_once() -> None:
    modules = feeds()
    join, output = opened(modules)
    modules[2].state = ModuleState.SILENT
    for frame in (0, 1):
        join.add(modules[0], image(frame), now=0.0)
        join.add(modules[1], image(frame), now=0.0)
    output.take(10)
    modules[2].state = ModuleState.OPEN
    join.add(modules[2], image(0), now=1.0)
    join.add(modules[2], image(1), now=1.0)
    assert reasons(output) == [
        "module 'm2' (tcp://dcu2:9012) sent frame 0 after it was stored without it "
        "(more than 2 s late); dropped"
    ]
    assert join.finish() == 2


# ----------------------------------------------------------------- timeouts


def test_a_quiet_module_becomes_silent_one_that_moved_on_skipped_the_frame() -> None:
    modules = feeds()
    join, output = opened(modules)
    timeouts, alarm = FrameTimeouts(join, output, GAP), Alarm()
    join.add(modules[0], image(0), now=0.0)
    join.add(modules[0], image(1), now=1.0)
    join.add(modules[1], image(1), now=1.0)  # m1 moved on past frame 0; m2 sent nothing
    modules[0].last_taken = modules[1].last_taken = 1.0

    assert not timeouts.expire(GAP - 0.1, alarm)
    assert alarm.at == GAP

    assert timeouts.expire(GAP, alarm)
    assert modules[2].state is ModuleState.SILENT
    assert modules[1].state is ModuleState.OPEN
    frames = [item.frame for item in output.take(10) if isinstance(item, ModuleImage)]
    assert frames == [0, 1]  # frame 1 waited only for the module now silent
    assert modules[1].missing == 1 and modules[2].missing == 2


def test_a_module_sending_lately_but_nothing_newer_is_given_until_it_is_quiet() -> None:
    modules = feeds()[:2]
    join, output = opened(modules)
    timeouts, alarm = FrameTimeouts(join, output, GAP), Alarm()
    join.add(modules[0], image(0), now=0.0)
    modules[1].last_taken = 1.5  # it took a message lately, but no part of a newer frame

    assert not timeouts.expire(GAP, alarm)
    assert alarm.at == 1.5 + GAP
    assert timeouts.expire(1.5 + GAP, alarm)
    assert modules[1].state is ModuleState.SILENT


def test_the_alarm_keeps_the_earliest_deadline() -> None:
    alarm = Alarm()
    alarm.set(5.0)
    alarm.set(3.0)
    alarm.set(4.0)
    assert alarm.at == 3.0
    alarm.clear()
    assert alarm.at is None


# ------------------------------------------------------------ output, feeds


def test_a_problem_between_series_goes_out_after_the_next_series_header() -> None:
    output = MatchedOutput()
    output.report("a frame outside a series")
    assert len(output) == 0

    output.open_series(header(), ["a module is absent"])
    output.report("during the series")
    output.close_series(SeriesEnd(5))
    items = output.take(10)
    assert isinstance(items[0], SeriesStart) and isinstance(items[-1], SeriesEnd)
    assert reasons_in(items[1:-1]) == [
        "a module is absent",
        "a frame outside a series",
        "during the series",
    ]


def test_a_module_takes_from_its_reorderer_only_within_its_budget() -> None:
    lock = threading.Lock()
    reorderer: Reorderer[Message | Malformed] = Reorderer(
        8, GAP, shared=(lock, threading.Condition(lock))
    )
    module = ModuleFeed(0, LAYOUT.modules[0], reorderer)
    reorderer.put(0, header(), is_header=True)
    for seq in range(1, 6):
        reorderer.put(seq, image(seq))
    budget = {"window": 4, "window_bytes": 10**6}
    with lock:  # as the matcher holds it
        assert module.pull(1.0, **budget)
        assert len(module.inbox) == 4 and module.last_taken == 1.0
        assert not module.pull(2.0, **budget)  # what it took still waits

        module.inbox.clear()
        module.held = 4
        assert not module.pull(2.0, **budget)
        module.held, module.held_bytes = 0, 10**6
        assert not module.pull(2.0, **budget)
        module.held_bytes = 0
        assert module.pull(2.0, **budget)
        assert len(module.inbox) == 2


def test_the_tally_counts_only_the_modules_that_were_in_the_series() -> None:
    modules = feeds()
    ended, silent, excluded = modules
    ended.state, ended.frames = ModuleState.ENDED, 5
    silent.state, silent.frames, silent.missing, silent.first_missing = (
        ModuleState.SILENT,
        3,
        2,
        3,
    )
    excluded.state = ModuleState.EXCLUDED
    assert tally(modules, stored=5) == [
        "the modules disagree on the number of frames: 'm0' 5, 'm1' 3",
        "module 'm1' (tcp://dcu1:9011) is missing from 2 of the 5 frames stored "
        "(the first: frame 3)",
    ]

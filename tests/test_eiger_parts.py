"""The pieces of the simulated Eiger, each on its own, without HTTP or threads.

What the detector answers over SIMPLON is in ``test_eiger_sim.py``; here
each piece's own rule is pinned down: a state transition that another one
overtook does not happen, a series' plan counts and times its images as the
hardware does, and arm latches the configuration as it was.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from sim.eiger.config_store import ConfigStore
from sim.eiger.series_plan import Plan
from sim.eiger.simplon import SimplonError
from sim.eiger.state_machine import State, StateMachine

pytestmark = pytest.mark.timeout(20)


def plan(mode: str, auto_summation: bool = False) -> Plan:
    return Plan(
        mode=mode,
        nimages=3,
        ntrigger=2,
        count_time=0.5,
        frame_time=0.6,
        readout_time=1e-4,
        auto_summation=auto_summation,
    )


def test_a_transition_overtaken_by_another_does_not_happen() -> None:
    machine = StateMachine(initialized=True)
    machine.arming()
    machine.fail("stream: the header could not be sent")
    machine.armed()  # the arm that failed goes on: it must not leave the error
    machine.series_ended()
    assert (machine.state, machine.errors) == (
        State.ERROR,
        ["stream: the header could not be sent"],
    )

    machine.initializing()
    assert (machine.state, machine.errors) == (State.INITIALIZE, [])
    machine.initialized()
    machine.initialized()
    assert machine.state is State.IDLE


def test_idle_only_commands_say_what_to_do_first() -> None:
    machine = StateMachine(initialized=False)
    with pytest.raises(SimplonError, match=r"arm refused: .* send the initialize command first"):
        machine.require_idle("arm")
    with pytest.raises(SimplonError, match=r"cannot change count_time: .* initialize command"):
        machine.refuse_change("count_time")
    with pytest.raises(SimplonError, match="disarm refused: the detector is not initialized"):
        machine.require_initialized("disarm")

    machine = StateMachine(initialized=True)
    machine.require_idle("arm")
    machine.closed = True
    with pytest.raises(SimplonError, match="shutting down") as refused:
        machine.require_idle("arm")
    assert refused.value.status == 503


@pytest.mark.parametrize(
    ("mode", "software", "per_trigger", "total"),
    [("ints", True, 3, 6), ("inte", True, 1, 2), ("exts", False, 3, 6), ("exte", False, 1, 2)],
)
def test_a_plan_counts_images_per_trigger_mode(
    mode: str, software: bool, per_trigger: int, total: int
) -> None:
    latched = plan(mode)
    assert (latched.software, latched.per_trigger, latched.total) == (software, per_trigger, total)


def test_counting_time_leaves_out_the_readout_gaps_of_auto_summation() -> None:
    assert plan("ints").real_ns(0.5) == 500_000_000
    # 0.5 s is 375 subframes of 1/750 s: 374 readouts of 100 us between them.
    assert plan("ints", auto_summation=True).real_ns(0.5) == round((0.5 - 374e-4) * 1e9)


def test_arm_latches_the_configuration_as_it_is_then() -> None:
    store = ConfigStore()
    store.change("detector", "trigger_mode", "inte")
    store.change("detector", "ntrigger", 4)
    arm_date = datetime(2024, 5, 1, 12, 0, 0, 123456).astimezone()

    latched, header = store.latch("01HXYZ", arm_date)
    store.change("stream", "header_detail", "none")

    assert (latched.mode, latched.total) == ("inte", 4)
    assert header.number_of_images == 4
    assert header.detector["data_collection_date"] == arm_date.isoformat(timespec="milliseconds")
    assert header.detector["trigger_mode"] == "inte"
    assert "counting_mode" in header.extra_config and "counting_mode" not in header.detector
    assert header.stream["header_detail"] != "none"

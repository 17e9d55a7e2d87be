"""The committed SimDD description is the real DetectorDevice, and tango-simlib serves it as such.

Beamline tools test their scans against the simulated device; these tests
make sure what they test against is the interface of the real device.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import tango

from tooling.simdd import SIMDD_FILE, describe, real_device
from tooling.simlib import simulated_device

pytestmark = pytest.mark.timeout(30)

TANGO_ATTRIBUTES = {"State", "Status"}
TANGO_COMMANDS = {"State", "Status", "Init"}
SIMLIB_ATTRIBUTES = {"AttributesNotAdded", "NumAttributesNotAdded"}
"""What tango-simlib adds to every simulated device (it adds no commands to it)."""
SIMLIB_COMMANDS: set[str] = set()
ATTRIBUTE_FIELDS = (
    "data_type",
    "data_format",
    "writable",
    "unit",
    "format",
    "label",
    "description",
    "enum_labels",
    "max_dim_x",
    "max_dim_y",
    "min_value",
    "max_value",
)
COMMAND_FIELDS = ("in_type", "out_type", "in_type_desc", "out_type_desc")


@pytest.fixture(scope="module")
def real() -> Iterator[tango.DeviceProxy]:
    with real_device() as device:
        yield device


@pytest.fixture(scope="module")
def simulated() -> Iterator[tango.DeviceProxy]:
    with simulated_device(SIMDD_FILE) as device:
        yield device


def attributes(device: tango.DeviceProxy, ignored: set[str]) -> dict[str, tuple[Any, ...]]:
    return {
        config.name: tuple(_plain(getattr(config, field)) for field in ATTRIBUTE_FIELDS)
        for config in device.attribute_list_query_ex()
        if config.name not in ignored
    }


def commands(device: tango.DeviceProxy, ignored: set[str]) -> dict[str, tuple[Any, ...]]:
    return {
        info.cmd_name: tuple(getattr(info, field) for field in COMMAND_FIELDS)
        for info in device.command_list_query()
        if info.cmd_name not in ignored
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def test_committed_description_is_the_real_device_now(real: tango.DeviceProxy) -> None:
    committed = json.loads(SIMDD_FILE.read_text())
    assert committed == describe(real), (
        f"{SIMDD_FILE.name} no longer describes DetectorDevice: regenerate it with "
        "`python -m tooling.simdd` and commit it"
    )


@pytest.mark.e2e
def test_simulated_device_has_the_real_interface(
    real: tango.DeviceProxy, simulated: tango.DeviceProxy
) -> None:
    real_attributes = attributes(real, TANGO_ATTRIBUTES)
    served = attributes(simulated, TANGO_ATTRIBUTES | SIMLIB_ATTRIBUTES)
    not_served = set(simulated.AttributesNotAdded)

    assert not_served == {"LastImage"}
    assert set(served) | not_served == set(real_attributes)
    assert not set(served) & not_served
    for name, fields in served.items():
        assert dict(zip(ATTRIBUTE_FIELDS, fields, strict=True)) == dict(
            zip(ATTRIBUTE_FIELDS, real_attributes[name], strict=True)
        ), name
    assert commands(simulated, TANGO_COMMANDS | SIMLIB_COMMANDS) == commands(real, TANGO_COMMANDS)


@pytest.mark.e2e
def test_a_scan_runs_against_the_simulated_device(simulated: tango.DeviceProxy) -> None:
    simulated.Stop()
    simulated.TriggerMode = "SOFTWARE"
    simulated.ExposureTime = 0.002
    simulated.FrameTime = 0.004
    simulated.nTriggers = 3
    simulated.DestinationFilename = "scan.h5"
    simulated.Arm()
    simulated.SoftwareTrigger()

    assert simulated.read_attribute("TriggerMode").value == 1
    assert (simulated.nTriggers, simulated.DestinationFilename) == (3, "scan.h5")
    assert simulated.state() == tango.DevState.ON

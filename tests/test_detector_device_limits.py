"""A value outside an attribute's limit is refused as it is written, saying the limit and the value.

Tango's own ``min_value`` refusal ("Set value for attribute ... is below the
minimum authorized") names neither; the device checks its limits itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tango

from devices.detector_device import DetectorDevice
from tests.helpers import device_context
from tooling.ports import free_port


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tango.DeviceProxy]:
    properties = {
        "StreamAddress": f"tcp://127.0.0.1:{free_port()}",
        "TriggerInputAddress": f"tcp://127.0.0.1:{free_port()}",
        "FrameShape": [8, 8],
        "DataRoot": str(tmp_path_factory.mktemp("data")),
        "ReceiverHttpPort": -1,
    }
    with device_context(DetectorDevice, properties=properties, process=True) as dev:
        yield dev


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("ExposureTime", -1.0, "ExposureTime must be at least 0 s, got -1"),
        ("FrameTime", -0.5, "FrameTime must be at least 0 s, got -0.5"),
        ("LatencyTime", -0.001, "LatencyTime must be at least 0 s, got -0.001"),
        ("nTriggers", 0, "nTriggers must be at least 1, got 0"),
        ("nFramesPerTrigger", -3, "nFramesPerTrigger must be at least 1, got -3"),
    ],
)
def test_a_value_below_the_limit_is_refused_with_the_limit(
    device: tango.DeviceProxy, name: str, value: float, says: str
) -> None:
    before = device.read_attribute(name).value

    with pytest.raises(tango.DevFailed) as refused:
        device.write_attribute(name, value)

    assert refused.value.args[0].desc == says
    assert refused.value.args[0].reason == "BadSetting"
    assert device.read_attribute(name).value == before


def test_values_at_the_limit_are_kept(device: tango.DeviceProxy) -> None:
    device.nTriggers = 1
    device.nFramesPerTrigger = 1
    device.LatencyTime = 0.0
    device.ExposureTime = 0.0  # kept as written; Arm refuses it (it needs more than 0 s)
    assert (device.nTriggers, device.nFramesPerTrigger, device.ExposureTime) == (1, 1, 0.0)


def test_the_limits_are_not_tangos_own(device: tango.DeviceProxy) -> None:
    """Tango would check them first, with its own text: the device's are the only ones."""
    for name in ("ExposureTime", "FrameTime", "LatencyTime", "nTriggers", "nFramesPerTrigger"):
        assert device.get_attribute_config(name).min_value == "Not specified"

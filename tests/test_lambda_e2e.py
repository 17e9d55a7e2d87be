"""End to end: DetectorDevice (lambda backend) + two lambda-streamer processes over the fake SDK.

Four modules of ForMAX's windmill, two per simulated DCU, each its own STINS
stream, joined by the device's embedded receiver into one file: every module
plane of every frame must be what the fake made for that module and frame,
and the assembled image what the windmill's geometry gives. The series run
on lambda01 from a real Tango database; the fault cases, which need a
device of their own each, run it in a DeviceTestContext.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the bslz4 filter for reading
import numpy as np
import pytest
import tango

from devices.detector_device import DetectorDevice
from sim.lambda_fake import expected_frame
from tests.helpers import Processes, device_context, wait_until
from tests.lambda_support import SHAPE, Dcus, assemble, full_reference, start_dcus
from tests.tango_bench import Bench
from tooling.tango_db import DEFAULT_CONFIG, answers, load_config

pytestmark = pytest.mark.e2e

FRAMES = 1000
LAMBDA01 = DEFAULT_CONFIG.with_name("lambda01.json")
DEVICE = "sim/lambda/lambda01"


def _properties(dcus: Dcus, data: Path, **more: object) -> dict[str, object]:
    return {
        "Backend": "lambda",
        "DetectorAddress": dcus.detector_address,
        "DataRoot": str(data),
        "DetectorName": "lambda",
        "ReceiverHttpPort": -1,
        **more,
    }


@pytest.fixture(scope="module")
def windmill(bench: Bench) -> Iterator[tuple[tango.DeviceProxy, Path]]:
    """lambda01 as tango_db_config/lambda01.json has it, started from a real Tango database;
    only the streamers' addresses and the data root changed."""
    dcus = start_dcus(
        bench.processes, bench.data_root.parent, trigger_period_ms=1.0, trigger_delay_ms=50.0
    )
    overrides = {
        "DetectorAddress": dcus.detector_address,
        "DataRoot": str(bench.data_root),
        "ReceiverHttpPort": "-1",
    }
    load_config(LAMBDA01, bench.tango_host, {f"{DEVICE}/{k}": [v] for k, v in overrides.items()})
    server = bench.processes.start("DetectorDevice", "lambda01", env=bench.env)
    device = tango.DeviceProxy(f"tango://{bench.tango_host}/{DEVICE}")
    wait_until(lambda: answers(device) and device.state() == tango.DevState.ON, 30, "lambda01")
    yield device, bench.data_root
    bench.processes.stop(server)


def _run(device: tango.DeviceProxy, name: str, mode: str, frames: int) -> None:
    device.TriggerMode = mode
    device.DestinationFilename = name
    device.ExposureTime = 0.001
    device.FrameTime = 0.001
    device.nTriggers = frames
    device.nFramesPerTrigger = 1
    device.Arm()
    wait_until(lambda: device.state() != tango.DevState.RUNNING, 60, "the series to end")


@pytest.mark.parametrize("mode", ["INTERNAL", "EXTERNAL_MULTI"])
def test_four_modules_from_two_streamers_make_one_file_of_every_frame(
    windmill: tuple[tango.DeviceProxy, Path], mode: str
) -> None:
    device, data = windmill
    name = f"{mode.lower()}.h5"
    _run(device, name, mode, FRAMES)
    assert device.state() == tango.DevState.ON, device.status()
    assert device.nFramesAcquired == FRAMES
    with h5py.File(data / name) as f:
        detector = f["entry/instrument/lambda"]
        stored = detector["data"]
        assert stored.shape == (FRAMES, 4, *SHAPE)
        assert stored.dtype == np.uint16
        assert list(detector["sequence_number"]) == list(range(FRAMES))
        assert (detector["module_sequence_number"][()] == np.arange(FRAMES)[:, None]).all()
        planes = stored[()]
        for module in range(4):
            assert detector[f"m{module}/data_origin"][0] == module
            for frame in range(FRAMES):
                np.testing.assert_array_equal(
                    planes[frame, module], expected_frame(module, frame, *SHAPE)
                )
        for frame in (0, FRAMES // 2, FRAMES - 1):
            np.testing.assert_array_equal(assemble(detector, frame), full_reference(frame))


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"TriggerMode": "SOFTWARE"}, "no trigger mode SOFTWARE"),
        ({"TriggerMode": "GATE"}, "no trigger mode GATE"),
        ({"FrameTime": 0.002}, "FrameTime equal to ExposureTime"),
        ({"ExposureTime": 0.0001, "FrameTime": 0.0001}, "minimum of 0.5 ms"),
        ({"TriggerMode": "EXTERNAL_MULTI", "nFramesPerTrigger": 2}, "one frame per trigger"),
    ],
)
def test_settings_a_lambda_cannot_take_are_refused_with_the_reason(
    windmill: tuple[tango.DeviceProxy, Path], settings: dict[str, object], reason: str
) -> None:
    device, _ = windmill
    base = {
        "TriggerMode": "INTERNAL",
        "ExposureTime": 0.001,
        "FrameTime": 0.001,
        "nTriggers": 5,
        "nFramesPerTrigger": 1,
        "DestinationFilename": "",
    }
    for attribute, value in {**base, **settings}.items():
        setattr(device, attribute, value)
    with pytest.raises(tango.DevFailed) as refused:
        device.Arm()
    assert reason in refused.value.args[0].desc
    device.Stop()
    assert device.state() == tango.DevState.ON, device.status()
    for attribute, value in base.items():
        setattr(device, attribute, value)
    _run(device, "", "INTERNAL", 5)
    assert device.state() == tango.DevState.ON, device.status()


@pytest.mark.parametrize(
    ("attribute", "value", "reason"),
    [("nTriggers", 0, "nTriggers"), ("ExposureTime", -0.001, "ExposureTime")],
)
def test_a_frame_count_of_0_or_a_negative_exposure_is_refused_as_written(
    windmill: tuple[tango.DeviceProxy, Path], attribute: str, value: float, reason: str
) -> None:
    device, _ = windmill
    with pytest.raises(tango.DevFailed) as refused:
        setattr(device, attribute, value)
    assert reason in refused.value.args[0].desc
    assert device.state() == tango.DevState.ON, device.status()


def test_a_lost_frame_of_one_module_is_missing_there_and_the_rest_is_kept(
    tmp_path: Path, processes: Processes
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    dcus = start_dcus(processes, tmp_path, faults="lose_frame=1:17")
    with device_context(DetectorDevice, properties=_properties(dcus, data), process=True) as device:
        _run(device, "lost.h5", "INTERNAL", 50)
        assert "17" in device.status() and "m1" in device.status(), device.status()
    assert dcus.status(0)["modules"][1]["dropped"] == [{"frame": 17, "reason": "lost"}]  # type: ignore[index]
    with h5py.File(data / "lost.h5") as f:
        detector = f["entry/instrument/lambda"]
        numbers = detector["module_sequence_number"][()]
        assert numbers[17, 1] == -1
        assert (np.delete(numbers, 1, axis=1)[17] == 17).all()
        assert (numbers[np.arange(50) != 17] == np.arange(50)[np.arange(50) != 17, None]).all()
        np.testing.assert_array_equal(detector["data"][17, 0], expected_frame(0, 17, *SHAPE))


@pytest.mark.allow_error_log
def test_a_stalled_module_is_fault_naming_it_and_the_frames_before_stay(
    tmp_path: Path, processes: Processes
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    dcus = start_dcus(processes, tmp_path, faults="stall_module=2:30", stall_timeout_s=1.0)
    with device_context(
        DetectorDevice, properties=_properties(dcus, data, CloseTimeout=5.0), process=True
    ) as device:
        device.ExposureTime = device.FrameTime = 0.002
        device.nTriggers = 2000
        device.DestinationFilename = "stalled.h5"
        device.Arm()
        wait_until(lambda: device.state() == tango.DevState.FAULT, 20, "FAULT")
        assert "m2" in device.status() and "stalled" in device.status(), device.status()
        device.Stop()
        device.Init()
        assert device.state() == tango.DevState.ON, device.status()
    with h5py.File(data / "stalled.h5") as f:
        numbers = f["entry/instrument/lambda/module_sequence_number"][()]
        assert list(numbers[:30, 2]) == list(range(30))
        assert (numbers[30:, 2] == -1).all()
        assert (numbers[:30, [0, 1, 3]] == np.arange(30)[:, None]).all()


@pytest.mark.allow_error_log
def test_a_killed_streamer_is_fault_naming_it(tmp_path: Path, processes: Processes) -> None:
    data = tmp_path / "data"
    data.mkdir()
    dcus = start_dcus(processes, tmp_path)
    with device_context(
        DetectorDevice, properties=_properties(dcus, data, CloseTimeout=3.0), process=True
    ) as device:
        device.ExposureTime = device.FrameTime = 0.002
        device.nTriggers = 5000
        device.DestinationFilename = "killed.h5"
        device.Arm()
        wait_until(lambda: device.nFramesAcquired > 20, 20, "frames to arrive")
        dcus.streamers[1].kill()
        wait_until(lambda: device.state() == tango.DevState.FAULT, 20, "FAULT")
        assert dcus.controls[1] in device.status(), device.status()
    with h5py.File(data / "killed.h5") as f:
        assert (f["entry/instrument/lambda/module_sequence_number"][:20] >= 0).all()


@pytest.mark.allow_error_log
def test_an_sdk_that_cannot_open_is_fault_at_init_with_the_vendor_text(
    tmp_path: Path, processes: Processes
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    text = "xsp::RuntimeError: cannot connect to module 192.168.10.2: connection refused"
    dcus = start_dcus(processes, tmp_path, faults=f"open_error={text}")
    with device_context(DetectorDevice, properties=_properties(dcus, data), process=True) as device:
        assert device.state() == tango.DevState.FAULT
        assert text in device.status(), device.status()


def test_an_unreachable_streamer_is_fault_at_init_saying_where(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    dcus = Dcus([], ["127.0.0.1:1"])
    with device_context(DetectorDevice, properties=_properties(dcus, data), process=True) as device:
        assert device.state() == tango.DevState.FAULT
        assert "127.0.0.1:1" in device.status() and "does not answer" in device.status()

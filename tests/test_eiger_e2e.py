"""End to end: DetectorDevice (Eiger backend) + the simulated Eiger (a process) + receiver -> file.

Driven as a MAX IV client drives an Eiger, for INTERNAL, SOFTWARE and
EXTERNAL_MULTI, with the Eiger streaming Dectris stream v1 and v2.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the bslz4 filter for reading
import numpy as np
import pytest
import requests
import tango

from devices.detector_device import DetectorDevice
from sim.frames import synthetic_frame
from sim.trigger_input import fire
from tests.helpers import Processes, device_context, wait_until
from tooling.ports import free_port

pytestmark = pytest.mark.e2e

SHAPE = (1065, 1030)


class Eiger:
    def __init__(self, processes: Processes) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.stream = f"tcp://127.0.0.1:{free_port()}"
        self.trigger_input = f"tcp://127.0.0.1:{free_port()}"
        proc = processes.start(
            "daq-sim", "eiger",
            "--port", self.url.rsplit(":", 1)[1],
            "--stream", self.stream,
            "--trigger-input", self.trigger_input,
        )  # fmt: skip
        wait_until(lambda: self._answers(proc, processes), 20, "the Eiger simulator")

    def _answers(self, proc: object, processes: Processes) -> bool:
        assert proc.poll() is None, processes.output(proc)  # type: ignore[attr-defined]
        try:
            return requests.get(f"{self.url}/detector/api/version/", timeout=1).ok
        except requests.RequestException:
            return False


@pytest.fixture(scope="module", params=["legacy", "cbor"])
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[tango.DeviceProxy, Eiger, Path]]:
    root = tmp_path_factory.mktemp(f"eiger-{request.param}")
    processes = Processes(root)
    try:
        eiger = Eiger(processes)
        properties = {
            "Backend": "eiger",
            "DetectorAddress": eiger.url,
            "StreamAddress": eiger.stream,
            "StreamFormat": request.param,
            "DataRoot": str(root),
            "DetectorName": "eiger",
            "ReceiverHttpPort": -1,
            "ArmTimeout": 10.0,
        }
        with device_context(DetectorDevice, properties=properties, process=True) as device:
            yield device, eiger, root
    finally:
        processes.stop_all()


def acquire(device: tango.DeviceProxy, name: str, mode: str, n_triggers: int, trigger=None) -> None:
    device.TriggerMode = mode
    device.DestinationFilename = name
    device.ExposureTime = 0.002
    device.FrameTime = 0.003
    device.nTriggers = n_triggers
    device.nFramesPerTrigger = 2
    device.Arm()
    for point in range(1, n_triggers + 1 if trigger else 1):
        trigger()
        wait_until(lambda p=point: device.nFramesAcquired >= 2 * p, 10, f"burst {point}")
    wait_until(lambda: device.state() != tango.DevState.RUNNING, 20, "the series to end")
    assert device.state() == tango.DevState.ON, device.status()


def assert_file(path: Path, frames: int) -> None:
    with h5py.File(path) as f:
        data = f["entry/instrument/eiger/data"]
        assert data.shape == (frames, *SHAPE)
        assert data.dtype == np.uint32
        for frame in (0, frames - 1):
            np.testing.assert_array_equal(data[frame], synthetic_frame(frame, SHAPE, "uint32"))
        assert f["entry/instrument/eiger/count_time"][()] == pytest.approx(0.002)


def test_internal(setup) -> None:
    device, _, root = setup
    acquire(device, "internal.h5", "INTERNAL", 3)
    assert_file(root / "internal.h5", 6)


def test_software(setup) -> None:
    device, _, root = setup
    acquire(device, "software.h5", "SOFTWARE", 3, trigger=device.SoftwareTrigger)
    assert_file(root / "software.h5", 6)


def test_external_multi(setup) -> None:
    device, eiger, root = setup
    acquire(device, "external.h5", "EXTERNAL_MULTI", 2, trigger=lambda: fire(eiger.trigger_input))
    assert_file(root / "external.h5", 4)


def test_a_refused_setting_is_fault_with_the_detectors_reason(setup) -> None:
    device, _, _ = setup
    device.ExposureTime = 1e-6
    device.FrameTime = 1e-6
    device.DestinationFilename = ""
    with pytest.raises(tango.DevFailed, match="the Eiger refused PUT detector/config/frame_time"):
        device.Arm()
    assert device.state() == tango.DevState.FAULT
    assert "HTTP 400" in device.status()

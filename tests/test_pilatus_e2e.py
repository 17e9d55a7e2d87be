"""End to end: DetectorDevice (Pilatus backend) + camserver simulator + pilatus-streamer + receiver.

The frames in the file must equal the CBF images camserver wrote (decoded with
fabio), in trigger order, for each trigger mode a Pilatus has.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fabio.cbfimage
import h5py
import hdf5plugin  # noqa: F401 - registers the bslz4 filter for reading
import numpy as np
import pytest
import tango

from devices.detector_device import DetectorDevice
from sim.frames import synthetic_frame
from sim.trigger_input import fire
from tests.helpers import Processes, device_context, wait_until
from tests.pilatus_support import start_chain

pytestmark = pytest.mark.e2e

SHAPE = (195, 487)
"""One Pilatus3 module: small enough for a quick test, a real geometry."""


@pytest.fixture(scope="module")
def pilatus(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[tango.DeviceProxy, dict[str, object], Path]]:
    root = tmp_path_factory.mktemp("pilatus")
    imgpath, data = root / "ramdisk", root / "data"
    imgpath.mkdir()
    data.mkdir()
    processes = Processes(root)
    try:
        chain = start_chain(processes, imgpath, SHAPE)
        properties = {
            "Backend": "pilatus",
            **chain["options"],  # type: ignore[dict-item]
            "DataRoot": str(data),
            "DetectorName": "pilatus",
            "ReceiverHttpPort": -1,
            "ReceiverTransforms": '[{"kind": "rotate", "k": 2}]',
        }
        with device_context(DetectorDevice, properties=properties, process=True) as device:
            yield device, chain, data
    finally:
        processes.stop_all()


def reference(frame: int, tmp_path: Path) -> np.ndarray:
    """Frame ``frame`` as camserver writes it, read back by fabio, then rotated as configured."""
    path = tmp_path / f"ref_{frame}.cbf"
    fabio.cbfimage.CbfImage(data=synthetic_frame(frame, SHAPE, "int32")).write(str(path))
    return np.rot90(fabio.open(str(path)).data, 2)


@pytest.mark.parametrize(
    ("mode", "n_triggers", "per_trigger", "pulses", "width"),
    [
        ("INTERNAL", 2, 3, 0, 0.0),
        ("EXTERNAL", 2, 3, 1, 0.0),
        ("EXTERNAL_MULTI", 4, 1, 4, 0.0),
        ("GATE", 3, 1, 3, 0.005),
    ],
)
def test_each_trigger_mode_gives_the_cbf_images_in_order(
    pilatus, tmp_path: Path, mode: str, n_triggers: int, per_trigger: int, pulses: int, width: float
) -> None:
    device, chain, data = pilatus
    name = f"{mode.lower()}.h5"
    device.TriggerMode = mode
    device.DestinationFilename = name
    device.ExposureTime = 0.002
    device.FrameTime = 0.005
    device.nTriggers = n_triggers
    device.nFramesPerTrigger = per_trigger
    device.Arm()
    for pulse in range(pulses):
        fire(chain["trigger"], width=width)  # type: ignore[arg-type]
        if mode != "EXTERNAL":
            wait_until(lambda p=pulse: device.nFramesAcquired > p, 10, f"frame of pulse {pulse}")
    wait_until(lambda: device.state() != tango.DevState.RUNNING, 30, "the series to end")
    assert device.state() == tango.DevState.ON, device.status()
    frames = n_triggers * per_trigger
    with h5py.File(data / name) as f:
        stored = f["entry/instrument/pilatus/data"]
        assert stored.shape == (frames, *SHAPE)
        assert stored.dtype == np.int32
        assert list(f["entry/instrument/pilatus/sequence_number"]) == list(range(frames))
        for frame in range(frames):
            np.testing.assert_array_equal(stored[frame], reference(frame, tmp_path))


def test_a_killed_streamer_is_fault_with_the_reason_and_the_frames_stay(
    tmp_path: Path, processes: Processes
) -> None:
    imgpath, data = tmp_path / "ramdisk", tmp_path / "data"
    imgpath.mkdir()
    data.mkdir()
    chain = start_chain(processes, imgpath, SHAPE)
    properties = {
        "Backend": "pilatus",
        **chain["options"],  # type: ignore[dict-item]
        "DataRoot": str(data),
        "DetectorName": "pilatus",
        "ReceiverHttpPort": -1,
        "CloseTimeout": 3.0,
    }
    with device_context(DetectorDevice, properties=properties, process=True) as device:
        device.TriggerMode = "EXTERNAL_MULTI"
        device.DestinationFilename = "killed.h5"
        device.ExposureTime = 0.002
        device.FrameTime = 0.005
        device.nTriggers = 10
        device.Arm()
        for pulse in range(3):
            fire(chain["trigger"])  # type: ignore[arg-type]
            wait_until(lambda p=pulse: device.nFramesAcquired > p, 10, f"frame {pulse}")
        chain["streamer"].kill()  # type: ignore[attr-defined]
        wait_until(lambda: device.state() == tango.DevState.FAULT, 20, "FAULT")
        assert "lost the connection to the pilatus-streamer" in device.status()
    with h5py.File(data / "killed.h5") as f:
        stored = f["entry/instrument/pilatus/sequence_number"][()]
        assert list(stored[:3]) == [0, 1, 2]

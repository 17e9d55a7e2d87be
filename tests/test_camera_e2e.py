"""End to end: DetectorDevice with the andor and hamamatsu backends over the fake SDKs.

The camera-streamer runs inside the device server (DetectorAddress
``embedded``, as on a camera's own machine) or as a ``camera-streamer``
process the backend drives over HTTP; either way every stored frame must be
what the fake made for that frame number, in the region read.
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
from sim.andor_fake import CONFIG_ENV, FAULTS_ENV, expected_frame, library_path
from sim.andor_fake.config_file import ConfigFile
from sim.dcam_fake import CONFIG_VARIABLE as DCAM_CONFIG
from sim.dcam_fake import FAULTS_VARIABLE as DCAM_FAULTS
from sim.dcam_fake import ConfigFile as DcamConfig
from sim.dcam_fake import expected_frame as dcam_expected
from sim.dcam_fake import library_path as dcam_library
from streamers.dcam_sdk.binding import PixelType
from tests.helpers import Processes, device_context, wait_until
from tests.tango_bench import Bench
from tooling.ports import free_port
from tooling.tango_db import DEFAULT_CONFIG, answers, load_config

pytestmark = pytest.mark.e2e

REGION = (100, 40, 64, 48)
"""Column, row, width, height on the Zyla's 2560 x 2160 sensor: small frames for quick tests."""


def _expected(frame: int) -> np.ndarray:
    x, y, width, height = REGION
    return expected_frame(frame, height, width, left=x + 1, top=y + 1)


def _properties(data: Path, **more: object) -> dict[str, object]:
    return {
        "Backend": "andor",
        "SdkLibrary": library_path(),
        "StreamAddress": f"tcp://127.0.0.1:{free_port()}",
        "RegionOfInterest": list(REGION),
        "DataRoot": str(data),
        "DetectorName": "zyla",
        "ReceiverHttpPort": -1,
        **more,
    }


@pytest.fixture
def zyla_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = ConfigFile(trigger_period_ms=3.0, trigger_delay_ms=50.0).write(tmp_path / "zyla.conf")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    return path


@pytest.fixture
def zyla(zyla_config: Path, tmp_path: Path) -> Iterator[tuple[tango.DeviceProxy, Path]]:
    data = tmp_path / "data"
    data.mkdir()
    with device_context(DetectorDevice, properties=_properties(data), process=True) as device:
        yield device, data


def _stored(path: Path, frames: int) -> None:
    with h5py.File(path) as f:
        stored = f["entry/instrument/zyla/data"]
        assert stored.shape == (frames, REGION[3], REGION[2])
        assert stored.dtype == np.uint16
        assert list(f["entry/instrument/zyla/sequence_number"]) == list(range(frames))
        for frame in range(frames):
            np.testing.assert_array_equal(stored[frame], _expected(frame))


def _settings(
    device: tango.DeviceProxy,
    name: str,
    mode: str,
    n: int,
    frame_time: float,
    exposure_time: float = 0.001,
) -> None:
    device.Stop()
    device.TriggerMode = mode
    device.DestinationFilename = name
    device.ExposureTime = exposure_time
    device.FrameTime = frame_time
    device.nTriggers = n
    device.nFramesPerTrigger = 1


def test_a_software_series_point_by_point_as_max_iv_clients_do_it(zyla) -> None:
    device, data = zyla
    _settings(device, "software.h5", "SOFTWARE", 5, 0.01)
    device.Arm()
    for point in range(1, 6):
        device.SoftwareTrigger()
        wait_until(lambda p=point: device.nFramesAcquired >= p, 10, f"point {point}")
    wait_until(lambda: device.state() != tango.DevState.RUNNING, 20, "the series to end")
    assert device.state() == tango.DevState.ON, device.status()
    _stored(data / "software.h5", 5)


@pytest.mark.parametrize(("mode", "frames"), [("INTERNAL", 500), ("EXTERNAL_MULTI", 100)])
def test_a_burst_stores_every_frame_the_camera_made(zyla, mode: str, frames: int) -> None:
    device, data = zyla
    name = f"{mode.lower()}.h5"
    _settings(device, name, mode, frames, 0.002)
    device.Arm()
    wait_until(lambda: device.state() != tango.DevState.RUNNING, 60, "the series to end")
    assert device.state() == tango.DevState.ON, device.status()
    _stored(data / name, frames)


def test_a_zyla_streams_its_12_bit_packing_and_the_file_holds_it_unpacked(
    zyla_config: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    properties = _properties(data, PixelEncoding="Mono12Packed")
    with device_context(DetectorDevice, properties=properties, process=True) as device:
        _settings(device, "packed.h5", "INTERNAL", 100, 0.002)
        device.Arm()
        wait_until(lambda: device.state() != tango.DevState.RUNNING, 30, "the series to end")
        assert device.state() == tango.DevState.ON, device.status()
    _stored(data / "packed.h5", 100)


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ([("ExposureTime", 0.00001), ("FrameTime", 0.00001)], "s this Zyla"),
        ([("FrameTime", 40.0), ("ExposureTime", 40.0)], "is outside this Zyla"),
    ],
)
def test_settings_the_camera_cannot_take_are_refused_with_its_numbers(
    zyla, settings: list[tuple[str, float]], reason: str
) -> None:
    device, _ = zyla
    _settings(device, "", "INTERNAL", 3, 0.01)
    for attribute, value in settings:
        setattr(device, attribute, value)
    with pytest.raises(tango.DevFailed) as refused:
        device.Arm()
    assert reason in refused.value.args[0].desc
    assert device.state() == tango.DevState.ON, device.status()


@pytest.mark.allow_error_log
def test_a_region_the_sensor_cannot_hold_is_refused_with_the_sensor_size(
    zyla_config: Path, tmp_path: Path
) -> None:
    properties = _properties(tmp_path, RegionOfInterest=[2500, 0, 128, 64])
    with device_context(DetectorDevice, properties=properties, process=True) as device:
        _settings(device, "", "INTERNAL", 3, 0.01)
        with pytest.raises(tango.DevFailed) as refused:
            device.Arm()
        assert "does not fit this Zyla" in refused.value.args[0].desc
        assert "2560 x 2160 sensor" in refused.value.args[0].desc
        assert device.state() == tango.DevState.ON, device.status()


@pytest.mark.allow_error_log
@pytest.mark.parametrize(
    ("fault", "reason"),
    [("timeout_after=40", "delivered no frame"), ("vanish_after=40", "AT_ERR_CONNECTION")],
)
def test_a_camera_that_stops_is_fault_with_the_reason_and_its_frames_stay(
    zyla_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    reason: str,
) -> None:
    monkeypatch.setenv(FAULTS_ENV, fault)
    data = tmp_path / "data"
    data.mkdir()
    properties = _properties(data, CloseTimeout=5.0)
    with device_context(DetectorDevice, properties=properties, process=True) as device:
        _settings(device, "stopped.h5", "INTERNAL", 2000, 0.002)
        device.Arm()
        wait_until(lambda: device.state() == tango.DevState.FAULT, 30, f"FAULT ({device.status()})")
        assert reason in device.status(), device.status()
    with h5py.File(data / "stopped.h5") as f:
        numbers = list(f["entry/instrument/zyla/sequence_number"][()])
    # The frames before the camera stopped are kept, in order; on a loaded machine the camera
    # may have dropped some of its 40 for want of a queued buffer, as a real one would.
    written = [n for n in numbers if n >= 0]
    assert written == list(range(len(written))) and 0 < len(written) <= 40, numbers[:45]


def test_the_backend_drives_a_camera_streamer_process_over_http(
    zyla_config: Path, tmp_path: Path, processes: Processes
) -> None:
    control, stream = f"127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    streamer = processes.start(
        "camera-streamer",
        "--sdk", "andor",
        "--library", library_path(),
        "--stream", stream,
        "--control", control,
    )  # fmt: skip
    processes.wait_serving(streamer, f"http://{control}")
    data = tmp_path / "data"
    data.mkdir()
    properties = _properties(data, DetectorAddress=control, StreamAddress=stream)
    with device_context(DetectorDevice, properties=properties, process=True) as device:
        _settings(device, "remote.h5", "INTERNAL", 50, 0.002)
        device.Arm()
        wait_until(lambda: device.state() != tango.DevState.RUNNING, 30, "the series to end")
        assert device.state() == tango.DevState.ON, device.status()
    _stored(data / "remote.h5", 50)


# --- Hamamatsu ORCA-Lightning over the fake DCAM, 12-bit packed pixels ---------------------

ORCA_REGION = (256, 100, 256, 40)
"""On the Lightning's 4608 x 2592 sensor; its columns go in steps of 128."""


def _orca_expected(frame: int) -> np.ndarray:
    x, y, width, height = ORCA_REGION
    return dcam_expected(frame, height, width, PixelType.MONO16, left=x, top=y, bits=12)


@pytest.fixture
def orca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[tango.DeviceProxy, Path]]:
    config = DcamConfig(model="ORCA-Lightning", trigger_period_ms=3.0, trigger_delay_ms=50.0)
    monkeypatch.setenv(DCAM_CONFIG, str(config.write(tmp_path / "orca.conf")))
    monkeypatch.delenv(DCAM_FAULTS, raising=False)
    data = tmp_path / "data"
    data.mkdir()
    properties = {
        **_properties(data),
        "Backend": "hamamatsu",
        "SdkLibrary": dcam_library(),
        "PixelEncoding": "Mono12p",
        "RegionOfInterest": list(ORCA_REGION),
        "DetectorName": "orca",
    }
    with device_context(DetectorDevice, properties=properties, process=True) as device:
        yield device, data


@pytest.mark.parametrize(
    ("mode", "frames"), [("SOFTWARE", 5), ("INTERNAL", 500), ("EXTERNAL_MULTI", 100)]
)
def test_an_orca_stores_its_packed_frames_unpacked_exactly(orca, mode: str, frames: int) -> None:
    device, data = orca
    name = f"orca_{mode.lower()}.h5"
    # An ORCA's frames follow its own interval (here the exposure): 2 ms leaves the streamer
    # time on a loaded machine before the ring comes round.
    _settings(device, name, mode, frames, 0.002, exposure_time=0.002)
    device.Arm()
    if mode == "SOFTWARE":
        for point in range(1, frames + 1):
            device.SoftwareTrigger()
            wait_until(lambda p=point: device.nFramesAcquired >= p, 10, f"point {point}")
    wait_until(lambda: device.state() != tango.DevState.RUNNING, 60, "the series to end")
    assert device.state() == tango.DevState.ON, device.status()
    with h5py.File(data / name) as f:
        stored = f["entry/instrument/orca/data"]
        assert stored.shape == (frames, ORCA_REGION[3], ORCA_REGION[2])
        assert list(f["entry/instrument/orca/sequence_number"]) == list(range(frames))
        for frame in range(frames):
            np.testing.assert_array_equal(stored[frame], _orca_expected(frame))


def test_an_orca_region_off_the_cameras_step_is_refused_with_its_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = DcamConfig(model="ORCA-Lightning")
    monkeypatch.setenv(DCAM_CONFIG, str(config.write(tmp_path / "orca.conf")))
    properties = {
        **_properties(tmp_path),
        "Backend": "hamamatsu",
        "SdkLibrary": dcam_library(),
        "RegionOfInterest": [100, 0, 256, 40],
    }
    with device_context(DetectorDevice, properties=properties, process=True) as device:
        _settings(device, "", "INTERNAL", 3, 0.001)
        with pytest.raises(tango.DevFailed) as refused:
            device.Arm()
        assert "AOI 256 x 40 at column 100" in refused.value.args[0].desc
        assert "DCAMERR_" in refused.value.args[0].desc
        assert device.state() == tango.DevState.ON, device.status()


def test_zyla01_from_the_tango_database_takes_a_series(zyla_config: Path, bench: Bench) -> None:
    """tango_db_config/zyla01.json as shipped, only the library, the stream and the data root
    changed (the server runs the camera-streamer in its own process, as on a camera's PC)."""
    device_name = "sim/camera/zyla01"
    overrides = {
        "SdkLibrary": [library_path()],
        "StreamAddress": [f"tcp://127.0.0.1:{free_port()}"],
        "RegionOfInterest": [str(n) for n in REGION],
        "DataRoot": [str(bench.data_root)],
        "ReceiverHttpPort": ["-1"],
    }
    load_config(
        DEFAULT_CONFIG.with_name("zyla01.json"),
        bench.tango_host,
        {f"{device_name}/{k}": v for k, v in overrides.items()},
    )
    bench.processes.start("DetectorDevice", "zyla01", env=bench.env)
    device = tango.DeviceProxy(f"tango://{bench.tango_host}/{device_name}")
    wait_until(lambda: answers(device) and device.state() == tango.DevState.ON, 30, "zyla01")
    _settings(device, "from-database.h5", "INTERNAL", 100, 0.002)
    device.Arm()
    wait_until(lambda: device.state() != tango.DevState.RUNNING, 30, "the series to end")
    assert device.state() == tango.DevState.ON, device.status()
    _stored(bench.data_root / "from-database.h5", 100)


def test_orca01_from_the_tango_database_drives_its_camera_streamer_process(
    bench: Bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tango_db_config/orca01.json as shipped (a camera-streamer process, Mono12p), only the
    addresses, the region and the data root changed."""
    config = DcamConfig(model="ORCA-Lightning")
    monkeypatch.setenv(DCAM_CONFIG, str(config.write(tmp_path / "orca.conf")))
    control, stream = f"127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    streamer = bench.processes.start(
        "camera-streamer",
        "--sdk", "dcam",
        "--library", dcam_library(),
        "--pixel-encoding", "Mono12p",
        "--stream", stream,
        "--control", control,
    )  # fmt: skip
    bench.processes.wait_serving(streamer, f"http://{control}")
    device_name = "sim/camera/orca01"
    overrides = {
        "DetectorAddress": [control],
        "StreamAddress": [stream],
        "RegionOfInterest": [str(n) for n in ORCA_REGION],
        "DataRoot": [str(bench.data_root)],
        "ReceiverHttpPort": ["-1"],
    }
    load_config(
        DEFAULT_CONFIG.with_name("orca01.json"),
        bench.tango_host,
        {f"{device_name}/{k}": v for k, v in overrides.items()},
    )
    bench.processes.start("DetectorDevice", "orca01", env=bench.env)
    device = tango.DeviceProxy(f"tango://{bench.tango_host}/{device_name}")
    wait_until(lambda: answers(device) and device.state() == tango.DevState.ON, 30, "orca01")
    _settings(device, "orca-from-database.h5", "INTERNAL", 50, 0.002, exposure_time=0.002)
    device.Arm()
    wait_until(lambda: device.state() != tango.DevState.RUNNING, 30, "the series to end")
    assert device.state() == tango.DevState.ON, device.status()
    with h5py.File(bench.data_root / "orca-from-database.h5") as f:
        stored = f["entry/instrument/orca/data"]
        assert stored.shape == (50, ORCA_REGION[3], ORCA_REGION[2])
        for frame in (0, 49):
            np.testing.assert_array_equal(stored[frame], _orca_expected(frame))


@pytest.mark.allow_error_log
def test_an_orca_that_vanishes_is_fault_with_the_sdk_reason_and_its_frames_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = DcamConfig(model="ORCA-Lightning")
    monkeypatch.setenv(DCAM_CONFIG, str(config.write(tmp_path / "orca.conf")))
    monkeypatch.setenv(DCAM_FAULTS, "vanish_after=300")
    data = tmp_path / "data"
    data.mkdir()
    properties = {
        **_properties(data, CloseTimeout=5.0),
        "Backend": "hamamatsu",
        "SdkLibrary": dcam_library(),
        "RegionOfInterest": list(ORCA_REGION),
        "DetectorName": "orca",
    }
    with device_context(DetectorDevice, properties=properties, process=True) as device:
        _settings(device, "vanished.h5", "INTERNAL", 1000, 0.001)
        device.Arm()
        wait_until(lambda: device.state() == tango.DevState.FAULT, 30, "FAULT")
        assert "DCAMERR_NOCAMERA" in device.status(), device.status()
    with h5py.File(data / "vanished.h5") as f:
        numbers = list(f["entry/instrument/orca/sequence_number"][()])
    written = [n for n in numbers if n >= 0]
    # What the adapter took from the ring before the camera went is kept, in order (a camera
    # that is gone takes the frames still in its ring with it).
    assert written == list(range(len(written))) and written, numbers[:25]

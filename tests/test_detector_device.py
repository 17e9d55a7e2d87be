"""DetectorDevice through Tango (tango.test_context): attributes, commands, states, refusals."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers the bslz4 filter for reading
import numpy as np
import pytest
import tango

from devices.detector_device import DetectorDevice
from sim.frames import synthetic_frame
from sim.trigger_input import fire
from tests.helpers import device_context, wait_until
from tooling.ports import free_port

SHAPE = (24, 20)
SETTINGS = (
    "ExposureTime",
    "FrameTime",
    "LatencyTime",
    "TriggerMode",
    "nTriggers",
    "nFramesPerTrigger",
    "DestinationFilename",
    "Filename",
)


TRIGGER_INPUT = f"tcp://127.0.0.1:{free_port()}"


def properties(data_root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "StreamAddress": f"tcp://127.0.0.1:{free_port()}",
        "TriggerInputAddress": f"tcp://127.0.0.1:{free_port()}",
        "FrameShape": list(SHAPE),
        "DataRoot": str(data_root),
        "DetectorName": "det01",
        "ReceiverHttpPort": -1,
        "ArmTimeout": 5.0,
        **extra,
    }


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def device(data_root: Path) -> Iterator[tango.DeviceProxy]:
    props = properties(data_root, TriggerInputAddress=TRIGGER_INPUT)
    with device_context(DetectorDevice, properties=props, process=True) as dev:
        yield dev


@pytest.fixture
def on(device: tango.DeviceProxy) -> tango.DeviceProxy:
    """The shared device, ON, with short exposures."""
    device.Stop()
    if device.state() != tango.DevState.ON:
        device.Init()
    device.ExposureTime = 0.001
    device.FrameTime = 0.002
    device.TriggerMode = "INTERNAL"
    device.nTriggers = 1
    device.nFramesPerTrigger = 1
    return device


def until_on(device: tango.DeviceProxy, timeout: float = 10) -> None:
    wait_until(
        lambda: device.state() != tango.DevState.RUNNING, timeout, "the device to leave RUNNING"
    )
    assert device.state() == tango.DevState.ON, device.status()


def frames_in(path: Path) -> np.ndarray:
    with h5py.File(path) as f:
        return f["/entry/instrument/det01/data"][()]


def test_starts_on_with_what_it_drives_in_status(device: tango.DeviceProxy) -> None:
    assert device.state() == tango.DevState.ON
    assert device.status().startswith("ready: simulator detector, embedded receiver reading tcp://")


def test_every_attribute_has_a_description_and_times_have_units(device: tango.DeviceProxy) -> None:
    for name in device.get_attribute_list():
        if name in ("State", "Status"):
            continue
        config = device.get_attribute_config(name)
        assert config.description not in ("", "No description"), name
    for name in ("ExposureTime", "FrameTime", "LatencyTime"):
        assert device.get_attribute_config(name).unit == "s"


def test_interface_of_maxiv_clients_is_there(device: tango.DeviceProxy) -> None:
    attributes = set(device.get_attribute_list())
    assert set(SETTINGS) | {"nFramesAcquired", "ReceiverState", "LastImage"} <= attributes
    assert {"Arm", "Stop", "SoftwareTrigger"} <= set(device.get_command_list())
    labels = device.get_attribute_config("TriggerMode").enum_labels
    assert list(labels) == ["INTERNAL", "SOFTWARE", "EXTERNAL", "EXTERNAL_MULTI", "GATE"]


def test_trigger_mode_is_written_by_label(on: tango.DeviceProxy) -> None:
    on.TriggerMode = "EXTERNAL_MULTI"
    assert on.read_attribute("TriggerMode").value == 3
    with pytest.raises(
        AttributeError, match=r"Invalid enum value BURST for attribute TriggerMode\. Valid values"
    ):
        on.TriggerMode = "BURST"


def test_times_are_checked_and_latency_follows_frame_time(on: tango.DeviceProxy) -> None:
    on.ExposureTime = 0.01
    on.FrameTime = 0.015
    assert on.LatencyTime == pytest.approx(0.005)
    on.LatencyTime = 0.002
    assert on.FrameTime == pytest.approx(0.012)
    with pytest.raises(tango.DevFailed, match=r"FrameTime \(0.005 s\) must be at least"):
        on.FrameTime = 0.005
    on.ExposureTime = 0.05
    assert on.FrameTime == pytest.approx(0.05)


def test_filename_is_an_alias_of_destination_filename(on: tango.DeviceProxy) -> None:
    on.Filename = "alias.h5"
    assert on.DestinationFilename == "alias.h5"
    on.DestinationFilename = "scan.h5"
    assert on.Filename == "scan.h5"


def test_internal_series_fills_the_file_and_the_progress_attributes(
    on: tango.DeviceProxy, data_root: Path
) -> None:
    on.nTriggers = 2
    on.nFramesPerTrigger = 3
    on.DestinationFilename = "internal.h5"
    assert on.nFramesExpected == 6
    on.Arm()
    until_on(on)
    data = frames_in(data_root / "internal.h5")
    assert data.shape == (6, *SHAPE)
    np.testing.assert_array_equal(data[5], synthetic_frame(5, SHAPE, "uint16"))
    assert on.nFramesAcquired == 6
    assert on.nFramesWritten == 6
    assert on.ReceiverFile == str(data_root / "internal.h5")
    assert on.ReceiverState == "idle"
    np.testing.assert_array_equal(on.LastImage, synthetic_frame(5, SHAPE, "float32"))


def test_software_scan_as_maxiv_clients_run_it(on: tango.DeviceProxy, data_root: Path) -> None:
    on.Stop()
    on.TriggerMode = "SOFTWARE"
    on.DestinationFilename = str(data_root / "points.h5")
    on.ExposureTime = 0.001
    on.nTriggers = 4
    on.Arm()
    assert on.state() == tango.DevState.RUNNING
    for point in range(1, 5):
        on.SoftwareTrigger()
        wait_until(lambda p=point: on.nFramesAcquired == p, 5, f"frame of point {point}")
    until_on(on)
    assert frames_in(data_root / "points.h5").shape[0] == 4


def test_settings_and_arm_are_refused_while_running(on: tango.DeviceProxy) -> None:
    on.TriggerMode = "SOFTWARE"
    on.DestinationFilename = ""
    on.Arm()
    for name in SETTINGS:
        value = on.read_attribute(name).value
        with pytest.raises(tango.DevFailed, match=f"cannot write {name} while RUNNING"):
            on.write_attribute(name, value)
    with pytest.raises(tango.DevFailed, match="already RUNNING"):
        on.Arm()
    on.Stop()
    assert on.state() == tango.DevState.ON


def test_software_trigger_when_not_armed_is_refused(on: tango.DeviceProxy) -> None:
    with pytest.raises(tango.DevFailed, match="SoftwareTrigger needs state RUNNING"):
        on.SoftwareTrigger()


def test_state_and_frame_count_are_pushed_as_change_events(on: tango.DeviceProxy) -> None:
    states: list[tango.DevState] = []
    frames: list[int] = []
    lock = threading.Lock()

    def record(into: list[Any]) -> Any:
        def callback(event: tango.EventData) -> None:
            if not event.err:
                with lock:
                    into.append(event.attr_value.value)

        return callback

    ids = [
        on.subscribe_event("State", tango.EventType.CHANGE_EVENT, record(states)),
        on.subscribe_event("nFramesAcquired", tango.EventType.CHANGE_EVENT, record(frames)),
    ]
    try:
        on.nFramesPerTrigger = 5
        on.FrameTime = 0.01
        on.DestinationFilename = ""
        on.Arm()
        until_on(on)
        wait_until(lambda: frames and frames[-1] == 5, 5, "the last frame count event")
        wait_until(lambda: states and states[-1] == tango.DevState.ON, 5, "the ON event")
    finally:
        for event_id in ids:
            on.unsubscribe_event(event_id)
    assert tango.DevState.RUNNING in states
    assert frames == sorted(frames)


def test_refused_path_is_fault_with_reason_and_init_recovers(on: tango.DeviceProxy) -> None:
    on.DestinationFilename = "/elsewhere/x.h5"
    with pytest.raises(tango.DevFailed, match="the receiver refused the series"):
        on.Arm()
    assert on.state() == tango.DevState.FAULT
    assert "lies outside the data root" in on.status()
    on.Init()
    assert on.state() == tango.DevState.ON


def test_bad_property_is_fault_naming_it(tmp_path: Path) -> None:
    props = properties(tmp_path, PixelType="complex64")
    with device_context(DetectorDevice, properties=props, process=True) as dev:
        assert dev.state() == tango.DevState.FAULT
        assert dev.status().startswith("cannot start: simulator properties: PixelType")
        with pytest.raises(tango.DevFailed, match="the device could not start"):
            dev.Arm()


def test_unreachable_remote_receiver_is_fault_at_arm(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with device_context(
        DetectorDevice, properties=properties(tmp_path, Receiver=url), process=True
    ) as dev:
        assert dev.status().endswith(f"remote receiver {url}")
        with pytest.raises(tango.DevFailed, match="receiver unreachable at Arm"):
            dev.Arm()
        assert dev.state() == tango.DevState.FAULT
        assert url in dev.status()


def test_stop_ends_a_long_series_early(on: tango.DeviceProxy, data_root: Path) -> None:
    on.ExposureTime = 0.005
    on.FrameTime = 0.01
    on.nFramesPerTrigger = 100_000
    on.DestinationFilename = "long.h5"
    on.Arm()
    wait_until(lambda: on.nFramesAcquired >= 3, 5, "a few frames")
    started = time.monotonic()
    on.Stop()
    assert on.state() == tango.DevState.ON
    assert time.monotonic() - started < 5
    assert 3 <= frames_in(data_root / "long.h5").shape[0] < 100_000


def test_counts_below_one_are_refused_with_the_limit(on: tango.DeviceProxy) -> None:
    for name in ("nTriggers", "nFramesPerTrigger"):
        with pytest.raises(tango.DevFailed, match=f"{name} must be at least 1, got 0"):
            on.write_attribute(name, 0)
        assert on.read_attribute(name).value == 1


def test_gate_with_several_frames_per_gate_is_refused_at_arm(on: tango.DeviceProxy) -> None:
    on.TriggerMode = "GATE"
    on.nFramesPerTrigger = 2
    with pytest.raises(tango.DevFailed, match="GATE takes one frame per gate pulse"):
        on.Arm()
    assert on.state() == tango.DevState.ON


def test_a_zero_exposure_is_kept_when_written_and_refused_at_arm(on: tango.DeviceProxy) -> None:
    on.ExposureTime = 0.0
    assert on.ExposureTime == 0.0
    with pytest.raises(tango.DevFailed, match="ExposureTime must be > 0 s, not 0"):
        on.Arm()
    assert on.state() == tango.DevState.ON


def test_external_mode_waits_for_the_trigger_input(on: tango.DeviceProxy, data_root: Path) -> None:
    on.TriggerMode = "EXTERNAL"
    on.nTriggers = 2
    on.nFramesPerTrigger = 2
    on.DestinationFilename = "external.h5"
    on.Arm()
    time.sleep(0.2)
    assert on.state() == tango.DevState.RUNNING
    assert on.nFramesAcquired == 0
    fire(TRIGGER_INPUT)
    until_on(on)
    assert frames_in(data_root / "external.h5").shape[0] == 4


def test_busy_stream_port_is_fault_at_start_and_init_recovers(tmp_path: Path) -> None:
    props = properties(tmp_path)
    port = int(props["StreamAddress"].rsplit(":", 1)[1])
    # Another process holds the port: the device server is forked, so a socket of
    # this process would be inherited by it and never freed.
    squatter = subprocess.Popen(
        [sys.executable, "-c", SQUAT, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert squatter.stdout is not None
    try:
        assert squatter.stdout.readline() == "bound\n"
        with device_context(DetectorDevice, properties=props, process=True) as dev:
            assert dev.state() == tango.DevState.FAULT
            assert f"cannot bind the data stream on {props['StreamAddress']}" in dev.status()
            squatter.kill()
            squatter.wait()
            wait_until(lambda: dev.Init() or dev.state() == tango.DevState.ON, 5, "ON after Init")
    finally:
        squatter.kill()
        squatter.wait()
        squatter.stdout.close()


SQUAT = """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("bound", flush=True)
time.sleep(60)
"""

"""The closed loop (devices.acquisition) with the simulator backend and a real embedded receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the bslz4 filter for reading
import numpy as np
import pytest

from devices.acquisition import Acquisition, AcquisitionError, LoopState
from devices.backend import BackendError, create_backend
from devices.backends.simulator import SimulatorBackend
from devices.receiver_link import EmbeddedReceiver, RemoteReceiver, embedded_config
from devices.settings import AcquisitionSettings, TriggerMode
from sim.frames import synthetic_frame
from sim.trigger_input import fire
from tests.helpers import wait_until
from tooling.ports import free_port

SHAPE = (32, 16)


def simulator() -> SimulatorBackend:
    backend = create_backend(
        "simulator",
        {
            "StreamAddress": "tcp://127.0.0.1:*",
            "TriggerInputAddress": "tcp://127.0.0.1:*",
            "FrameShape": list(SHAPE),
        },
    )
    assert isinstance(backend, SimulatorBackend)
    return backend


def embedded(endpoint: str, data_root: Path) -> EmbeddedReceiver:
    config = embedded_config(endpoint, (), "stins", [], str(data_root), "det", 1, -1, "")
    return EmbeddedReceiver(config, serve_http=False)


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Acquisition]:
    backend = simulator()
    acquisition = Acquisition(backend, embedded(backend.stream_endpoint, tmp_path), 5, 5)
    yield acquisition
    acquisition.close()


def settings(
    mode: TriggerMode,
    filename: str,
    n_triggers: int = 3,
    per_trigger: int = 2,
    exposure_time: float = 0.001,
    frame_time: float = 0.002,
) -> AcquisitionSettings:
    return AcquisitionSettings(
        exposure_time=exposure_time,
        frame_time=frame_time,
        trigger_mode=mode,
        n_triggers=n_triggers,
        frames_per_trigger=per_trigger,
        filename=filename,
    )


def until_on(loop: Acquisition) -> None:
    wait_until(lambda: loop.state is not LoopState.RUNNING, 10, "the series to end")
    assert loop.state is LoopState.ON, loop.status


def stored_frames(path: Path) -> np.ndarray:
    with h5py.File(path) as f:
        return f["/entry/instrument/det/data"][()]


def test_internal_series_is_running_then_on_with_every_frame_in_the_file(
    loop: Acquisition, tmp_path: Path
) -> None:
    loop.arm(settings(TriggerMode.INTERNAL, "internal.h5"))
    assert loop.state in (LoopState.RUNNING, LoopState.ON)
    until_on(loop)
    data = stored_frames(tmp_path / "internal.h5")
    assert data.shape == (6, *SHAPE)
    for frame in range(6):
        np.testing.assert_array_equal(data[frame], synthetic_frame(frame, SHAPE, "uint16"))
    assert loop.frames_acquired == 6
    assert loop.status == f"ready; last series: 6 of 6 frames into {tmp_path / 'internal.h5'}"


def test_software_triggers_grow_frames_acquired_by_a_burst_each(
    loop: Acquisition, tmp_path: Path
) -> None:
    loop.arm(settings(TriggerMode.SOFTWARE, "sw.h5"))
    assert loop.state is LoopState.RUNNING
    for trigger in range(1, 4):
        loop.trigger()
        wait_until(lambda t=trigger: loop.frames_acquired == 2 * t, 5, f"trigger {trigger}")
    until_on(loop)
    assert stored_frames(tmp_path / "sw.h5").shape[0] == 6


def test_external_multi_pulses_on_the_trigger_input(loop: Acquisition, tmp_path: Path) -> None:
    loop.arm(settings(TriggerMode.EXTERNAL_MULTI, "ext.h5"))
    assert isinstance(loop.backend, SimulatorBackend)
    assert loop.backend.trigger_endpoint is not None
    fire(loop.backend.trigger_endpoint, count=3)
    until_on(loop)
    assert stored_frames(tmp_path / "ext.h5").shape[0] == 6


def test_stop_ends_early_and_returns_once_the_file_is_closed(
    loop: Acquisition, tmp_path: Path
) -> None:
    loop.arm(settings(TriggerMode.INTERNAL, "stopped.h5", 1, 10_000, 0.01, 0.02))
    wait_until(lambda: loop.frames_acquired > 2, 5, "some frames")
    loop.stop()
    assert loop.state is LoopState.ON, loop.status
    frames = stored_frames(tmp_path / "stopped.h5").shape[0]
    assert 2 < frames < 10_000
    assert f"{frames} of 10000 frames" in loop.status


def test_arm_while_running_and_trigger_while_on_are_refused(loop: Acquisition) -> None:
    with pytest.raises(AcquisitionError, match="SoftwareTrigger needs state RUNNING"):
        loop.trigger()
    loop.arm(settings(TriggerMode.SOFTWARE, "busy.h5"))
    with pytest.raises(AcquisitionError, match="already RUNNING: call Stop"):
        loop.arm(settings(TriggerMode.SOFTWARE, "other.h5"))
    loop.stop()


@pytest.mark.allow_error_log
def test_refused_file_path_is_fault_with_the_receivers_reason_then_arm_recovers(
    loop: Acquisition, tmp_path: Path
) -> None:
    with pytest.raises(AcquisitionError, match=r"the receiver refused the series: .*outside"):
        loop.arm(settings(TriggerMode.INTERNAL, "../outside.h5"))
    assert loop.state is LoopState.FAULT
    assert "lies outside the data root" in loop.status
    loop.arm(settings(TriggerMode.INTERNAL, "inside.h5"))
    until_on(loop)
    assert stored_frames(tmp_path / "inside.h5").shape[0] == 6


@pytest.mark.allow_error_log
def test_existing_file_is_refused_not_overwritten(loop: Acquisition, tmp_path: Path) -> None:
    (tmp_path / "taken.h5").write_bytes(b"precious")
    with pytest.raises(AcquisitionError, match="already exists and is never overwritten"):
        loop.arm(settings(TriggerMode.INTERNAL, "taken.h5"))
    assert (tmp_path / "taken.h5").read_bytes() == b"precious"


@pytest.mark.allow_error_log
def test_detector_failure_mid_series_is_fault_and_keeps_the_frames(
    loop: Acquisition, tmp_path: Path
) -> None:
    loop.arm(settings(TriggerMode.SOFTWARE, "fault.h5"))
    loop.trigger()
    wait_until(lambda: loop.frames_acquired == 2, 5, "the first burst")
    assert isinstance(loop.backend, SimulatorBackend)
    loop.backend._detector.inject_fault("sensor high voltage lost")
    loop.trigger()
    wait_until(lambda: loop.state is LoopState.FAULT, 5, "FAULT")
    assert loop.status == "detector error: sensor high voltage lost"
    wait_until(lambda: not loop.receiver.status().series_open, 5, "the file to close")
    assert stored_frames(tmp_path / "fault.h5").shape[0] == 2


@pytest.mark.allow_error_log
def test_unreachable_remote_receiver_is_fault_at_arm_with_where_it_was_looked_for(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    loop = Acquisition(simulator(), RemoteReceiver(url), 1, 1)
    try:
        with pytest.raises(AcquisitionError, match=f"receiver unreachable at Arm: receiver {url}"):
            loop.arm(settings(TriggerMode.INTERNAL, "x.h5"))
        assert loop.state is LoopState.FAULT
        assert "is stream-receiver running there?" in loop.status
    finally:
        loop.close()


@pytest.mark.allow_error_log
def test_receiver_reading_elsewhere_is_fault_after_the_arm_timeout(tmp_path: Path) -> None:
    backend = simulator()
    receiver = embedded(f"tcp://127.0.0.1:{free_port()}", tmp_path)
    loop = Acquisition(backend, receiver, arm_timeout=0.5)
    try:
        with pytest.raises(AcquisitionError, match=r"did not start the series within 0\.5 s"):
            loop.arm(settings(TriggerMode.INTERNAL, "lost.h5"))
        assert backend.stream_endpoint in loop.status
    finally:
        loop.close()


def test_unknown_backend_and_bad_simulator_properties_are_named() -> None:
    with pytest.raises(BackendError, match="unknown backend 'pilatus9': set the Backend property"):
        create_backend("pilatus9", {})
    with pytest.raises(BackendError, match="simulator properties: PixelType"):
        create_backend("simulator", {"PixelType": "complex64"})


@pytest.mark.allow_error_log
def test_a_watcher_failure_nobody_foresaw_is_fault_with_its_reason(
    loop: Acquisition, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop.arm(settings(TriggerMode.SOFTWARE, "watched.h5"))

    def broken_status() -> object:
        raise RuntimeError("status table corrupted")

    monkeypatch.setattr(loop.receiver, "status", broken_status)
    wait_until(lambda: loop.state is LoopState.FAULT, 5, "FAULT")

    assert "internal error while watching the acquisition" in loop.status
    assert "RuntimeError: status table corrupted" in loop.status

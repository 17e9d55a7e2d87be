"""The Pilatus backend against the simulated camserver behind the streamer's proxy."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.backend import Backend, BackendError, BackendState, create_backend
from devices.backends.pilatus import PilatusBackend
from devices.settings import AcquisitionSettings, TriggerMode
from sim.pilatus import CamserverSimulator, RamDisk
from sim.trigger_input import fire
from streamers.pilatus import PilatusStreamer
from tests.helpers import Processes, wait_until
from tests.pilatus_support import SHAPE, StreamCollector, assert_frames, start_chain, start_streamer
from tooling.ports import free_port

DEVICE_DEFAULTS = {
    "TriggerInputAddress": "tcp://127.0.0.1:9998",
    "FrameShape": [512, 512],
    "PixelType": "uint16",
    "Compression": "bslz4",
}


def backend_for(streamer: PilatusStreamer) -> Backend:
    host, port = streamer.address
    return create_backend(
        "pilatus",
        {
            **DEVICE_DEFAULTS,
            "DetectorAddress": f"{host}:{port}",
            "StreamAddress": streamer.stream_endpoint,
        },
    )


@pytest.fixture
def backend(streamer: PilatusStreamer) -> Iterator[Backend]:
    pilatus = backend_for(streamer)
    yield pilatus
    pilatus.close()


def settings(mode: TriggerMode, n_triggers: int = 3, frames_per_trigger: int = 1, **kw):
    return AcquisitionSettings(
        exposure_time=kw.pop("exposure_time", 0.005),
        frame_time=kw.pop("frame_time", 0.01),
        trigger_mode=mode,
        n_triggers=n_triggers,
        frames_per_trigger=frames_per_trigger,
        filename=kw.pop("filename", "/data/pilatus_001.h5"),
    )


def idle(backend: Backend) -> None:
    wait_until(lambda: backend.state is not BackendState.ARMED, 10, "the series to end")
    assert backend.state is BackendState.IDLE, backend.error


def test_the_registry_builds_it_from_the_device_properties(backend: Backend) -> None:
    assert isinstance(backend, PilatusBackend)
    assert backend.name == "pilatus"
    assert backend.state is BackendState.IDLE


def test_a_pilatus_offers_every_trigger_mode_but_software(backend: Backend) -> None:
    assert backend.trigger_modes == {
        TriggerMode.INTERNAL,
        TriggerMode.EXTERNAL,
        TriggerMode.EXTERNAL_MULTI,
        TriggerMode.GATE,
    }
    with pytest.raises(BackendError, match="a Pilatus has no software trigger"):
        backend.trigger()


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({}, "pilatus properties: DetectorAddress: Field required"),
        ({"DetectorAddress": "dcu-host"}, "DetectorAddress 'dcu-host' is not host:port"),
        ({"DetectorAddress": "dcu:99999"}, "is not host:port"),
    ],
)
def test_bad_properties_are_named(options: dict[str, str], reason: str) -> None:
    with pytest.raises(BackendError, match=reason):
        create_backend("pilatus", {**DEVICE_DEFAULTS, **options})


def test_no_streamer_at_the_address_is_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(BackendError) as refused:
        create_backend("pilatus", {"DetectorAddress": f"127.0.0.1:{port}"})
    assert str(refused.value).startswith(
        f"cannot connect to the pilatus-streamer at 127.0.0.1:{port} (DetectorAddress): "
    )
    assert str(refused.value).endswith("is pilatus-streamer running there?")


def test_pointing_at_camserver_itself_is_a_clear_error(camserver: CamserverSimulator) -> None:
    host, port = camserver.address
    with pytest.raises(BackendError, match="is not a pilatus-streamer's proxy"):
        create_backend("pilatus", {"DetectorAddress": f"{host}:{port}"})


def test_a_second_backend_on_the_same_streamer_is_refused_with_the_reason(
    backend: Backend, streamer: PilatusStreamer
) -> None:
    with pytest.raises(BackendError) as refused:
        backend_for(streamer)
    host, port = streamer.address
    assert str(refused.value).startswith(
        f"the pilatus-streamer at {host}:{port} refused the connection: 127.0.0.1:"
    )
    assert str(refused.value).endswith("is connected to this proxy; one client at a time")


@pytest.mark.parametrize(
    ("mode", "command", "n_triggers", "frames_per_trigger", "pulses", "width"),
    [
        (TriggerMode.INTERNAL, "exposure", 2, 3, 0, 0.0),
        (TriggerMode.EXTERNAL, "exttrigger", 2, 2, 1, 0.0),
        (TriggerMode.EXTERNAL_MULTI, "extmtrigger", 3, 1, 3, 0.0),
        (TriggerMode.GATE, "extenable", 3, 1, 3, 0.02),
    ],
)
def test_each_trigger_mode_streams_every_frame_into_the_receivers_file(
    backend: Backend,
    camserver: CamserverSimulator,
    stream: StreamCollector,
    mode: TriggerMode,
    command: str,
    n_triggers: int,
    frames_per_trigger: int,
    pulses: int,
    width: float,
) -> None:
    total = n_triggers * frames_per_trigger
    backend.arm(settings(mode, n_triggers, frames_per_trigger))
    assert backend.state is BackendState.ARMED
    sent = camserver.received[-4:]
    assert sent[:3] == ["exptime 0.0050000", "expperiod 0.0100000", f"nimages {total}"]
    assert sent[3].startswith(f"{command} series-")
    assert sent[3].endswith(".cbf")
    if pulses:
        assert camserver.trigger_endpoint is not None
        fire(camserver.trigger_endpoint, count=pulses, width=width)
    idle(backend)
    wait_until(lambda: stream.series_ends() == 1, 10, "the series end on the stream")
    assert [m.htype for m in stream.messages] == ["header", *["image"] * total, "series_end"]
    assert stream.messages[0].fields["filename"] == "/data/pilatus_001.h5"
    assert_frames(stream.of("image"), total)


def test_an_empty_filename_means_live_view_only(backend: Backend, stream: StreamCollector) -> None:
    backend.arm(settings(TriggerMode.INTERNAL, 1, filename=""))
    idle(backend)
    wait_until(lambda: stream.series_ends() == 1, 10, "the series end")
    assert stream.of("header")[0].fields["filename"] == ""


def test_stop_kills_the_series_and_the_stream_ends_it(
    backend: Backend, stream: StreamCollector
) -> None:
    backend.arm(settings(TriggerMode.INTERNAL, 1000, frame_time=0.05))
    wait_until(lambda: len(stream.of("image")) >= 2, 5, "two frames")
    backend.stop()
    assert backend.state is BackendState.IDLE
    wait_until(lambda: stream.series_ends() == 1, 10, "the series end")
    assert 2 <= len(stream.of("image")) < 1000
    backend.arm(settings(TriggerMode.INTERNAL, 2))
    idle(backend)


def test_stop_while_waiting_for_triggers_ends_the_series(
    backend: Backend, stream: StreamCollector
) -> None:
    backend.arm(settings(TriggerMode.EXTERNAL_MULTI, 5))
    backend.stop()
    assert backend.state is BackendState.IDLE
    wait_until(lambda: stream.series_ends() == 1, 10, "the series end")
    assert stream.of("image") == []


def test_settings_a_pilatus_cannot_do_are_refused_before_anything_is_sent(
    backend: Backend, camserver: CamserverSimulator
) -> None:
    before = len(camserver.received)
    with pytest.raises(BackendError, match="one frame per trigger in EXTERNAL_MULTI"):
        backend.arm(settings(TriggerMode.EXTERNAL_MULTI, 2, 3))
    with pytest.raises(BackendError, match=r"FrameTime 0.01 s is too short: a Pilatus3 needs"):
        backend.arm(settings(TriggerMode.INTERNAL, 3, exposure_time=0.01, frame_time=0.01))
    assert len(camserver.received) == before


def test_a_single_frame_may_have_frame_time_equal_to_exposure(
    backend: Backend, camserver: CamserverSimulator, stream: StreamCollector
) -> None:
    backend.arm(settings(TriggerMode.INTERNAL, 1, exposure_time=0.01, frame_time=0.01))
    assert "expperiod 0.0109500" in camserver.received
    idle(backend)


def test_camserver_refusing_the_start_is_a_backend_error_with_its_reason(
    imgpath: Path,
) -> None:
    sim = CamserverSimulator(imgpath, shape=SHAPE, ramdisk=RamDisk(limit_bytes=1000))
    app = start_streamer(imgpath, sim)
    pilatus = backend_for(app)
    try:
        with pytest.raises(BackendError) as refused:
            pilatus.arm(settings(TriggerMode.INTERNAL, 2))
        assert "refused by camserver: RAM disk full:" in str(refused.value)
        assert pilatus.state is BackendState.IDLE
    finally:
        pilatus.close()
        app.close()
        sim.close()


def test_a_ram_disk_that_fills_up_mid_series_is_an_error_state_with_the_reason(
    imgpath: Path,
) -> None:
    sim = CamserverSimulator(imgpath, shape=SHAPE, ramdisk=RamDisk(limit_bytes=40_000))
    app = start_streamer(imgpath, sim)
    pilatus = backend_for(app)
    try:
        pilatus.arm(settings(TriggerMode.INTERNAL, 50, exposure_time=0.001, frame_time=0.002))
        wait_until(lambda: pilatus.state is not BackendState.ARMED, 10, "the series to end")
        assert pilatus.state is BackendState.ERROR
        assert pilatus.error.startswith("the series failed: camserver: RAM disk full: ")
        pilatus.stop()
        assert pilatus.state is BackendState.IDLE
    finally:
        pilatus.close()
        app.close()
        sim.close()


def test_losing_camserver_mid_series_is_an_error_state_naming_it(
    backend: Backend, camserver: CamserverSimulator, stream: StreamCollector
) -> None:
    backend.arm(settings(TriggerMode.INTERNAL, 1000, frame_time=0.05))
    wait_until(lambda: len(stream.of("image")) >= 1, 5, "a frame")
    camserver.close()
    wait_until(lambda: backend.state is BackendState.ERROR, 5, "the error state")
    assert backend.error.startswith(
        "the series failed: pilatus-streamer: lost the connection to camserver at 127.0.0.1:"
    )
    wait_until(lambda: stream.series_ends() == 1, 5, "the series end")
    with pytest.raises(BackendError, match="refused by pilatus-streamer: cannot reach camserver"):
        backend.arm(settings(TriggerMode.INTERNAL, 2))


def test_losing_the_streamer_mid_series_is_an_error_state_then_arm_says_why(
    imgpath: Path, camserver: CamserverSimulator
) -> None:
    app = start_streamer(imgpath, camserver)
    pilatus = backend_for(app)
    try:
        pilatus.arm(settings(TriggerMode.INTERNAL, 1000, frame_time=0.05))
        app.close()
        wait_until(lambda: pilatus.state is BackendState.ERROR, 5, "the error state")
        host, port = app.address
        assert pilatus.error == (
            f"lost the connection to the pilatus-streamer at {host}:{port} during the series: "
            "is pilatus-streamer still running?"
        )
        with pytest.raises(BackendError, match="cannot connect to the pilatus-streamer at"):
            pilatus.arm(settings(TriggerMode.INTERNAL, 2))
    finally:
        pilatus.close()


@pytest.fixture
def chain(processes: Processes, imgpath: Path) -> dict[str, object]:
    """camserver simulator and pilatus-streamer as processes, as on a DCU."""
    return start_chain(processes, imgpath, SHAPE)


@pytest.mark.e2e
def test_processes_a_series_then_a_killed_streamer_is_a_clear_backend_error(chain: dict) -> None:
    pilatus = create_backend("pilatus", chain["options"])
    stream = StreamCollector(chain["options"]["StreamAddress"])
    try:
        pilatus.arm(settings(TriggerMode.EXTERNAL_MULTI, 2))
        fire(chain["trigger"], count=2)
        idle(pilatus)
        wait_until(lambda: stream.series_ends() == 1, 10, "the series end")
        assert_frames(stream.of("image"), 2)

        pilatus.arm(settings(TriggerMode.INTERNAL, 1000, frame_time=0.05))
        chain["streamer"].send_signal(signal.SIGKILL)
        wait_until(lambda: pilatus.state is BackendState.ERROR, 10, "the error state")
        assert pilatus.error.startswith("lost the connection to the pilatus-streamer at")
        pilatus.stop()
        with pytest.raises(BackendError, match="cannot connect to the pilatus-streamer at"):
            pilatus.arm(settings(TriggerMode.INTERNAL, 2))
    finally:
        stream.close()
        pilatus.close()


@pytest.mark.e2e
def test_processes_a_killed_camserver_is_a_clear_backend_error(chain: dict) -> None:
    pilatus = create_backend("pilatus", chain["options"])
    stream = StreamCollector(chain["options"]["StreamAddress"])
    try:
        pilatus.arm(settings(TriggerMode.INTERNAL, 1000, frame_time=0.05))
        wait_until(lambda: len(stream.of("image")) >= 1, 10, "a frame")
        chain["camserver"].send_signal(signal.SIGKILL)
        wait_until(lambda: pilatus.state is BackendState.ERROR, 10, "the error state")
        assert pilatus.error.startswith(
            "the series failed: pilatus-streamer: lost the connection to camserver at"
        )
        wait_until(lambda: stream.series_ends() == 1, 10, "the series end")
        pilatus.stop()
        with pytest.raises(BackendError, match="refused by pilatus-streamer: cannot reach"):
            pilatus.arm(settings(TriggerMode.INTERNAL, 2))
    finally:
        stream.close()
        pilatus.close()

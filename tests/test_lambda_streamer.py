"""lambda-streamer in this process over the fake SDK: its module streams and its control channel."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from http_service.server import ThreadedServer
from protocols import bslz4
from protocols.lambda_control import ArmRequest, SdkTrigger, StreamerState, StreamerStatus
from sim.geometry import windmill
from sim.lambda_fake import expected_frame, library_path, windmill_systems
from streamers.lambda_control_api import create_app
from streamers.lambda_streamer import LambdaStreamer, module_endpoint
from tests.helpers import VENV_BIN, Processes, wait_until
from tests.lambda_support import SHAPE
from tests.pilatus_support import Message, StreamCollector
from tooling.ports import free_port_run


@pytest.fixture
def system_file(tmp_path: Path) -> Path:
    return windmill_systems(SHAPE)[1].write(tmp_path / "dcu2.conf")


@pytest.fixture
def streamer(system_file: Path) -> Iterator[LambdaStreamer]:
    streamer = LambdaStreamer(library_path(), system_file, "tcp://127.0.0.1:*", 1.0)
    yield streamer
    streamer.close()


@pytest.fixture
def control(streamer: LambdaStreamer) -> Iterator[str]:
    server = ThreadedServer(create_app(streamer))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def collectors(streamer: LambdaStreamer) -> Iterator[list[StreamCollector]]:
    collectors = [StreamCollector(module.endpoint) for module in streamer.modules]
    yield collectors
    for collector in collectors:
        collector.close()


def _series(streamer: LambdaStreamer, collectors: list[StreamCollector], frames: int) -> None:
    ends = [c.series_ends() for c in collectors]
    streamer.arm(ArmRequest(frames=frames, shutter_time=0.001, filename="scan.h5"))
    wait_until(
        lambda: all(c.series_ends() > e for c, e in zip(collectors, ends, strict=True)),
        20,
        "every module's series end",
    )


def _pixels(message: Message) -> np.ndarray:
    return bslz4.decompress(message.parts[0], SHAPE, np.dtype(message.fields["type"]))


def test_each_module_streams_its_placed_frames_as_the_receiver_joins_them(
    streamer: LambdaStreamer, collectors: list[StreamCollector]
) -> None:
    _series(streamer, collectors, 30)
    places = windmill(SHAPE).modules
    for module, collector in zip(streamer.modules, collectors, strict=True):
        index = module.info.index
        header = collector.of("header")[0]
        assert header.fields["filename"] == "scan.h5"
        meta = json.loads(header.parts[0])
        assert meta == {
            "module": f"m{index}",
            "x": places[index].x,
            "y": places[index].y,
            "rotation": places[index].rotation * 90,
            "full_shape": list(windmill(SHAPE).full_shape),
        }
        images = collector.of("image")
        assert [m.fields["frame"] for m in images] == list(range(30))
        for message in images:
            assert message.fields["shape"] == [4, *SHAPE]
            assert message.fields["chunks"] == [1, *SHAPE]
            assert message.fields["compression"] == "bslz4"
            np.testing.assert_array_equal(
                _pixels(message), expected_frame(index, message.fields["frame"], *SHAPE)
            )
    status = streamer.status()
    assert status.state is StreamerState.IDLE
    assert [m.frames_sent for m in status.modules] == [30, 30]


def test_message_numbers_run_on_across_series(
    streamer: LambdaStreamer, collectors: list[StreamCollector]
) -> None:
    _series(streamer, collectors, 3)
    _series(streamer, collectors, 2)
    numbers = [m.fields["msg_number"] for m in collectors[0].messages]
    assert numbers == list(range((1 + 3 + 1) + (1 + 2 + 1)))


def test_frames_the_sdk_flags_are_not_sent_and_are_listed_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, system_file: Path
) -> None:
    monkeypatch.setenv("LAMBDA_FAKE_FAULTS", "corrupt_frame=2:4;missing_frame=3:6;lose_frame=3:8")
    streamer = LambdaStreamer(library_path(), system_file, "tcp://127.0.0.1:*")
    collectors = [StreamCollector(module.endpoint) for module in streamer.modules]
    try:
        _series(streamer, collectors, 10)
        frames = [[m.fields["frame"] for m in c.of("image")] for c in collectors]
        assert frames == [
            [n for n in range(10) if n != 4],
            [n for n in range(10) if n not in (6, 8)],
        ]
        dropped = [[(d.frame, d.reason) for d in m.dropped] for m in streamer.status().modules]
        assert dropped == [[(4, "corrupt")], [(6, "missing"), (8, "lost")]]
    finally:
        for collector in collectors:
            collector.close()
        streamer.close()


@pytest.mark.allow_error_log
def test_a_stalled_module_is_reported_and_stop_ends_its_series(
    monkeypatch: pytest.MonkeyPatch, system_file: Path
) -> None:
    monkeypatch.setenv("LAMBDA_FAKE_FAULTS", "stall_module=3:5")
    streamer = LambdaStreamer(library_path(), system_file, "tcp://127.0.0.1:*", 0.5)
    collectors = [StreamCollector(module.endpoint) for module in streamer.modules]
    try:
        streamer.arm(ArmRequest(frames=1000, shutter_time=0.001))
        status = wait_until(
            lambda: (s := streamer.status()).state is StreamerState.ERROR and s, 20, "the stall"
        )
        assert "module m3 (index 3) delivered no frame" in status.error
        assert "after frame 4" in status.error
        assert streamer.stop().state is StreamerState.IDLE
        wait_until(lambda: [c.series_ends() for c in collectors] == [1, 1], 10, "series ends")
        assert [m.fields["frame"] for m in collectors[1].of("image")] == list(range(5))
    finally:
        for collector in collectors:
            collector.close()
        streamer.close()


def test_the_control_channel_arms_refuses_and_reports(
    control: str, collectors: list[StreamCollector]
) -> None:
    status = StreamerStatus.model_validate(httpx.get(f"{control}/status").json())
    assert [m.id for m in status.modules] == ["m2", "m3"]
    too_short = {"frames": 5, "shutter_time": 0.0001}
    refused = httpx.post(f"{control}/arm", json=too_short)
    assert refused.status_code == 422
    assert "minimum of 0.5 ms" in refused.json()["detail"]
    long = {"frames": 100000, "shutter_time": 0.001, "trigger": SdkTrigger.EXT_FRAMES.value}
    assert httpx.post(f"{control}/arm", json=long).status_code == 200
    busy = httpx.post(f"{control}/arm", json=long)
    assert busy.status_code == 409
    assert "stop it first" in busy.json()["detail"]
    stopped = StreamerStatus.model_validate(httpx.post(f"{control}/stop", timeout=15).json())
    assert stopped.state is StreamerState.IDLE
    wait_until(lambda: [c.series_ends() for c in collectors] == [1, 1], 10, "series ends")


@pytest.mark.allow_error_log
def test_an_sdk_that_cannot_open_is_reported_in_its_words_and_retried_at_stop(
    monkeypatch: pytest.MonkeyPatch, system_file: Path
) -> None:
    monkeypatch.setenv("LAMBDA_FAKE_FAULTS", "open_error=module 2 unreachable: no route to host")
    streamer = LambdaStreamer(library_path(), system_file, "tcp://127.0.0.1:*")
    try:
        status = streamer.status()
        assert status.state is StreamerState.ERROR
        assert "module 2 unreachable: no route to host" in status.error
        assert status.modules == []
        monkeypatch.delenv("LAMBDA_FAKE_FAULTS")
        status = streamer.stop()
        assert status.state is StreamerState.IDLE
        assert [m.id for m in status.modules] == ["m2", "m3"]
    finally:
        streamer.close()


@pytest.mark.parametrize(
    ("base", "index", "endpoint"),
    [("tcp://*:9010", 3, "tcp://*:9013"), ("tcp://127.0.0.1:*", 2, "tcp://127.0.0.1:*")],
)
def test_module_i_binds_the_base_port_plus_i(base: str, index: int, endpoint: str) -> None:
    assert module_endpoint(base, index) == endpoint


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--system", "x.conf"], "--library is needed"),
        (["--library", "lib.so", "--system", "/nonexistent.conf"], "no such file"),
        (["--library", "lib.so", "--system", __file__, "--stream", "ipc://x"], "tcp://HOST:PORT"),
    ],
)
def test_bad_command_lines_are_refused_in_one_line(arguments: list[str], message: str) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "lambda-streamer"), *arguments],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_daq_sim_lambda_runs_two_dcus_on_the_ports_it_is_given(processes: Processes) -> None:
    control, stream = free_port_run(2), free_port_run(4)
    proc = processes.start(
        "daq-sim",
        "lambda",
        "--shape", "16", "24",
        "--control-port", str(control),
        "--stream-port", str(stream),
    )  # fmt: skip
    for k in range(2):
        processes.wait_serving(proc, f"http://127.0.0.1:{control + k}")
    endpoints = [
        module["endpoint"]
        for k in range(2)
        for module in httpx.get(f"http://127.0.0.1:{control + k}/status").json()["modules"]
    ]
    assert endpoints == [f"tcp://127.0.0.1:{stream + i}" for i in range(4)]
    processes.stop(proc)
    assert proc.returncode == 0, processes.output(proc)
    assert f"DetectorAddress = 127.0.0.1:{control}, 127.0.0.1:{control + 1}" in processes.output(
        proc
    )

"""End to end with real processes on 127.0.0.1: daq-generator -> stream-receiver -> HDF5.

This is the user's story: start a receiver, point a detector stream at it,
watch its HTTP status, read the file back with plain h5py + hdf5plugin, and
consume the republished stream.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the bslz4 filter for reading)
import httpx
import numpy as np
import pytest
import zmq

from protocols import bslz4, stins
from protocols.model import Image, SeriesEnd, SeriesStart
from sim.frames import synthetic_frame
from tests.helpers import Processes, wait_until
from tooling.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SHAPE = (64, 48)
FRAMES = 40


class StateRecorder(threading.Thread):
    """Polls /status and keeps the sequence of distinct states seen."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.states: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client() as client:
            while not self.done.is_set():
                state = client.get(f"{self.url}/status").json()["state"]
                if not self.states or self.states[-1] != state:
                    self.states.append(state)
                time.sleep(0.005)


class ForwardConsumer(threading.Thread):
    """Collects the forwarded stream until its series_end."""

    def __init__(self, context: zmq.Context, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.socket = context.socket(zmq.PULL)
        self.socket.rcvtimeo = 30_000
        self.socket.connect(endpoint)
        self.messages: list = []

    def run(self) -> None:
        try:
            while True:
                message = stins.parse(self.socket.recv_multipart())
                self.messages.append(message)
                if isinstance(message, SeriesEnd):
                    return
        finally:
            self.socket.close(linger=0)


def start_receiver(processes: Processes, data_root: Path, workers: int) -> tuple[str, int, int]:
    stream_port, http_port, forward_port = free_port(), free_port(), free_port()
    proc = processes.start(
        "stream-receiver",
        "--connect", f"tcp://127.0.0.1:{stream_port}",
        "--http", f"127.0.0.1:{http_port}",
        "--forward", f"tcp://127.0.0.1:{forward_port}",
        "--data-root", str(data_root),
        "--workers", str(workers),
    )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"
    processes.wait_serving(proc, url)
    return url, stream_port, forward_port


def series_closed(url: str, series: int) -> dict:
    """Wait until the receiver has closed its ``series``-th series; return its status."""

    def closed() -> dict | None:
        status = httpx.get(f"{url}/status").json()
        return status if status["series_count"] >= series and not status["series_open"] else None

    return wait_until(closed, 30, f"series {series} to be closed")


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("compression", ["none", "bslz4"])
@pytest.mark.parametrize("out_of_order", [False, True], ids=["in-order", "out-of-order"])
def test_generator_to_receiver_to_hdf5(processes, tmp_path, workers, compression, out_of_order):
    url, stream_port, forward_port = start_receiver(processes, tmp_path, workers)
    context = zmq.Context()
    consumer = ForwardConsumer(context, f"tcp://127.0.0.1:{forward_port}")
    consumer.start()
    recorder = StateRecorder(url)
    recorder.start()
    args = [
        "--bind", f"tcp://127.0.0.1:{stream_port}",
        "--frames", str(FRAMES),
        "--rate", "100",
        "--shape", *map(str, SHAPE),
        "--dtype", "uint16",
        "--compression", compression,
        "--filename", "e2e/series.h5",
    ]  # fmt: skip
    if out_of_order:
        args.append("--out-of-order")
    generator = processes.start("daq-generator", *args)

    assert generator.wait(timeout=60) == 0, processes.output(generator)
    status = series_closed(url, 1)
    recorder.done.set()
    recorder.join()
    consumer.join(timeout=30)
    context.term()

    assert status["state"] == "idle", status["error"]
    assert recorder.states[0] == "idle" and "running" in recorder.states
    assert recorder.states[-1] == "idle"
    assert httpx.get(f"{url}/received_frames").json() == {"value": FRAMES}
    assert status["frames_written"] == FRAMES
    with h5py.File(tmp_path / "e2e/series.h5") as f:
        data = f["entry/instrument/detector/data"]
        assert data.shape == (FRAMES, *SHAPE)
        for k in range(FRAMES):
            np.testing.assert_array_equal(data[k], synthetic_frame(k, SHAPE, "uint16"))
        assert list(f["entry/instrument/detector/sequence_number"]) == list(range(FRAMES))
    messages = consumer.messages
    assert [m.seq for m in messages] == list(range(FRAMES + 2))
    assert isinstance(messages[0], SeriesStart)
    assert messages[0].filename == "e2e/series.h5"
    images = [m for m in messages if isinstance(m, Image)]
    assert len(images) == FRAMES
    sent_order = sorted(m.frame for m in images)
    assert sent_order == list(range(FRAMES))
    last = images[-1]
    pixels = (
        bslz4.decompress(last.data, last.shape, last.dtype)
        if last.compression == "bslz4"
        else np.frombuffer(last.data, last.dtype).reshape(last.shape)
    )
    np.testing.assert_array_equal(pixels, synthetic_frame(last.frame, SHAPE, "uint16"))


def test_refused_path_then_next_series(processes, tmp_path):
    (tmp_path / "root").mkdir()
    url, stream_port, _ = start_receiver(processes, tmp_path / "root", 2)
    bad = processes.start(
        "daq-generator", "--bind", f"tcp://127.0.0.1:{stream_port}", "--frames", "3",
        "--shape", "8", "8", "--filename", "../escape.h5",
    )  # fmt: skip
    assert bad.wait(timeout=60) == 0, processes.output(bad)
    status = wait_until(
        lambda: (s := httpx.get(f"{url}/status").json())["state"] == "error" and s,
        30,
        "the refusal",
    )
    assert "outside the data root" in status["error"]
    assert not (tmp_path / "escape.h5").exists()
    good = processes.start(
        "daq-generator", "--bind", f"tcp://127.0.0.1:{stream_port}", "--frames", "3",
        "--shape", "8", "8", "--filename", "ok.h5",
    )  # fmt: skip
    assert good.wait(timeout=60) == 0, processes.output(good)
    status = series_closed(url, 2)
    assert status["state"] == "idle", status["error"]
    with h5py.File(tmp_path / "root/ok.h5") as f:
        assert f["entry/instrument/detector/data"].shape == (3, 8, 8)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_mid_series_closes_the_file_with_the_frames_received(processes, tmp_path, signum):
    url, stream_port, _ = start_receiver(processes, tmp_path, 2)
    receiver = processes.started[-1]
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.bind(f"tcp://127.0.0.1:{stream_port}")
    push.send_multipart(stins.encode_header(0, "interrupted.h5"))
    for frame in range(3):
        pixels = synthetic_frame(frame, SHAPE, "uint16")
        push.send_multipart(stins.encode_image(frame + 1, frame, pixels.tobytes(), SHAPE, "uint16"))
    wait_until(lambda: httpx.get(f"{url}/status").json()["frames_written"] == 3, 30, "3 frames")
    push.close(linger=0)
    context.term()

    receiver.send_signal(signum)

    assert receiver.wait(timeout=20) == 0, processes.output(receiver)
    with h5py.File(tmp_path / "interrupted.h5") as f:
        data = f["entry/instrument/detector/data"]
        assert data.shape == (3, *SHAPE)
        np.testing.assert_array_equal(data[2], synthetic_frame(2, SHAPE, "uint16"))

"""Files are readable while they are written, and after the receiver is killed.

Another process reads the frames of the last flush while the series runs
(HDF5 SWMR); a receiver killed with SIGKILL mid-series leaves a file that
``daq-recover`` makes readable by plain h5py, holding every frame that the
status called durable before the kill; the next receiver writes on.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import httpx
import pytest
import zmq

from tests.helpers import VENV_BIN, Processes, wait_until
from tests.receiver_support import InProcessReceivers, SeriesSender, series_closed
from tooling.ports import free_port

pytestmark = pytest.mark.timeout(90)

SHAPE = (256, 512)
"""uint16: 256 kB a frame."""

READER = """
import sys, h5py
with h5py.File(sys.argv[1], "r", swmr=True) as f:
    detector = f["entry/instrument/detector"]
    numbers = detector["sequence_number"][()]
    data = detector["data"]
    print(len(numbers), data.shape[0], sum(int(data[i, 0, 0]) == n for i, n in enumerate(numbers)))
"""


def read_in_another_process(path: Path) -> tuple[int, int, int]:
    """(frames listed, frames in data, frames whose pixels match their number), read with SWMR."""
    out = subprocess.run(
        [sys.executable, "-c", READER, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    listed, stored, right = map(int, out.stdout.split())
    return listed, stored, right


def test_another_process_reads_the_frames_of_the_last_flush_while_the_series_runs(
    receivers: InProcessReceivers, context: zmq.Context, tmp_path: Path
) -> None:
    sender = SeriesSender(context, SHAPE)
    try:
        receiver = receivers.start(connect=[sender.endpoint], flush_interval=0.2)
        wait_until(lambda: sender.socket.poll(0, zmq.POLLOUT), 5, "workers to connect")
        sender.header("live.h5")
        sender.frames(range(20))
        wait_until(
            lambda: receiver.status()["series"]["frames_durable"] == 20, 10, "a flush of 20 frames"
        )

        assert read_in_another_process(tmp_path / "live.h5") == (20, 20, 20)
        assert receiver.status()["state"] == "running"

        sender.frames(range(20, 30))
        sender.end(30)
        status = series_closed(receiver)
    finally:
        sender.close()

    assert status["last_series"]["frames_durable"] == 30
    with h5py.File(tmp_path / "live.h5", "r") as f:
        assert list(f["entry/instrument/detector/sequence_number"]) == list(range(30))


@pytest.mark.e2e
def test_a_receiver_killed_mid_series_leaves_every_durable_frame_readable(
    processes: Processes, context: zmq.Context, tmp_path: Path
) -> None:
    data_root = tmp_path / "data"
    data_root.mkdir()
    port, http = free_port(), free_port()
    url = f"http://127.0.0.1:{http}"
    args = [
        "--connect", f"tcp://127.0.0.1:{port}", "--http", f"127.0.0.1:{http}",
        "--data-root", str(data_root), "--flush-interval", "0.2",
    ]  # fmt: skip
    receiver = processes.start("stream-receiver", *args)
    processes.wait_serving(receiver, url)
    sender = SeriesSender(context, SHAPE, f"tcp://127.0.0.1:{port}")
    try:
        sender.header("killed.h5")
        sender.frames(range(400))
        durable = wait_until(
            lambda: (
                httpx.get(f"{url}/status").json()["series"]["frames_durable"] >= 300
                and httpx.get(f"{url}/status").json()["series"]["frames_durable"]
            ),
            30,
            "300 durable frames",
        )
        receiver.kill()
        receiver.wait(10)

        with pytest.raises(OSError, match="open for write"):
            h5py.File(data_root / "killed.h5", "r")
        recovered = subprocess.run(
            [str(VENV_BIN / "daq-recover"), str(data_root / "killed.h5")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert recovered.returncode == 0, recovered.stderr
        assert "readable" in recovered.stdout
        with h5py.File(data_root / "killed.h5", "r") as f:
            detector = f["entry/instrument/detector"]
            numbers = detector["sequence_number"][()]
            stored = [int(n) for n in numbers if n >= 0]
            assert len(stored) >= durable
            for index, number in enumerate(numbers):
                if number >= 0:
                    assert detector["data"][index, 0, 0] == number

        again = processes.start("stream-receiver", *args)
        processes.wait_serving(again, url)
        sender.header("next.h5")
        sender.frames(range(10))
        sender.end(10)
        wait_until(lambda: httpx.get(f"{url}/status").json()["last_series"], 30, "the next series")
    finally:
        sender.close()
    last = httpx.get(f"{url}/status").json()["last_series"]
    assert (last["ok"], last["frames_written"]) == (True, 10)
    with h5py.File(data_root / "next.h5", "r") as f:
        assert f["entry/instrument/detector/data"].shape[0] == 10

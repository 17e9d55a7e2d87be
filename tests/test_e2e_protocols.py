"""End to end with real processes: Dectris streams into stream-receiver, read back with h5py.

The user's story: point a receiver configured for the detector's stream at a
real recorded Eiger stream (daq-replay) or at the generator speaking Dectris
stream v1, watch its HTTP status, read the file with plain h5py + hdf5plugin.
"""

from __future__ import annotations

from pathlib import Path

import bitshuffle
import h5py
import hdf5plugin  # noqa: F401  (registers the bslz4 filter for reading)
import httpx
import numpy as np
import pytest

from sim.frames import synthetic_frame
from sim.replay import detect_protocol, prepare
from tests.captures import SHAPE, STREAM1, STREAM2, V1_FRAMES, V2_FRAMES, capture
from tests.helpers import Processes, wait_until
from tooling.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

DETECTOR = "entry/instrument/detector"


def start_receiver(processes: Processes, data_root: Path, protocol: str) -> tuple[str, int]:
    stream_port, http_port = free_port(), free_port()
    proc = processes.start(
        "stream-receiver",
        "--connect", f"tcp://127.0.0.1:{stream_port}",
        "--http", f"127.0.0.1:{http_port}",
        "--data-root", str(data_root),
        "--protocol", protocol,
        "--workers", "4",
    )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"
    processes.wait_serving(proc, url)
    return url, stream_port


def series_closed(url: str) -> dict:
    def closed() -> dict | None:
        status = httpx.get(f"{url}/status").json()
        return status if status["series_count"] >= 1 and not status["series_open"] else None

    return wait_until(closed, 30, "the series to be closed")


@pytest.mark.parametrize(
    ("path", "frames", "extra"),
    [(STREAM1, V1_FRAMES, ["--add-end"]), (STREAM2, V2_FRAMES, [])],
    ids=["dectris-v1", "dectris-v2"],
)
def test_a_real_capture_replayed_into_the_receiver_gives_its_frames(
    processes, tmp_path, path, frames, extra
):
    recorded = capture(path)
    protocol = detect_protocol(recorded)
    url, stream_port = start_receiver(processes, tmp_path, protocol)

    player = processes.start(
        "daq-replay", str(path), "--bind", f"tcp://127.0.0.1:{stream_port}",
        "--filename", "replayed/scan.h5", *extra,
    )  # fmt: skip
    assert player.wait(timeout=60) == 0, processes.output(player)
    status = series_closed(url)

    assert status["state"] == "idle", status["error"]
    assert status["frames_written"] == frames
    sent = prepare(recorded, protocol, "replayed/scan.h5")
    with h5py.File(tmp_path / "replayed/scan.h5") as f:
        data = f[f"{DETECTOR}/data"]
        assert data.shape == (frames, *SHAPE)
        assert data.dtype == np.uint32
        assert list(f[f"{DETECTOR}/sequence_number"]) == list(range(frames))
        assert f[f"{DETECTOR}/count_time"][()] == pytest.approx(0.9999999)
        for k in (0, frames - 1):
            _, chunk = data.id.read_direct_chunk((k, 0, 0))
            assert chunk in b"".join(sent[1 + k])  # stored as the detector sent it
            reference = bitshuffle.decompress_lz4(
                np.frombuffer(chunk, np.uint8, offset=12), SHAPE, np.dtype(np.uint32), 2048
            )
            np.testing.assert_array_equal(data[k], reference)


def test_generated_dectris_v1_without_a_frame_count_lands_in_order(processes, tmp_path):
    url, stream_port = start_receiver(processes, tmp_path, "dectris-v1")

    generator = processes.start(
        "daq-generator", "--protocol", "dectris-v1", "--header-detail", "none",
        "--bind", f"tcp://127.0.0.1:{stream_port}", "--frames", "40", "--shape", "32", "24",
        "--dtype", "uint32", "--compression", "bslz4", "--out-of-order",
        "--filename", "gen/v1.h5",
    )  # fmt: skip
    assert generator.wait(timeout=60) == 0, processes.output(generator)
    status = series_closed(url)

    assert status["state"] == "idle", status["error"]
    with h5py.File(tmp_path / "gen/v1.h5") as f:
        data = f[f"{DETECTOR}/data"]
        assert data.shape == (40, 32, 24)
        assert list(f[f"{DETECTOR}/sequence_number"]) == list(range(40))
        for k in range(40):
            np.testing.assert_array_equal(data[k], synthetic_frame(k, (32, 24), "uint32"))

"""Drop-in mode tried as a facility running MAX IV's streaming-receiver would (issue 24).

Real processes throughout: a ``stream-receiver --config detectors.yaml
--entry NAME`` reading a MAX IV-style entry, the detector's DCUs played by
``daq-generator`` / ``daq-replay`` processes, and MAX IV-style live-view
clients (``tests/maxiv_client.py``: pickle, then MAX IV's
``bitshuffle.decompress_lz4``) in processes of their own, so that a blob
bitshuffle cannot take shows as that process crashing.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the bslz4 filter for reading)
import httpx
import numpy as np
import pytest

from sim.frames import synthetic_frame
from sim.geometry import covered, windmill
from tests import maxiv_client
from tests.helpers import Processes
from tests.test_e2e_receiver import series_closed
from tooling.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DATA = Path(__file__).parent / "data"
MAXIV_HEADER_KEYS = {"htype", "msg_number", "frame", "shape", "type", "compression"}


def start_drop_in(processes: Processes, tmp_path: Path, entry: dict[str, Any]) -> str:
    """``stream-receiver`` on one MAX IV YAML entry (``detector``); its API URL."""
    api_port = free_port()
    path = tmp_path / "detectors.yaml"
    lines = [f"  {key}: {json.dumps(value)}" for key, value in entry.items()]
    path.write_text("### beamline\ndetector:\n" + "\n".join(lines) + "\n")
    proc = processes.start(
        "stream-receiver", "--config", str(path), "--entry", "detector",
        "--http", f"127.0.0.1:{api_port}", "--data-root", str(tmp_path),
    )  # fmt: skip
    url = f"http://127.0.0.1:{api_port}"
    processes.wait_serving(proc, url)
    return url


def maxiv_live_view(processes: Processes, url: str, tmp_path: Path) -> tuple[dict, np.ndarray]:
    """What a MAX IV live-view client decodes from ``/last_frame``, run as its own process."""
    out = tmp_path / "live.npy"
    client = processes.start("python", "-m", "tests.maxiv_client", url, str(out))
    assert client.wait(timeout=30) == 0, processes.output(client)
    header = json.loads(processes.output(client).strip().splitlines()[-1])
    return header, np.load(out)


def finished(processes: Processes, *senders: Any) -> None:
    for sender in senders:
        assert sender.wait(timeout=60) == 0, processes.output(sender)


def idle_without_error(url: str) -> dict:
    status = series_closed(url, 1)
    assert status["state"] == "idle", status["error"]
    return status


SOURCES = {
    "v1-generator": (
        "Eiger",
        ["daq-generator", "--protocol", "dectris-v1", "--compression", "bslz4",
         "--dtype", "uint32", "--shape", "48", "40", "--frames", "12"],
    ),
    "v2-generator-2-thresholds": (
        "DectrisStream2",
        ["daq-generator", "--protocol", "dectris-v2", "--compression", "bslz4",
         "--thresholds", "2", "--shape", "48", "40", "--frames", "12"],
    ),
    "v1-capture": ("Eiger", ["daq-replay", str(DATA / "dectris-stream1-capture.cbors.gz"), "--add-end"]),
    "v2-capture": ("DectrisStream2", ["daq-replay", str(DATA / "dectris-stream2-capture.cbors.gz")]),
}  # fmt: skip


@pytest.mark.parametrize("source", list(SOURCES))
def test_max_iv_clients_decompress_the_last_dectris_frame_as_received(processes, tmp_path, source):
    kind, sender = SOURCES[source]
    port = free_port()
    url = start_drop_in(
        processes,
        tmp_path,
        {
            "class": kind,
            "dcu_host_purple": "127.0.0.1",
            "dcu_port_purple": port,
            "nworkers": 2,
            "dset_name": "/entry/instrument/eiger/data",
        },
    )

    command, *args = sender
    detector = processes.start(
        command, *args, "--bind", f"tcp://127.0.0.1:{port}", "--filename", "series.h5"
    )
    finished(processes, detector)
    idle_without_error(url)
    header, pixels = maxiv_live_view(processes, url, tmp_path)
    parts = maxiv_client.fetch(url)

    assert parts[0] == header
    assert header["compression"] == "bslz4"
    stacked = "chunks" in header
    assert set(header) == MAXIV_HEADER_KEYS | ({"chunks"} if stacked else set())
    with h5py.File(tmp_path / "series.h5") as f:
        data = f["entry/instrument/eiger/data"]
        index = list(f["entry/instrument/eiger/sequence_number"]).index(header["frame"])
        np.testing.assert_array_equal(pixels, data[index])
        planes = range(data.shape[1]) if stacked else [None]
        offsets = [(index, p, 0, 0) if stacked else (index, 0, 0) for p in planes]
        stored = [data.id.read_direct_chunk(offset)[1] for offset in offsets]
    assert parts[1:] == stored  # the chunks as received, which is what the file holds
    if stacked:
        assert header["chunks"] == [1, *header["shape"][1:]]
        assert len(parts) == 1 + header["shape"][0]


def consecutive_free_ports(count: int) -> int:
    """A port P with P .. P + count - 1 free on 127.0.0.1 (a Lambda's module k at P + k)."""
    for _ in range(100):
        base = free_port()
        try:
            for offset in range(count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise AssertionError(f"no {count} consecutive free ports")


def test_a_lambda_entry_is_placed_by_the_module_headers(processes, tmp_path):
    module = (16, 40)
    geometry = windmill(module)
    frames = 20
    base = consecutive_free_ports(4)
    url = start_drop_in(
        processes,
        tmp_path,
        {
            "class": "Lambda",
            "dcu_host_purple": ["127.0.0.1"] * 4,
            "dcu_port_purple": base,
            "dset_name": "/entry/instrument/lambda/data",
        },
    )

    streamers = processes.start(
        "daq-generator", "--modules", "4", "--bind", f"tcp://127.0.0.1:{base}",
        "--frames", str(frames), "--shape", *map(str, module), "--compression", "bslz4",
        "--filename", "lambda.h5",
    )  # fmt: skip
    finished(processes, streamers)
    status = idle_without_error(url)
    header, stack = maxiv_live_view(processes, url, tmp_path)

    assert [m["frames_received"] for m in status["modules"]] == [frames] * 4
    with h5py.File(tmp_path / "lambda.h5") as f:
        detector = f["entry/instrument/lambda"]
        assert detector["data"].shape == (frames, 4, *module)
        assert list(detector["full_image_shape"]) == list(geometry.full_shape)
        for index, place in enumerate(geometry.modules):
            group = detector[f"m{index}"]
            assert list(group["full_image_origin"]) == [place.y, place.x]
            assert group["full_image_rotation"][()] == place.rotation
        np.testing.assert_array_equal(stack, detector["data"][header["frame"]])
    assert (header["shape"], header["chunks"]) == ([4, *module], [1, *module])
    assert header["x"] == [place.x for place in geometry.modules]
    assert header["y"] == [place.y for place in geometry.modules]
    assert header["rotation"] == [place.rotation * 90 for place in geometry.modules]
    assert header["full_shape"] == list(geometry.full_shape)

    ours = httpx.get(f"{url}/last_frame", params={"format": "raw"})
    shown = json.loads(ours.headers["X-Frame-Header"])
    full = synthetic_frame(shown["frame"], geometry.full_shape, "uint16")
    expected = np.where(covered(geometry, module), full, np.iinfo(np.uint16).max)
    assembled = np.frombuffer(ours.content, shown["type"]).reshape(shown["shape"])
    np.testing.assert_array_equal(assembled, expected)


def test_a_detector_entry_with_two_dcu_hosts_reads_both(processes, tmp_path):
    port, frames, shape = free_port(), 40, (24, 32)
    url = start_drop_in(
        processes,
        tmp_path,
        {
            "class": "Detector",
            "dcu_host_purple": ["127.0.0.1", "127.0.0.2"],
            "dcu_port_purple": port,
            "dset_name": "/entry/instrument/zyla/data",
        },
    )

    series = ["--frames", str(frames), "--shape", *map(str, shape), "--rate", "200"]
    dcus = [
        processes.start(
            "daq-generator",
            "--share",
            f"{part}/2",
            "--bind",
            f"tcp://{host}:{port}",
            *series,
            "--filename",
            "balanced.h5",
        )
        for part, host in enumerate(["127.0.0.1", "127.0.0.2"])
    ]
    finished(processes, *dcus)
    status = idle_without_error(url)
    header, pixels = maxiv_live_view(processes, url, tmp_path)

    assert status["config"]["connect"] == [f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.2:{port}"]
    assert status["frames_written"] == frames
    with h5py.File(tmp_path / "balanced.h5") as f:
        data = f["entry/instrument/zyla/data"]
        assert data.shape == (frames, *shape)
        assert list(f["entry/instrument/zyla/sequence_number"]) == list(range(frames))
        for frame in (0, 1, frames - 2, frames - 1):  # frames from either DCU
            np.testing.assert_array_equal(data[frame], synthetic_frame(frame, shape, "uint16"))
    assert header["compression"] == "none"
    np.testing.assert_array_equal(pixels, synthetic_frame(header["frame"], shape, "uint16"))

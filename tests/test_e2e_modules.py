"""End to end with real processes: four module streamers -> stream-receiver -> HDF5, live view, forward.

One ``daq-generator --module mK`` process per module stands in for the
Lambda's per-module streamers (docs/architecture.md#multi-module-detectors), a ``stream-receiver`` process
configured with the modules' placement joins them; a user reads the file
with h5py, looks at ``/last_frame`` and consumes the forwarded stream.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the bslz4 filter for reading)
import httpx
import numpy as np
import pytest
import zmq

from protocols import module_stack
from protocols.model import Image, SeriesEnd, SeriesStart
from sim.frames import synthetic_frame
from sim.geometry import covered, windmill
from tests.helpers import Processes, wait_until
from tests.test_e2e_receiver import ForwardConsumer, series_closed
from tooling.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

MODULE = (16, 40)
GEOMETRY = windmill(MODULE)
FILL = np.iinfo(np.uint16).max
DETECTOR = "entry/instrument/detector"


def expected_full(frame: int) -> np.ndarray:
    full = synthetic_frame(frame, GEOMETRY.full_shape, "uint16")
    return np.where(covered(GEOMETRY, MODULE), full, FILL)


def expected_module(frame: int, index: int) -> np.ndarray:
    place = GEOMETRY.modules[index]
    rows, columns = place.placed_shape(MODULE)
    full = synthetic_frame(frame, GEOMETRY.full_shape, "uint16")
    return np.rot90(full[place.y : place.y + rows, place.x : place.x + columns], -place.rotation)


def start_receiver(processes: Processes, data_root: Path) -> tuple[str, dict[str, int], int]:
    """A stream-receiver reading the four module streams; (API URL, module ports, forward port)."""
    ports = {place.name: free_port() for place in GEOMETRY.modules}
    http_port, forward_port = free_port(), free_port()
    config = data_root / "lambda.json"
    config.write_text(
        json.dumps(
            {
                "modules": [
                    {
                        "name": m.name,
                        "connect": f"tcp://127.0.0.1:{ports[m.name]}",
                        "x": m.x,
                        "y": m.y,
                        "rotation": m.rotation,
                    }
                    for m in GEOMETRY.modules
                ],
                "full_shape": list(GEOMETRY.full_shape),
                "workers": 2,
                "gap_timeout": 0.5,
            }
        )
    )
    proc = processes.start(
        "stream-receiver",
        "--config", str(config),
        "--http", f"127.0.0.1:{http_port}",
        "--forward", f"tcp://127.0.0.1:{forward_port}",
        "--data-root", str(data_root),
    )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"
    processes.wait_serving(proc, url)
    return url, ports, forward_port


def start_modules(processes: Processes, ports: dict[str, int], frames: int, rate: float) -> dict:
    """One daq-generator per module, as one streamer per module; {name: process}."""
    started = {}
    for name, port in ports.items():
        args = [
            "--modules", "4",
            "--module", name,
            "--bind", f"tcp://127.0.0.1:{port}",
            "--frames", str(frames),
            "--rate", str(rate),
            "--shape", *map(str, MODULE),
            "--compression", "bslz4",
            "--filename", "e2e/lambda.h5",
        ]  # fmt: skip
        started[name] = processes.start("daq-generator", *args)
    return started


def test_four_module_streams_become_one_file_one_live_view_one_forwarded_stream(
    processes, tmp_path
):
    url, ports, forward_port = start_receiver(processes, tmp_path)
    context = zmq.Context()
    consumer = ForwardConsumer(context, f"tcp://127.0.0.1:{forward_port}")
    consumer.start()
    frames = 30

    generators = start_modules(processes, ports, frames, rate=100)

    for proc in generators.values():
        assert proc.wait(timeout=60) == 0, processes.output(proc)
    status = series_closed(url, 1)
    consumer.join(timeout=30)
    context.term()
    assert status["state"] == "idle", status["error"]
    assert httpx.get(f"{url}/received_frames").json() == {"value": frames}
    assert [m["frames_received"] for m in status["modules"]] == [frames] * 4
    with h5py.File(tmp_path / "e2e/lambda.h5") as f:
        detector = f[DETECTOR]
        assert detector["data"].shape == (frames, 4, *MODULE)
        for frame in (0, 13, frames - 1):
            for index in range(4):
                np.testing.assert_array_equal(
                    detector["data"][frame, index], expected_module(frame, index)
                )
        for index, place in enumerate(GEOMETRY.modules):
            assert list(detector[place.name]["full_image_origin"]) == [place.y, place.x]
            assert detector[place.name]["full_image_rotation"][()] == place.rotation
            assert list(detector[place.name]["data_origin"]) == [index, 0, 0]
        assert list(detector["full_image_shape"]) == list(GEOMETRY.full_shape)

    response = httpx.get(f"{url}/last_frame")
    header = json.loads(response.headers["X-Frame-Header"])
    assert header["shape"] == list(GEOMETRY.full_shape)
    live = np.frombuffer(response.content, header["type"]).reshape(header["shape"])
    np.testing.assert_array_equal(live, expected_full(header["frame"]))

    messages = consumer.messages
    assert isinstance(messages[0], SeriesStart) and isinstance(messages[-1], SeriesEnd)
    images = [m for m in messages if isinstance(m, Image)]
    assert sorted(m.frame for m in images) == list(range(frames))
    layout = module_stack.layout_from_meta(messages[0].meta)
    for image in images[::7]:
        full = module_stack.assemble_image(image, layout)
        np.testing.assert_array_equal(full, expected_full(image.frame))


@pytest.mark.allow_error_log
def test_killing_one_module_streamer_names_it_and_keeps_the_other_modules(processes, tmp_path):
    url, ports, _ = start_receiver(processes, tmp_path)
    frames = 60
    generators = start_modules(processes, ports, frames, rate=20)
    wait_until(lambda: httpx.get(f"{url}/status").json()["frames_received"] >= 10, 30, "10 frames")

    generators["m2"].kill()

    for name, proc in generators.items():
        if name != "m2":
            assert proc.wait(timeout=60) == 0, processes.output(proc)
    status = series_closed(url, 1)
    assert status["state"] == "error"
    assert status["error"].startswith(
        f"module 'm2' (tcp://127.0.0.1:{ports['m2']}) sent nothing for frame "
    )
    m2 = status["modules"][2]
    assert m2["state"] == "silent"
    lost_from = m2["first_missing"]
    assert 10 <= lost_from < frames
    assert f"sent nothing for frame {lost_from} after 0.5 s" in status["error"]
    with h5py.File(tmp_path / "e2e/lambda.h5") as f:
        detector = f[DETECTOR]
        data = detector["data"]
        assert data.shape == (frames, 4, *MODULE)
        numbers = detector["module_sequence_number"][()]
        assert (numbers[:, [0, 1, 3]] == np.arange(frames)[:, None]).all()
        assert list(numbers[:, 2]) == list(range(lost_from)) + [-1] * (frames - lost_from)
        for index in (0, 1, 3):
            np.testing.assert_array_equal(
                data[frames - 1, index], expected_module(frames - 1, index)
            )
        np.testing.assert_array_equal(data[lost_from - 1, 2], expected_module(lost_from - 1, 2))
        assert (data[lost_from:, 2] == FILL).all()

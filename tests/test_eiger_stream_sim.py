"""The simulated Eiger's data stream against the real captures, key by key, and into a receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the bslz4 filter for reading
import numpy as np
import pytest
import requests
import zmq

from protocols import eiger_stream2
from receiver.config import load
from receiver.receiver import Receiver
from sim.eiger.server import EigerSimulator
from sim.eiger.zmq_stream import ZmqStreamSink
from sim.frames import synthetic_frame
from tests.captures import STREAM1, STREAM2, capture
from tests.helpers import wait_until

API = "api/1.8.0"


@pytest.fixture
def eiger() -> Iterator[EigerSimulator]:
    sink = ZmqStreamSink("tcp://127.0.0.1:*")
    with EigerSimulator(sink=sink, initialized=True) as simulator:
        simulator.sink = sink  # type: ignore[attr-defined]
        yield simulator
    sink.close()


def put(eiger: EigerSimulator, subsystem: str, key: str, value: object = None) -> None:
    body = None if value is None else {"value": value}
    response = requests.put(f"{eiger.url}/{subsystem}/{API}/{key}", json=body, timeout=5)
    response.raise_for_status()


def series(eiger: EigerSimulator, stream_format: str, detail: str, images: int) -> None:
    """Configure and run one ints series of ``images`` images, 2 ms apart."""
    put(eiger, "stream", "config/format", stream_format)
    put(eiger, "stream", "config/header_detail", detail)
    put(eiger, "stream", "config/header_appendix", json.dumps({"filename": "sim.h5"}))
    put(eiger, "detector", "config/trigger_mode", "ints")
    put(eiger, "detector", "config/frame_time", 0.002)
    put(eiger, "detector", "config/nimages", images)
    put(eiger, "detector", "config/ntrigger", 1)
    put(eiger, "detector", "command/arm")
    put(eiger, "detector", "command/trigger")
    put(eiger, "detector", "command/disarm")


@pytest.fixture
def pull(eiger: EigerSimulator) -> Iterator[zmq.Socket]:
    """A PULL socket on the simulator's stream, connected before anything is armed."""
    with zmq.Context() as context, context.socket(zmq.PULL) as socket:
        socket.rcvtimeo = 5000
        socket.connect(eiger.sink.endpoint)  # type: ignore[attr-defined]
        yield socket


def collect(pull: zmq.Socket, count: int) -> list[list[bytes]]:
    return [pull.recv_multipart() for _ in range(count)]


def json_keys(part: bytes) -> set[str]:
    return set(json.loads(part))


def test_stream_v1_has_the_structure_of_the_real_capture(
    eiger: EigerSimulator, pull: zmq.Socket
) -> None:
    series(eiger, "legacy", "all", 2)
    header, image, _, end = collect(pull, 4)
    real_header, real_image = capture(STREAM1)[:2]
    assert len(header) == len(real_header) == 9
    for ours, real in zip(header[:-1], real_header[:-1], strict=True):
        if ours[:1] == b"{":
            assert json_keys(ours) == json_keys(real)
        else:
            assert len(ours) == len(real)
    assert json.loads(header[-1]) == {"filename": "sim.h5"}
    assert len(image) == len(real_image) == 4
    for index in (0, 1, 3):
        assert json_keys(image[index]) == json_keys(real_image[index])
    assert json.loads(image[1])["encoding"] == json.loads(real_image[1])["encoding"]
    assert json.loads(end[0])["htype"] == "dseries_end-1.0"


def test_stream_v2_has_the_structure_of_the_real_capture(
    eiger: EigerSimulator, pull: zmq.Socket
) -> None:
    series(eiger, "cbor", "all", 2)
    ours = [eiger_stream2.decode(message[0]) for message in collect(pull, 4)]
    real = [eiger_stream2.decode(message[0]) for message in capture(STREAM2)]
    assert set(ours[0]) == set(real[0])
    assert set(ours[1]) == set(real[1])
    assert set(ours[-1]) == set(real[-1])
    assert set(ours[1]["data"]) == set(real[1]["data"]) == {"threshold_1"}


@pytest.mark.parametrize("stream_format", ["legacy", "cbor"])
def test_a_receiver_writes_every_simulated_frame(
    eiger: EigerSimulator, tmp_path: Path, stream_format: str
) -> None:
    endpoint = eiger.sink.endpoint  # type: ignore[attr-defined]
    protocol = "dectris-v1" if stream_format == "legacy" else "dectris-v2"
    receiver = Receiver(
        load(overrides={"connect": [endpoint], "protocol": protocol, "data_root": str(tmp_path)})
    )
    receiver.start()
    try:
        series(eiger, stream_format, "basic", 3)
        wait_until(
            lambda: receiver.status()["series_count"] and not receiver.status()["series_open"],
            10,
            "the file to close",
        )
        assert receiver.status()["state"] == "idle", receiver.status()["error"]
    finally:
        receiver.stop()
    with h5py.File(tmp_path / "sim.h5") as f:
        data = f["entry/instrument/detector/data"]
        assert data.shape == (3, 1065, 1030)
        for frame in range(3):
            np.testing.assert_array_equal(
                data[frame], synthetic_frame(frame, (1065, 1030), "uint32")
            )

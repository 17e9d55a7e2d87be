"""The receiver in-process, fed by a real ZeroMQ stream, checked through its files and status."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import fabio.cbfimage
import h5py
import hdf5plugin  # noqa: F401  (registers the bslz4 filter for reading)
import numpy as np
import pytest
import zmq

from protocols import bslz4, stins
from receiver import zmq_batch
from receiver.receiver import Receiver
from tests.helpers import wait_until
from tests.receiver_support import InProcessReceivers, series_closed

SHAPE = (48, 40)
DATA = "entry/instrument/detector/data"


def frame_pixels(frame: int, dtype: str = "uint16") -> np.ndarray:
    return (np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE) * 7 + frame).astype(dtype)


class Stream:
    """A detector-side PUSH socket that numbers its messages like a STINS streamer."""

    def __init__(self, context: zmq.Context) -> None:
        self.socket = context.socket(zmq.PUSH)
        self.socket.linger = 0
        self.socket.sndhwm = 2
        self.socket.bind("tcp://127.0.0.1:*")
        self.endpoint = self.socket.last_endpoint.decode()
        self.msg_number = 0

    def send(self, parts: list) -> None:
        self.socket.send_multipart(parts)
        self.msg_number += 1

    def header(self, filename: str, meta: dict | None = None) -> None:
        self.send(stins.encode_header(self.msg_number, filename, meta))

    def image(self, frame: int, compression: str = "none", **extra: object) -> None:
        pixels = frame_pixels(frame)
        blob = bslz4.compress(pixels) if compression == "bslz4" else pixels.tobytes()
        self.send(
            stins.encode_image(self.msg_number, frame, blob, SHAPE, "uint16", compression, **extra)
        )

    def end(self) -> None:
        self.send(stins.encode_series_end(self.msg_number))

    def series(self, filename: str, frames: list[int], compression: str = "none") -> None:
        self.header(filename)
        for frame in frames:
            self.image(frame, compression)
        self.end()


@pytest.fixture
def stream(context: zmq.Context) -> Iterator[Stream]:
    s = Stream(context)
    yield s
    s.socket.close()


@pytest.fixture
def start_receiver(stream: Stream, receivers: InProcessReceivers) -> Callable[..., Receiver]:
    return functools.partial(receivers.start, connect=[stream.endpoint])


def finished(receiver: Receiver, series: int = 1) -> dict:
    """Wait until ``series`` series have been closed; return the status."""
    return series_closed(receiver, series, timeout=10)


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("compression", ["none", "bslz4"])
@pytest.mark.parametrize("shuffled", [False, True])
def test_every_frame_lands_at_its_frame_number(
    start_receiver, stream, tmp_path, workers, compression, shuffled
):
    receiver = start_receiver(workers=workers)
    frames = list(np.random.default_rng(7).permutation(40)) if shuffled else list(range(40))
    stream.series("scan/run1.h5", [int(f) for f in frames], compression)

    status = finished(receiver)

    assert status["state"] == "idle", status["error"]
    assert status["frames_written"] == 40
    assert receiver.received_frames == 40
    with h5py.File(tmp_path / "scan/run1.h5") as f:
        data = f[DATA]
        assert data.shape == (40, *SHAPE)
        assert data.chunks == (1, *SHAPE)
        for k in range(40):
            np.testing.assert_array_equal(data[k], frame_pixels(k))
        assert list(f["entry/instrument/detector/sequence_number"]) == list(range(40))
        np.testing.assert_array_equal(f["entry/data/data"][5], frame_pixels(5))
        if compression == "bslz4":
            assert data.id.get_create_plist().get_filter(0)[0] == 32008


def test_workers_through_pyzmq_store_the_same_file(start_receiver, stream, tmp_path, monkeypatch):
    """Where the C receive loop cannot reach libzmq, pyzmq's recv_multipart serves instead."""
    monkeypatch.setattr(zmq_batch, "available", lambda: False)
    receiver = start_receiver(workers=2)
    stream.series("run.h5", list(range(30)), "bslz4")

    status = finished(receiver)

    assert status["state"] == "idle", status["error"]
    with h5py.File(tmp_path / "run.h5") as f:
        assert list(f["entry/instrument/detector/sequence_number"]) == list(range(30))
        np.testing.assert_array_equal(f[DATA][29], frame_pixels(29))


def test_header_metadata_goes_to_the_detector_group(start_receiver, stream, tmp_path):
    receiver = start_receiver()
    stream.header("meta.h5", {"count_time": 0.5, "sensor": {"material": "Si", "thickness": 450e-6}})
    stream.image(0)
    stream.end()

    finished(receiver)

    with h5py.File(tmp_path / "meta.h5") as f:
        det = f["entry/instrument/detector"]
        assert det["count_time"][()] == 0.5
        assert det["sensor/material"][()].decode() == "Si"


def test_forwarded_stream_carries_every_message_in_order(start_receiver, stream, context):
    receiver = start_receiver(workers=4, forward="tcp://127.0.0.1:*")
    consumer = context.socket(zmq.PULL)
    consumer.connect(receiver.forward_endpoint)
    consumer.rcvtimeo = 5000
    wait_until(lambda: stream.socket.poll(0, zmq.POLLOUT), 5, "workers to connect")
    wait_until(lambda: receiver._forwarder.connected, 5, "the forwarder to see its consumer")
    stream.series("fwd.h5", list(range(25)))

    messages = [stins.parse(consumer.recv_multipart()) for _ in range(27)]

    consumer.close()
    assert [m.seq for m in messages] == list(range(27))
    assert type(messages[0]).__name__ == "SeriesStart"
    assert [m.frame for m in messages[1:-1]] == list(range(25))
    np.testing.assert_array_equal(
        np.frombuffer(messages[9].data, "uint16").reshape(SHAPE), frame_pixels(8)
    )
    assert type(messages[-1]).__name__ == "SeriesEnd"


def test_absent_forward_consumer_never_stalls_writing(start_receiver, stream, tmp_path):
    receiver = start_receiver(forward="tcp://127.0.0.1:*", forward_buffer_bytes=10_000)
    stream.series("nofwd.h5", list(range(30)))

    status = finished(receiver)

    assert status["frames_written"] == 30
    assert status["forwarder"]["sent"] == 0
    assert status["forwarder"]["missed"] == 0, "nothing is held, so nothing missed, for nobody"


SERIES_KEYS = [
    "filename",
    "path",
    "frames_written",
    "frames_durable",
    "frames_discarded",
    "frames_rejected",
    "missing_frames",
    "messages_lost",
    "malformed_messages",
    "started",
    "finished",
    "missing_count",
]


def test_status_document_keeps_its_keys_and_values(start_receiver, stream, tmp_path):
    receiver = start_receiver(forward="tcp://127.0.0.1:*")
    stream.series("keys.h5", [0, 2])

    status = finished(receiver)

    assert list(status) == [
        "state",
        "error",
        "series_open",
        "series_count",
        "series",
        "last_series",
        "filename",
        "frames_received",
        "frames_written",
        "frames_missing",
        "rates",
        "forwarder",
        "unreadable_messages",
        "modules",
        "config",
    ]
    assert list(status["series"]) == [*SERIES_KEYS, "frames_received"]
    assert list(status["last_series"]) == [*SERIES_KEYS, "ok", "error"]
    assert list(status["rates"]) == [
        "received_frames_per_s",
        "received_mb_per_s",
        "written_frames_per_s",
        "written_mb_per_s",
    ]
    assert list(status["forwarder"]) == ["endpoint", "sent", "missed", "unconnected", "consumers"]
    assert status["config"] == {
        "connect": [stream.endpoint],
        "protocol": "stins",
        "workers": 2,
        "data_root": str(tmp_path.resolve()),
        "write": True,
    }
    path = str(tmp_path / "keys.h5")
    assert status["state"] == "error"
    assert "frames missing" in status["error"]
    assert status["last_series"]["error"] == status["error"]
    assert (status["filename"], status["series"]["path"], status["series"]["filename"]) == (
        path,
        path,
        "keys.h5",
    )
    assert (status["frames_received"], status["frames_written"], status["frames_missing"]) == (
        2,
        2,
        1,
    )
    assert status["series"]["missing_frames"] == status["last_series"]["missing_frames"] == [1]
    assert status["last_series"]["ok"] is False
    assert status["modules"] is None


@pytest.mark.parametrize(
    "filename",
    ["../outside.h5", "/etc/outside.h5", "sub/../../outside.h5"],
)
def test_file_outside_the_data_root_is_refused(start_receiver, stream, tmp_path, filename):
    receiver = start_receiver()
    stream.series(filename, [0, 1])

    status = finished(receiver)

    assert status["state"] == "error"
    assert "series refused, nothing written" in status["error"]
    assert "data root" in status["error"]
    assert not (tmp_path.parent / "outside.h5").exists()
    stream.series("next.h5", [0, 1])
    status = finished(receiver, 2)
    assert status["state"] == "idle"
    assert status["frames_written"] == 2


def test_existing_file_is_never_overwritten(start_receiver, stream, tmp_path):
    (tmp_path / "taken.h5").write_bytes(b"precious")
    receiver = start_receiver()
    stream.series("taken.h5", [0])

    status = finished(receiver)

    assert status["state"] == "error"
    assert "already exists" in status["error"]
    assert (tmp_path / "taken.h5").read_bytes() == b"precious"


def test_missing_frames_leave_empty_places_and_are_reported(start_receiver, stream, tmp_path):
    receiver = start_receiver()
    stream.series("holes.h5", [0, 1, 3, 4, 7])

    status = finished(receiver)

    assert status["state"] == "error"
    assert "3 frames missing" in status["error"]
    assert status["series"]["missing_frames"] == [2, 5, 6]
    with h5py.File(tmp_path / "holes.h5") as f:
        det = f["entry/instrument/detector"]
        assert det["data"].shape[0] == 8
        assert list(det["sequence_number"]) == [0, 1, -1, 3, 4, -1, -1, 7]
        assert list(det["missing_frames"]) == [2, 5, 6]
        np.testing.assert_array_equal(det["data"][7], frame_pixels(7))


def test_new_header_closes_a_series_whose_end_was_lost(start_receiver, stream, tmp_path):
    receiver = start_receiver(workers=2)
    stream.header("first.h5")
    for frame in range(5):
        stream.image(frame)
    stream.series("second.h5", [0, 1])

    status = finished(receiver, 2)

    assert status["state"] == "idle"
    assert "before series_end" in status["last_series"]["error"] or status["series_count"] == 2
    with h5py.File(tmp_path / "first.h5") as f:
        assert f[DATA].shape[0] == 5
    with h5py.File(tmp_path / "second.h5") as f:
        assert f[DATA].shape[0] == 2


def test_discarded_frames_take_no_place(start_receiver, stream, tmp_path):
    receiver = start_receiver()
    stream.header("discard.h5")
    for frame in range(10):
        if frame < 3 or frame >= 7:
            stream.image(frame, discard=True)
        else:
            stream.image(frame)
    stream.end()

    status = finished(receiver)

    assert status["state"] == "idle", status["error"]
    with h5py.File(tmp_path / "discard.h5") as f:
        assert f[DATA].shape == (4, *SHAPE)
        assert list(f["entry/instrument/detector/sequence_number"]) == [3, 4, 5, 6]
        np.testing.assert_array_equal(f[DATA][0], frame_pixels(3))


def send_raw(stream: Stream, parts: list[bytes]) -> None:
    stream.send(parts)


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (lambda n: [b"{not json"], "not valid JSON"),
        (
            lambda n: [json.dumps({"htype": "image", "msg_number": n}).encode(), b"x"],
            "'frame'",
        ),
        (
            lambda n: stins.encode_image(n, 1, b"\0" * 10, SHAPE, "uint16"),
            "needs 3840",
        ),
        (
            lambda n: stins.encode_image(n, 1, b"\0" * 3840, SHAPE, "uint16", "gzip"),
            "unknown compression 'gzip'",
        ),
    ],
    ids=["malformed-json", "missing-field", "wrong-blob-size", "unknown-compression"],
)
def test_bad_message_is_reported_and_the_next_series_is_served(
    start_receiver, stream, tmp_path, bad, expected
):
    receiver = start_receiver(workers=2)
    stream.header("bad.h5")
    stream.image(0)
    send_raw(stream, bad(stream.msg_number))
    stream.image(2)
    stream.end()

    status = finished(receiver)

    assert status["state"] == "error"
    assert expected in status["error"]
    with h5py.File(tmp_path / "bad.h5") as f:
        assert list(f["entry/instrument/detector/sequence_number"]) == [0, -1, 2]
    stream.series("good.h5", [0, 1, 2])
    status = finished(receiver, 2)
    assert status["state"] == "idle", status["error"]
    assert status["frames_written"] == 3


def test_live_view_only_series_writes_nothing(start_receiver, stream, tmp_path):
    receiver = start_receiver()
    stream.series("", [0, 1, 2])

    status = finished(receiver)

    assert status["state"] == "idle"
    assert status["frames_received"] == 3
    assert receiver.last_frame().frame == 2
    assert list(tmp_path.iterdir()) == []


def test_disk_nearly_full_closes_the_file_cleanly(start_receiver, stream, tmp_path):
    receiver = start_receiver(min_free_bytes=2**62)
    stream.series("full.h5", [0, 1])

    status = finished(receiver)

    assert status["state"] == "error"
    assert "disk nearly full" in status["error"]
    assert not (tmp_path / "full.h5").exists()


def test_a_stalled_writer_pushes_back_on_the_sender_and_loses_nothing(
    start_receiver, stream, tmp_path
):
    """While the writer cannot write, the receiver holds a bounded number of frames.

    h5py serialises every call on its global lock; holding it stalls the
    writer exactly as a slow disk would, while the workers keep receiving.
    """
    receiver = start_receiver(workers=2, rcvhwm=2, writer_queue=2, batch_bytes=4 * 2**20)
    big, total = (512, 512), 200

    def pixels(k: int) -> np.ndarray:
        return (np.arange(big[0] * big[1]) + k).astype("uint32").reshape(big)

    stream.header("stalled.h5")
    wait_until(lambda: receiver.status()["state"] == "running", 5, "the file to open")

    accepted = 0
    with h5py._objects.phil:
        for k in range(total):
            parts = stins.encode_image(stream.msg_number, k, pixels(k).tobytes(), big, "uint32")
            if not stream.socket.poll(500, zmq.POLLOUT):
                break
            stream.socket.send_multipart(parts)
            stream.msg_number += 1
            accepted += 1
        held = receiver.received_frames

    assert accepted < total, "the sender was never pushed back"
    frame_bytes = big[0] * big[1] * 4
    batch = receiver.config.batch_bytes // frame_bytes
    assert held <= (receiver.config.writer_queue + 2) * batch
    for k in range(accepted, total):
        stream.send(stins.encode_image(stream.msg_number, k, pixels(k).tobytes(), big, "uint32"))
    stream.end()
    status = finished(receiver)
    assert status["state"] == "idle", status["error"]
    with h5py.File(tmp_path / "stalled.h5") as f:
        data = f[DATA]
        assert data.shape == (total, *big)
        for k in (0, accepted - 1, accepted, total - 1):
            np.testing.assert_array_equal(data[k], pixels(k))


def test_a_frame_of_another_shape_is_refused_and_the_rest_is_kept(start_receiver, stream, tmp_path):
    receiver = start_receiver()
    stream.header("shapes.h5")
    stream.image(0)
    odd = np.zeros((8, 8), dtype="uint16")
    stream.send(stins.encode_image(stream.msg_number, 1, odd.tobytes(), odd.shape, "uint16"))
    stream.image(2)
    stream.end()

    status = finished(receiver)

    assert status["state"] == "error"
    assert "frame 1 has shape [8, 8]" in status["error"]
    assert status["last_series"]["frames_rejected"] == 1
    with h5py.File(tmp_path / "shapes.h5") as f:
        assert list(f["entry/instrument/detector/sequence_number"]) == [0, -1, 2]
        np.testing.assert_array_equal(f[DATA][2], frame_pixels(2))


def cbf_blob(pixels: np.ndarray, tmp_path: Path) -> bytes:
    """A Pilatus mini-CBF file of ``pixels``, written by fabio (the reference)."""
    path = tmp_path / "frame.cbf"
    fabio.cbfimage.CbfImage(data=pixels.astype(np.int32)).write(str(path))
    return path.read_bytes()


def send_cbf_series(stream: Stream, filename: str, frames: int, tmp_path: Path) -> None:
    stream.header(filename)
    for frame in range(frames):
        blob = cbf_blob(frame_pixels(frame, "int32"), tmp_path)
        stream.send(stins.encode_image(stream.msg_number, frame, blob, SHAPE, "int32", "cbf"))
    stream.end()


@pytest.mark.parametrize("workers", [1, 3])
def test_cbf_frames_are_decoded_rotated_and_stored_as_bslz4(
    start_receiver, stream, tmp_path, workers
):
    receiver = start_receiver(
        workers=workers, transforms=[{"kind": "cbf"}, {"kind": "rotate", "k": 1}]
    )
    send_cbf_series(stream, "pilatus.h5", 6, tmp_path)
    status = finished(receiver)
    assert status["state"] == "idle", status["error"]
    with h5py.File(tmp_path / "pilatus.h5") as f:
        data = f[DATA]
        assert data.shape == (6, SHAPE[1], SHAPE[0])
        assert data.dtype == np.int32
        assert data.id.get_create_plist().get_filter(0)[0] == bslz4.HDF5_FILTER_ID
        for frame in range(6):
            np.testing.assert_array_equal(data[frame], np.rot90(frame_pixels(frame, "int32")))


@pytest.mark.allow_error_log
def test_cbf_frames_without_the_transform_are_refused_with_the_fix(
    start_receiver, stream, tmp_path
):
    receiver = start_receiver()
    send_cbf_series(stream, "raw.h5", 2, tmp_path)
    status = finished(receiver)
    assert status["state"] == "error"
    assert """add {"kind": "cbf"} first to the receiver's transforms""" in status["error"]


@pytest.mark.allow_error_log
def test_a_corrupt_cbf_frame_is_reported_and_the_others_are_stored(
    start_receiver, stream, tmp_path
):
    receiver = start_receiver(transforms=[{"kind": "cbf"}])
    stream.header("damaged.h5")
    for frame in range(3):
        blob = cbf_blob(frame_pixels(frame, "int32"), tmp_path)
        if frame == 1:
            blob = blob[: len(blob) - 100]
        stream.send(stins.encode_image(stream.msg_number, frame, blob, SHAPE, "int32", "cbf"))
    stream.end()
    status = finished(receiver)
    assert "frame 1: cbf:" in status["error"]
    with h5py.File(tmp_path / "damaged.h5") as f:
        assert list(f["entry/instrument/detector/sequence_number"]) == [0, -1, 2]


@pytest.mark.allow_error_log
def test_a_truncated_bslz4_frame_is_refused_at_parsing_never_stored(
    start_receiver, stream, tmp_path
):
    receiver = start_receiver()
    chunk = bslz4.compress(frame_pixels(1))
    stream.header("cut.h5")
    stream.image(0, "bslz4")
    stream.send(
        stins.encode_image(stream.msg_number, 1, chunk[: len(chunk) // 2], SHAPE, "uint16", "bslz4")
    )
    stream.image(2, "bslz4")
    stream.end()
    status = finished(receiver)
    assert "malformed message (msg_number 2) skipped: image: bslz4 chunk" in status["error"]
    with h5py.File(tmp_path / "cut.h5") as f:
        assert list(f["entry/instrument/detector/sequence_number"]) == [0, -1, 2]
        np.testing.assert_array_equal(f[DATA][2], frame_pixels(2))

"""The receiver in-process on Dectris stream v1/v2 and SLS streams: files, order, reasons.

The real captures are played with the replay tool's own preparation (file
name substituted as a control system would set it); synthetic series come
from the generator, shuffled, through one and four workers, and every pixel
is compared with what was sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import bitshuffle
import h5py
import hdf5plugin  # noqa: F401  (registers the bslz4 filter for reading)
import numpy as np
import orjson
import pytest
import zmq

from protocols import bslz4, eiger_stream1, eiger_stream2, sls, stins
from protocols.model import SeriesEnd, SeriesStart
from receiver.liveview import decode
from receiver.receiver import Receiver
from sim.frames import synthetic_frame
from sim.generator import GeneratorSettings, StreamGenerator
from sim.replay import prepare
from tests.captures import SHAPE, STREAM1, STREAM2, V1_FRAMES, V2_FRAMES, capture
from tests.helpers import wait_until
from tests.receiver_support import InProcessReceivers
from tests.receiver_support import series_closed as finished

pytestmark = pytest.mark.timeout(60)

DETECTOR = "entry/instrument/detector"
SYNTHETIC = (12, 10)


@pytest.fixture
def start_receiver(receivers: InProcessReceivers) -> Callable[..., Receiver]:
    def start(endpoint: str, protocol: str, **overrides: object) -> Receiver:
        return receivers.start(connect=[endpoint], protocol=protocol, **overrides)

    return start


@pytest.fixture
def player() -> Iterator[StreamGenerator]:
    with StreamGenerator(GeneratorSettings(endpoint="tcp://127.0.0.1:*", timeout_s=10)) as p:
        yield p


def capture_pixels(blob: bytes) -> np.ndarray:
    """The reference decompression: bitshuffle itself, past the 12-byte chunk header."""
    return bitshuffle.decompress_lz4(
        np.frombuffer(blob, np.uint8, offset=12), SHAPE, np.dtype(np.uint32), 2048
    )


def assert_capture_file(path: Path, blobs: Sequence[bytes], meta: dict[str, Any]) -> None:
    with h5py.File(path) as f:
        det = f[DETECTOR]
        data = det["data"]
        assert data.shape == (len(blobs), *SHAPE)
        assert data.dtype == np.uint32
        assert data.chunks == (1, *SHAPE)
        assert data.id.get_create_plist().get_filter(0)[0] == 32008
        assert list(det["sequence_number"]) == list(range(len(blobs)))
        for k, blob in enumerate(blobs):
            np.testing.assert_array_equal(data[k], capture_pixels(blob))
            assert data.id.read_direct_chunk((k, 0, 0))[1] == blob  # stored as received
        for key, value in meta.items():
            stored = det[key][()]
            stored = stored.decode() if isinstance(stored, bytes) else stored
            assert stored == pytest.approx(value) if isinstance(value, float) else stored == value


@pytest.mark.parametrize("workers", [1, 4])
def test_the_real_v1_capture_replays_into_a_correct_file(start_receiver, player, tmp_path, workers):
    messages = prepare(capture(STREAM1), "dectris-v1", "v1/capture.h5", add_end=True)
    receiver = start_receiver(player.endpoint, "dectris-v1", workers=workers)

    player.send_raw(messages)
    status = finished(receiver)

    assert status["state"] == "idle", status["error"]
    assert status["frames_written"] == V1_FRAMES
    assert_capture_file(
        tmp_path / "v1/capture.h5",
        [m[2] for m in messages[1:-1]],
        {
            "count_time": 0.9999999,
            "description": "Dectris EIGER1 Si 1M",
            "detector_number": "E-02-0153",
            "x_pixels_in_detector": 1030,
            "y_pixels_in_detector": 1065,
            "nimages": 100_000,
            "sensor_material": "Si",
            "photon_energy": 8000.0,
        },
    )


def test_the_v1_capture_without_its_end_is_closed_by_the_next_series(
    start_receiver, player, tmp_path
):
    """The capture stops after its last frame; played again as series 15, that closes it."""
    receiver = start_receiver(player.endpoint, "dectris-v1", workers=4)

    player.send_raw(prepare(capture(STREAM1), "dectris-v1", "cut.h5"))
    player.send_raw(prepare(capture(STREAM1), "dectris-v1", "next.h5", 15, add_end=True))
    status = finished(receiver, 2)

    assert status["state"] == "idle", status["error"]
    assert "a new header arrived before series_end" in status["last_series"]["error"] or (
        status["series_count"] == 2
    )
    for name in ("cut.h5", "next.h5"):
        with h5py.File(tmp_path / name) as f:
            assert f[DETECTOR]["data"].shape == (V1_FRAMES, *SHAPE)
            assert list(f[DETECTOR]["sequence_number"]) == list(range(V1_FRAMES))


@pytest.mark.parametrize("workers", [1, 4])
def test_the_real_v2_capture_replays_into_a_correct_file(start_receiver, player, tmp_path, workers):
    messages = prepare(capture(STREAM2), "dectris-v2", "v2/capture.h5")
    receiver = start_receiver(player.endpoint, "dectris-v2", workers=workers)

    player.send_raw(messages)
    status = finished(receiver)

    assert status["state"] == "idle", status["error"]
    assert status["frames_written"] == V2_FRAMES
    blobs = [
        eiger_stream2.decode(m[0])["data"]["threshold_1"].array.payload.data for m in messages[1:-1]
    ]
    assert_capture_file(
        tmp_path / "v2/capture.h5",
        blobs,
        {
            "count_time": 0.9999999,
            "detector_description": "Dectris EIGER1 Si 1M",
            "detector_serial_number": "E-02-0154",
            "threshold_energy": 4000.0,
            "number_of_images": V2_FRAMES,
            "image_size_x": 1030,
        },
    )


SYNTHETIC_CASES = [
    pytest.param("dectris-v1", {"header_detail": "all"}, id="v1-all"),
    pytest.param("dectris-v1", {"header_detail": "basic"}, id="v1-basic"),
    pytest.param("dectris-v1", {"header_detail": "none"}, id="v1-none"),
    pytest.param("dectris-v2", {}, id="v2"),
    pytest.param("dectris-v2", {"thresholds": 2}, id="v2-2-thresholds"),
    pytest.param("sls", {"compression": "none", "dtype": "uint32"}, id="sls"),
]


def expected_frame(k: int, settings: GeneratorSettings) -> np.ndarray:
    planes = [synthetic_frame(k, SYNTHETIC, settings.dtype, c) for c in range(settings.thresholds)]
    return np.stack(planes) if settings.thresholds > 1 else planes[0]


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize(("protocol", "options"), SYNTHETIC_CASES)
def test_synthetic_series_land_frame_by_frame_in_order(
    start_receiver, tmp_path, protocol, options, workers
):
    frames = 30
    settings = GeneratorSettings(
        **{
            "endpoint": "tcp://127.0.0.1:*",
            "protocol": protocol,
            "frames": frames,
            "shape": SYNTHETIC,
            "dtype": "uint16",
            "compression": "bslz4",
            "out_of_order": True,
            "timeout_s": 10,
            **options,
        }
    )
    with StreamGenerator(settings) as generator:
        receiver = start_receiver(generator.endpoint, protocol, workers=workers)
        generator.send_series("first.h5")
        generator.send_series("second.h5")
        status = finished(receiver, 2)

    assert status["state"] == "idle", status["error"]
    assert receiver.received_frames == frames
    for name in ("first.h5", "second.h5"):
        with h5py.File(tmp_path / name) as f:
            data = f[DETECTOR]["data"]
            planes = (settings.thresholds,) if settings.thresholds > 1 else ()
            assert data.shape == (frames, *planes, *SYNTHETIC)
            assert data.dtype == np.dtype(settings.dtype)
            assert list(f[DETECTOR]["sequence_number"]) == list(range(frames))
            for k in range(frames):
                np.testing.assert_array_equal(data[k], expected_frame(k, settings))
    last = receiver.last_frame()
    np.testing.assert_array_equal(decode(last), expected_frame(last.frame, settings))


def test_two_thresholds_are_stored_one_chunk_per_plane(start_receiver, tmp_path):
    settings = GeneratorSettings(
        endpoint="tcp://127.0.0.1:*",
        protocol="dectris-v2",
        frames=3,
        shape=SYNTHETIC,
        compression="bslz4",
        thresholds=2,
        timeout_s=10,
    )
    with StreamGenerator(settings) as generator:
        receiver = start_receiver(generator.endpoint, "dectris-v2")
        generator.send_series("planes.h5")
        finished(receiver)

    with h5py.File(tmp_path / "planes.h5") as f:
        det = f[DETECTOR]
        assert det["data"].chunks == (1, 1, *SYNTHETIC)
        assert list(det["threshold_energy"][()]) == [4000.0, 8000.0]
        _, chunk = det["data"].id.read_direct_chunk((2, 1, 0, 0))
        np.testing.assert_array_equal(
            bslz4.decompress(chunk, SYNTHETIC, "uint16"), synthetic_frame(2, SYNTHETIC, "uint16", 1)
        )


def test_a_dectris_series_forwards_as_stins(start_receiver, tmp_path):
    settings = GeneratorSettings(
        endpoint="tcp://127.0.0.1:*",
        protocol="dectris-v2",
        frames=4,
        shape=SYNTHETIC,
        compression="bslz4",
        thresholds=2,
        timeout_s=10,
    )
    context = zmq.Context()
    try:
        with StreamGenerator(settings) as generator:
            receiver = start_receiver(
                generator.endpoint, "dectris-v2", forward="tcp://127.0.0.1:*", workers=2
            )
            with context.socket(zmq.PULL) as consumer:
                consumer.rcvtimeo = 5000
                consumer.linger = 0
                consumer.connect(receiver.forward_endpoint)
                # The forwarder sends only once it has seen a consumer connect.
                wait_until(lambda: receiver._forwarder.connected, 5, "the forwarder's consumer")
                generator.send_series("fwd.h5")
                messages = [consumer.recv_multipart() for _ in range(6)]
    finally:
        context.term()

    header, end = stins.parse(messages[0]), stins.parse(messages[-1])
    assert isinstance(header, SeriesStart)
    assert header.filename == "fwd.h5"
    assert isinstance(end, SeriesEnd)
    assert (header.seq, end.seq) == (0, 5)
    for k, parts in enumerate(messages[1:-1]):
        fields = orjson.loads(parts[0])
        assert (fields["htype"], fields["msg_number"], fields["frame"]) == ("image", k + 1, k)
        assert (fields["shape"], fields["chunks"]) == ([2, *SYNTHETIC], [1, *SYNTHETIC])
        assert len(parts) == 3  # one chunk per threshold, as multi-module STINS carries them
        for c, chunk in enumerate(parts[1:]):
            np.testing.assert_array_equal(
                bslz4.decompress(chunk, SYNTHETIC, "uint16"),
                synthetic_frame(k, SYNTHETIC, "uint16", c),
            )


def v1_frame(series: int, frame: int, **data_header: Any) -> list[bytes]:
    blob = bslz4.compress(synthetic_frame(frame, SYNTHETIC, "uint16"))
    parts = eiger_stream1.encode_image(series, frame, blob, SYNTHETIC, "uint16")
    fields = {**orjson.loads(parts[1]), **data_header}
    return [parts[0], orjson.dumps(fields), bytes(parts[2]), parts[3]]


def v2_frame(series: int, frame: int, dtype: str = "uint16") -> list[bytes]:
    blob = bslz4.compress(synthetic_frame(frame, SYNTHETIC, "uint16"))
    return eiger_stream2.encode_image(series, "", frame, {"t1": blob}, SYNTHETIC, dtype)


V1_BAD = (
    lambda: [
        eiger_stream1.encode_header(3, "basic", {"nimages": 3}, {"filename": "bad.h5"}),
        v1_frame(3, 0),
        v1_frame(3, 1, encoding="lz4<"),
        v1_frame(3, 2),
        eiger_stream1.encode_series_end(3),
    ],
    "malformed message (frame 1 of series 3) skipped: dimage_d-1.0 frame 1: lz4 frames are "
    "not supported; set the detector's compression to bslz4",
)
V2_BAD = (
    lambda: [
        eiger_stream2.encode_start(
            3, "", number_of_images=3, shape=SYNTHETIC, user_data='{"filename": "bad.h5"}'
        ),
        v2_frame(3, 0),
        v2_frame(3, 1, dtype="uint32"),
        v2_frame(3, 2),
        eiger_stream2.encode_end(3, ""),
    ],
    "malformed message (frame 1 of series 3) skipped: image 1 channel 't1': bslz4 chunk "
    "announces 240 bytes but [12, 10] of uint32 needs 480",
)


@pytest.mark.parametrize(
    ("protocol", "case"), [("dectris-v1", V1_BAD), ("dectris-v2", V2_BAD)], ids=["v1", "v2"]
)
def test_a_malformed_dectris_frame_is_reported_with_its_reason(
    start_receiver, player, tmp_path, protocol, case
):
    messages, reason = case
    receiver = start_receiver(player.endpoint, protocol, workers=2)

    player.send_raw(messages())
    status = finished(receiver)

    assert status["state"] == "error"
    assert reason in status["error"]
    with h5py.File(tmp_path / "bad.h5") as f:
        assert list(f[DETECTOR]["sequence_number"]) == [0, -1, 2]


def test_an_sls_pub_stream_is_taken_by_one_subscriber(start_receiver, tmp_path):
    """The SLS receiver publishes (PUB): a SUB worker takes it; XPUB shows the subscription."""
    context = zmq.Context()
    publisher = context.socket(zmq.XPUB)
    publisher.rcvtimeo = 5000
    publisher.bind("tcp://127.0.0.1:*")
    try:
        receiver = start_receiver(
            publisher.getsockopt_string(zmq.LAST_ENDPOINT), "sls", socket="sub", workers=1
        )
        assert publisher.recv() == b"\x01"  # the receiver has subscribed to everything
        for k in range(5):
            pixels = synthetic_frame(k, SYNTHETIC, "uint16").tobytes()
            publisher.send_multipart(
                sls.encode_image(
                    k, pixels, SYNTHETIC, "uint16", frames=5, add_json_header={"filename": "pub.h5"}
                )
            )
        publisher.send_multipart(sls.encode_end())
        status = finished(receiver)
    finally:
        publisher.close(linger=0)
        context.term()

    assert status["state"] == "idle", status["error"]
    with h5py.File(tmp_path / "pub.h5") as f:
        data = f[DETECTOR]["data"]
        assert data.shape == (5, *SYNTHETIC)
        for k in range(5):
            np.testing.assert_array_equal(data[k], synthetic_frame(k, SYNTHETIC, "uint16"))


def test_a_stream_of_another_protocol_is_reported_with_a_hint(start_receiver, player):
    receiver = start_receiver(player.endpoint, "dectris-v1")

    player.send_raw([stins.encode_header(0, "stins.h5"), stins.encode_series_end(1)])

    status = wait_until(
        lambda: (s := receiver.status())["unreadable_messages"] >= 2 and s, 10, "both messages"
    )
    assert status["state"] == "error"
    assert "unknown htype 'header'" in status["error"]
    assert "is the stream Dectris stream v1" in status["error"]


@pytest.mark.parametrize("workers", [1, 4])
def test_the_rotation_in_the_header_appendix_turns_that_series_frames(
    start_receiver, player, tmp_path, workers
):
    receiver = start_receiver(player.endpoint, "dectris-v1", workers=workers)
    frames = [synthetic_frame(k, SYNTHETIC, "uint32") for k in range(5)]
    messages = [
        eiger_stream1.encode_header(21, "none", appendix={"filename": "turned.h5", "rotate": 1}),
        *(
            eiger_stream1.encode_image(21, k, bslz4.compress(pixels), SYNTHETIC, "uint32")
            for k, pixels in enumerate(frames)
        ),
        eiger_stream1.encode_series_end(21),
    ]
    player.send_raw(messages)
    assert finished(receiver)["state"] == "idle"
    with h5py.File(tmp_path / "turned.h5") as f:
        data = f[f"{DETECTOR}/data"]
        assert data.shape == (5, SYNTHETIC[1], SYNTHETIC[0])
        for k, pixels in enumerate(frames):
            np.testing.assert_array_equal(data[k], np.rot90(pixels, 1))

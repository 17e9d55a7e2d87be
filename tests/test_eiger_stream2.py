"""Dectris stream v2 (CBOR): the real capture parses, our encoder round-trips, faults are named."""

from __future__ import annotations

import json
from typing import Any

import bitshuffle
import cbor2
import numpy as np
import pytest

from protocols import bslz4, eiger_stream2
from protocols.errors import MalformedMessage
from protocols.model import Image, SeriesEnd, SeriesStart, StackedImage
from sim.frames import synthetic_frame
from tests.captures import SHAPE, STREAM2, V2_FRAMES, V2_SERIES, capture

UID = "01TESTSERIES"


def test_the_capture_start_gives_series_count_and_configuration() -> None:
    message = eiger_stream2.parse(capture(STREAM2)[0])

    assert isinstance(message, SeriesStart)
    assert (message.seq, message.series, message.frames) == (0, V2_SERIES, V2_FRAMES)
    assert message.filename == ""  # its user_data names no file
    assert message.meta["count_time"] == pytest.approx(0.9999999)
    assert message.meta["threshold_energy"] == 4000.0
    assert message.meta["image_size_x"] == SHAPE[1]
    assert message.meta["detector_description"] == "Dectris EIGER1 Si 1M"
    assert json.loads(message.meta["user_data"])["file_prefix"] == "lyso1/dir/file"
    assert message.meta["arm_date"].startswith("2024-03-07T14:43:31")
    for table in ("flatfield", "pixel_mask", "countrate_correction_lookup_table"):
        assert table not in message.meta
    assert message.fields["exposure_time"] == pytest.approx(0.9999999)
    assert message.fields["channels"] == ["threshold_1"]


def test_the_capture_images_count_from_0_and_decompress_with_bitshuffle() -> None:
    messages = capture(STREAM2)[1:-1]
    images = [eiger_stream2.parse(m) for m in messages]

    assert [i.frame for i in images] == list(range(V2_FRAMES))
    for parsed, parts in zip(images, messages, strict=True):
        assert type(parsed) is Image
        assert (parsed.shape, parsed.dtype, parsed.compression) == (SHAPE, np.uint32, "bslz4")
        assert (parsed.seq, parsed.series) == (parsed.frame + 1, V2_SERIES)
        raw = cbor2.loads(parts[0])["data"]["threshold_1"].value[1].value.value[2]
        assert parsed.data == raw
        reference = bitshuffle.decompress_lz4(
            np.frombuffer(raw, np.uint8, offset=12), SHAPE, np.dtype(np.uint32), 2048
        )
        np.testing.assert_array_equal(
            bslz4.decompress(parsed.data, parsed.shape, parsed.dtype), reference
        )
        assert parsed.fields["real_time"][1] == 50_000_000


def test_the_capture_end_names_its_series() -> None:
    message = eiger_stream2.parse(capture(STREAM2)[-1])

    assert isinstance(message, SeriesEnd)
    assert (message.seq, message.series) == (-1, V2_SERIES)


def test_start_round_trips_with_filename_rotation_and_thresholds() -> None:
    parts = eiger_stream2.encode_start(
        3,
        UID,
        number_of_images=12,
        shape=(6, 10),
        channels=("threshold_1", "threshold_2"),
        user_data=json.dumps({"filename": "a/b.h5", "rotate": 2}),
        config={"count_time": 0.1, "threshold_energy": {"threshold_2": 9e3, "threshold_1": 4e3}},
    )

    message = eiger_stream2.parse(parts)

    assert parts[0].startswith(eiger_stream2.SELF_DESCRIBE)
    assert (message.series, message.frames, message.filename) == ((3, UID), 12, "a/b.h5")
    assert message.fields["rotate"] == 2
    assert message.meta["threshold_energy"] == [4e3, 9e3]  # in channel order
    assert message.meta["channels"] == ["threshold_1", "threshold_2"]


def test_user_data_as_a_map_names_the_file_too() -> None:
    parts = eiger_stream2.encode_start(
        3, UID, number_of_images=1, shape=(6, 10), user_data={"filename": "m.h5"}
    )
    assert eiger_stream2.parse(parts).filename == "m.h5"


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "int32", "float32"])
@pytest.mark.parametrize("compression", ["bslz4", "none"])
def test_single_channel_frames_round_trip(dtype: str, compression: str) -> None:
    pixels = synthetic_frame(2, (6, 10), dtype)
    blob = bslz4.compress(pixels) if compression == "bslz4" else pixels.tobytes()

    message = eiger_stream2.parse(
        eiger_stream2.encode_image(3, UID, 2, {"threshold_1": blob}, (6, 10), dtype, compression)
    )

    assert type(message) is Image
    assert (message.frame, message.shape, message.dtype) == (2, (6, 10), np.dtype(dtype))
    assert (message.compression, bytes(message.data)) == (compression, bytes(blob))


def test_several_thresholds_become_the_first_axis_one_chunk_each() -> None:
    planes = [synthetic_frame(2, (6, 10), "uint16", c) for c in range(3)]
    channels = {f"threshold_{c + 1}": bslz4.compress(p) for c, p in enumerate(planes)}

    message = eiger_stream2.parse(
        eiger_stream2.encode_image(3, UID, 2, channels, (6, 10), "uint16", "bslz4")
    )

    assert isinstance(message, StackedImage)
    assert message.shape == (3, 6, 10)
    assert message.fields["channels"] == list(channels)
    assert len(message.data) == sum(message.chunk_sizes)
    for chunk, plane in zip(message.chunks(), planes, strict=True):
        np.testing.assert_array_equal(bslz4.decompress(chunk, (6, 10), "uint16"), plane)


def message(fields: dict[str, Any]) -> list[bytes]:
    return [eiger_stream2.SELF_DESCRIBE + cbor2.dumps(fields)]


def image_with(data: Any) -> list[bytes]:
    return message(
        {"type": "image", "series_id": 3, "series_unique_id": UID, "image_id": 4, "data": data}
    )


CHUNK = bslz4.compress(synthetic_frame(0, (6, 10), "uint32"))
GOOD = eiger_stream2.multi_dim_array(CHUNK, (6, 10), "uint32", "bslz4")


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ([b"\xd9\xd9\xf7\xff"], "not valid CBOR"),
        (message({"type": "image", "image_id": 1}), "'series_id' must be an integer"),
        (message({"type": "stop", "series_id": 1}), "unknown message type 'stop'"),
        ([*message({"type": "end", "series_id": 1}), b""], "one part, got 2"),
        (message({"type": "image", "series_id": 1, "image_id": -2}), "'image_id' must be"),
    ],
)
def test_unplaceable_messages_are_refused_without_a_place(parts: list[bytes], reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason) as info:
        eiger_stream2.parse(parts)
    assert info.value.seq is None


def lz4_array() -> cbor2.CBORTag:
    return cbor2.CBORTag(40, [[6, 10], cbor2.CBORTag(70, cbor2.CBORTag(56500, ["lz4", 0, b"x"]))])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({}, "'data' must map channel names to arrays"),
        ({"threshold_1": b"raw"}, "expected a tag 40 multi-dimensional array"),
        ({"threshold_1": cbor2.CBORTag(1040, [[6, 10], b""])}, "expected a tag 40"),
        ({"threshold_1": cbor2.CBORTag(40, [[6, 10], b"x"])}, "expected a typed array"),
        ({"threshold_1": cbor2.CBORTag(40, [[6, 0], cbor2.CBORTag(70, b"")])}, "dimensions"),
        ({"threshold_1": lz4_array()}, "lz4 frames are not supported; set the detector's"),
        (
            {"threshold_1": eiger_stream2.multi_dim_array(b"\0" * 7, (6, 10), "uint32")},
            "7 bytes but \\[6, 10\\] of uint32 needs 240",
        ),
        (
            {"threshold_1": eiger_stream2.multi_dim_array(CHUNK, (6, 11), "uint32", "bslz4")},
            "bslz4 chunk announces 240 bytes",
        ),
        (
            {
                "threshold_1": cbor2.CBORTag(
                    40, [[6, 20], cbor2.CBORTag(69, cbor2.CBORTag(56500, ["bslz4", 4, CHUNK]))]
                )
            },
            "element size 4 does not fit uint16",
        ),
        (
            {
                "threshold_1": GOOD,
                "threshold_2": eiger_stream2.multi_dim_array(b"\0" * 240, (6, 10), "uint32"),
            },
            "channel 'threshold_2' is \\[6, 10\\] uint32 none, unlike the first",
        ),
    ],
)
def test_malformed_images_name_the_fault_and_keep_their_place(data: Any, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason) as info:
        eiger_stream2.parse(image_with(data))
    assert (info.value.seq, info.value.series) == (5, (3, UID))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"number_of_images": -1}, "field 'number_of_images'"),
        ({"channels": "threshold_1"}, "field 'channels'"),
        ({"user_data": '{"filename": 7}'}, "user_data: field 'filename'"),
    ],
)
def test_malformed_starts_name_the_fault(change: dict[str, Any], reason: str) -> None:
    fields = {"type": "start", "series_id": 3, "series_unique_id": UID, **change}
    with pytest.raises(MalformedMessage, match=reason) as info:
        eiger_stream2.parse(message(fields))
    assert (info.value.seq, info.value.series) == (0, (3, UID))

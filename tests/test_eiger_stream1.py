"""Dectris stream v1: the real capture parses, our encoder round-trips, faults are named."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import bitshuffle
import numpy as np
import orjson
import pytest

from protocols import bslz4, eiger_stream1
from protocols.errors import MalformedMessage
from protocols.model import Image, SeriesEnd, SeriesStart
from sim.frames import synthetic_frame
from tests.captures import SHAPE, STREAM1, V1_FRAMES, V1_SERIES, capture

CONFIG = {"count_time": 0.5, "nimages": 3, "ntrigger": 2, "trigger_mode": "ints"}
TABLES = {
    "flatfield": np.ones((4, 6), np.float32),
    "pixel_mask": np.zeros((4, 6), np.uint32),
    "countrate_table": np.zeros((2, 10), np.float32),
}


def test_the_capture_header_gives_series_count_configuration_and_appendix() -> None:
    message = eiger_stream1.parse(capture(STREAM1)[0])

    assert isinstance(message, SeriesStart)
    assert (message.seq, message.series, message.filename) == (0, V1_SERIES, "")
    assert message.frames == 100_000  # nimages x ntrigger, far more than were recorded
    assert message.meta["count_time"] == pytest.approx(0.9999999)
    assert message.meta["x_pixels_in_detector"] == SHAPE[1]
    assert message.meta["description"] == "Dectris EIGER1 Si 1M"
    assert json.loads(message.meta["header_appendix"]) == {"filename": "", "rotate": 0}
    assert message.fields["exposure_time"] == pytest.approx(0.9999999)
    assert message.fields["rotate"] == 0
    assert not any(name in message.meta for name in ("flatfield", "pixel_mask"))


def test_the_capture_frames_count_from_0_and_decompress_with_bitshuffle() -> None:
    messages = capture(STREAM1)[1:]
    images = [eiger_stream1.parse(m) for m in messages]

    assert [i.frame for i in images] == list(range(V1_FRAMES))
    assert [i.seq for i in images] == list(range(1, V1_FRAMES + 1))
    for parsed, parts in zip(images, messages, strict=True):
        assert isinstance(parsed, Image)
        assert (parsed.shape, parsed.dtype, parsed.compression) == (SHAPE, np.uint32, "bslz4")
        assert parsed.series == V1_SERIES
        assert bytes(parsed.data) == parts[2]
        assert orjson.loads(parts[0])["hash"] == hashlib.md5(parts[1]).hexdigest()
        reference = bitshuffle.decompress_lz4(
            np.frombuffer(parts[2], np.uint8, offset=12), SHAPE, np.dtype(np.uint32), 2048
        )
        np.testing.assert_array_equal(
            bslz4.decompress(parsed.data, parsed.shape, parsed.dtype), reference
        )
        assert parsed.fields["real_time"] > 0


@pytest.mark.parametrize("detail", ["all", "basic", "none"])
def test_every_header_detail_round_trips(detail: str) -> None:
    parts = eiger_stream1.encode_header(
        7,
        detail,
        config=CONFIG,
        appendix={"filename": "scan/run.h5", "rotate": 1},
        tables=TABLES,
    )

    message = eiger_stream1.parse(parts)

    assert len(parts) == {"all": 9, "basic": 3, "none": 2}[detail]
    assert (message.series, message.filename, message.fields["rotate"]) == (7, "scan/run.h5", 1)
    if detail == "none":
        assert message.frames is None
        assert set(message.meta) == {"header_appendix"}
    else:
        assert message.frames == 6
        assert message.meta["count_time"] == 0.5
        assert message.fields["exposure_time"] == 0.5


def test_a_header_without_appendix_or_with_plain_text_names_no_file() -> None:
    assert eiger_stream1.parse(eiger_stream1.encode_header(1, "basic", CONFIG)).filename == ""
    message = eiger_stream1.parse(eiger_stream1.encode_header(1, "basic", CONFIG, "hello"))
    assert message.filename == ""
    assert message.meta["header_appendix"] == "hello"


@pytest.mark.parametrize(("dtype", "compression"), [("uint32", "bslz4"), ("uint16", "none")])
def test_frames_and_end_round_trip(dtype: str, compression: str) -> None:
    pixels = synthetic_frame(4, (6, 10), dtype)
    blob = bslz4.compress(pixels) if compression == "bslz4" else pixels.tobytes()
    parts = eiger_stream1.encode_image(3, 4, blob, (6, 10), dtype, compression, (10, 20, 5))

    message = eiger_stream1.parse(parts)

    assert (message.seq, message.frame, message.series) == (5, 4, 3)
    assert (message.shape, message.dtype, message.compression) == ((6, 10), dtype, compression)
    assert message.fields["start_time"] == 10
    assert orjson.loads(parts[1])["shape"] == [10, 6]
    end = eiger_stream1.parse(eiger_stream1.encode_series_end(3))
    assert isinstance(end, SeriesEnd)
    assert (end.seq, end.series) == (-1, 3)


def image_parts(**data_header: Any) -> list[bytes]:
    blob = bslz4.compress(synthetic_frame(0, (6, 10), "uint32"))
    parts = eiger_stream1.encode_image(3, 2, blob, (6, 10), "uint32")
    fields = {**orjson.loads(parts[1]), **data_header}
    return [parts[0], orjson.dumps(fields), bytes(parts[2]), parts[3]]


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ([b"{oops"], "part 0 is not valid JSON"),
        ([b'{"htype": "dimage-1.0", "frame": 1}'], "'series' must be an integer"),
        ([b'{"htype": "dwhat-1.0", "series": 1}'], "unknown htype 'dwhat-1.0'"),
        ([b'{"htype": "dimage-1.0", "series": 1, "frame": -1}'], "'frame' must be an integer"),
    ],
)
def test_unplaceable_messages_are_refused_without_a_place(parts: list[bytes], reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason) as info:
        eiger_stream1.parse(parts)
    assert info.value.seq is None


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        (image_parts()[:2], "expected the data header and data parts"),
        (image_parts(shape=[10]), "'shape' must be \\[width, height\\]"),
        (image_parts(type="complex64"), "unsupported pixel type"),
        (image_parts(encoding="lz4<"), "lz4 frames are not supported; set the detector's"),
        (image_parts(encoding="bs16-lz4<"), "does not fit type uint32"),
        (image_parts(encoding="zstd"), "unknown encoding 'zstd'"),
        (image_parts(size=5), "'size' announces 5 bytes"),
        (image_parts(shape=[10, 7]), "bslz4 chunk announces 240 bytes"),
    ],
)
def test_malformed_frames_name_the_fault_and_keep_their_place(
    parts: list[bytes], reason: str
) -> None:
    with pytest.raises(MalformedMessage, match=reason) as info:
        eiger_stream1.parse(parts)
    assert (info.value.seq, info.value.series) == (3, 3)


def header_parts(detail: str = "basic", **change: Any) -> list[bytes]:
    parts = eiger_stream1.encode_header(5, detail, CONFIG, {"filename": "x.h5"}, TABLES)
    if change:
        parts[1] = orjson.dumps({**CONFIG, **change})
    return parts


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ([b'{"htype": "dheader-1.0", "series": 5, "header_detail": "most"}'], "header_detail"),
        (
            header_parts("all")[:5],
            "header_detail 'all' has 8 parts \\(9 with the header_appendix\\)",
        ),
        ([header_parts()[0], b"[1]", header_parts()[2]], "must be a JSON object"),
        (header_parts(nimages="many"), "field 'nimages'"),
        (
            [*header_parts()[:2], b'{"filename": 3}'],
            "header_appendix: field 'filename'",
        ),
        (
            [*header_parts("all")[:3], b"\0" * 7, *header_parts("all")[4:]],
            "flatfield: blob has 7 bytes",
        ),
    ],
)
def test_malformed_headers_name_the_fault(parts: list[bytes], reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason) as info:
        eiger_stream1.parse(parts)
    assert (info.value.seq, info.value.series) == (0, 5)

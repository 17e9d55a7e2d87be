"""The SLS detector stream (one module): frames, the end marker, the header made from a frame."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from protocols import sls
from protocols.errors import MalformedMessage
from protocols.model import Image, SeriesEnd
from sim.frames import synthetic_frame

SHAPE = (6, 10)


def frame_parts(index: int = 2, frames: int = 5, **change: Any) -> list[bytes]:
    pixels = synthetic_frame(index, SHAPE, "uint16")
    parts = sls.encode_image(
        index, pixels.tobytes(), SHAPE, "uint16", frames=frames, first_frame_number=101,
        file_index=7, fname="/data/run", add_json_header={"filename": "x/acq.h5", "user": "me"},
    )  # fmt: skip
    if change:
        parts[0] = orjson.dumps({**orjson.loads(parts[0]), **change})
    return [parts[0], bytes(parts[1])]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32"])
def test_a_frame_round_trips_with_its_acquisition_as_series(dtype: str) -> None:
    pixels = synthetic_frame(3, SHAPE, dtype)
    parts = sls.encode_image(3, pixels.tobytes(), SHAPE, dtype, frames=9, first_frame_number=40)

    message = sls.parse(parts)

    assert isinstance(message, Image)
    assert orjson.loads(parts[0])["shape"] == [10, 6]  # x fastest
    assert (message.seq, message.frame, message.series) == (4, 3, (0, 40))
    assert (message.shape, message.dtype, message.compression) == (SHAPE, dtype, "none")
    np.testing.assert_array_equal(np.frombuffer(message.data, dtype).reshape(SHAPE), pixels)


def test_the_end_marker_has_no_data_part_and_names_no_series() -> None:
    parts = sls.encode_end()
    message = sls.parse(parts)

    assert len(parts) == 1
    assert isinstance(message, SeriesEnd)
    assert (message.seq, message.series) == (-1, None)


def test_the_header_comes_from_a_frame_with_the_control_systems_file_name() -> None:
    header = sls.opener(sls.parse(frame_parts()))

    assert (header.seq, header.series, header.filename) == (0, (7, 101), "x/acq.h5")
    assert header.meta["bit_depth_image"] == 16
    assert header.meta["sls_additional_json_header"] == {"user": "me"}
    assert header.meta["sls_file_name"] == "/data/run"
    assert header.frames is None


def test_without_a_file_name_in_the_json_header_fname_is_used() -> None:
    parts = frame_parts()
    fields = orjson.loads(parts[0])
    del fields["addJsonHeader"]
    header = sls.opener(sls.parse([orjson.dumps(fields), parts[1]]))
    assert header.filename == "/data/run"


def test_the_last_frame_of_a_complete_acquisition_is_known() -> None:
    assert [sls.is_last_frame(sls.parse(frame_parts(i, 3))) for i in range(3)] == [
        False,
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ([b"{nope"], "part 0 is not valid JSON"),
        ([b'{"data": 2}'], "field 'data' must be 1"),
        (frame_parts(frameIndex="3"), "'frameIndex', 'frameNumber' and 'fileIndex'"),
        (frame_parts(frameNumber=1), "frameNumber >= frameIndex"),
    ],
)
def test_unplaceable_messages_are_refused_without_a_place(parts: list[bytes], reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason) as info:
        sls.parse(parts)
    assert info.value.seq is None


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        (frame_parts(bitmode=4), "bitmode 4 is not supported"),
        (frame_parts(shape=[10]), "'shape' must be \\[x, y\\]"),
        (frame_parts()[:1], "the data part is missing"),
        (frame_parts(size=3), "'size' announces 3 bytes"),
        (frame_parts(shape=[10, 7], size=120), "needs 140"),
    ],
)
def test_malformed_frames_name_the_fault_and_keep_their_place(
    parts: list[bytes], reason: str
) -> None:
    with pytest.raises(MalformedMessage, match=reason) as info:
        sls.parse(parts)
    assert (info.value.seq, info.value.series) == (3, (7, 101))

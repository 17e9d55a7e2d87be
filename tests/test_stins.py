"""STINS codec and bslz4 chunks: what a sender encodes is what the receiver parses.

The bitshuffle wheel and h5py + hdf5plugin are the reference for the bslz4
chunk layout (HDF5 filter 32008): a chunk that they cannot read would make
every file the receiver writes unreadable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bitshuffle
import h5py
import hdf5plugin
import numpy as np
import pytest

from protocols import bslz4, stins
from protocols.errors import MalformedMessage
from protocols.model import Image, SeriesEnd, SeriesStart

DTYPES = ["uint8", "uint16", "uint32", "int32", "float32"]
# 105 elements: not a multiple of 8 (bitshuffle's leftover path); 64x300 uint32
# spans several bitshuffle blocks.
SHAPES = [(17,), (4, 6), (3, 5, 7), (64, 300)]


def sample(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """Detector-like pixels: mostly small counts, a few large ones, some negative for signed."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    values = rng.poisson(3.0, size=shape).astype(np.int64)
    values.flat[:: max(1, values.size // 7)] = 200
    if dt.kind == "f":
        return (values * 0.5).astype(dt)
    if dt.kind == "i":
        values.flat[1::5] *= -1
    return values.astype(dt)


def as_received(parts: list) -> list:
    """Parts as the receiver's workers hand them over: bytes, then memoryviews."""
    return [bytes(parts[0]), *(memoryview(bytes(p)) for p in parts[1:])]


def json_part(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def image_fields(**overrides: Any) -> dict[str, Any]:
    fields = {
        "htype": "image",
        "msg_number": 7,
        "frame": 6,
        "shape": [2, 3],
        "type": "uint16",
        "compression": "none",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not ...}


GOOD_BLOB = np.arange(6, dtype=np.uint16).tobytes()


def parse_error(parts: list) -> MalformedMessage:
    with pytest.raises(MalformedMessage) as info:
        stins.parse(parts)
    return info.value


# --- round trips ---------------------------------------------------------------------------


def test_header_without_metadata_round_trips_with_extra_fields() -> None:
    parts = stins.encode_header(3, "scan_001.h5", user="alice", exposure_time=0.01)

    message = stins.parse(as_received(parts))

    assert len(parts) == 1
    assert isinstance(message, SeriesStart)
    assert message.seq == 3
    assert message.filename == "scan_001.h5"
    assert message.meta == {}
    assert message.fields["user"] == "alice"
    assert message.fields["exposure_time"] == 0.01


def test_header_with_metadata_part_round_trips() -> None:
    meta = {
        "save_raw": False,
        "detector": {"model": "EIGER2 X 4M", "threshold_energy": [6000.0, 12000.0]},
        "count_time": 0.001,
        "note": None,
    }
    parts = stins.encode_header(0, "", meta, trigger_mode="exts")

    message = stins.parse(as_received(parts))

    assert len(parts) == 2
    assert isinstance(message, SeriesStart)
    assert message.seq == 0
    assert message.filename == ""
    assert message.meta == meta
    assert message.fields["trigger_mode"] == "exts"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES)
def test_uncompressed_image_round_trips(dtype: str, shape: tuple[int, ...]) -> None:
    array = sample(shape, dtype)
    parts = stins.encode_image(12, 11, array.tobytes(), array.shape, dtype)

    message = stins.parse(as_received(parts))

    assert isinstance(message, Image)
    assert (message.seq, message.frame) == (12, 11)
    assert message.shape == shape
    assert message.dtype == np.dtype(dtype)
    assert message.compression == "none"
    assert message.discard is False
    np.testing.assert_array_equal(
        np.frombuffer(message.data, dtype=message.dtype).reshape(message.shape), array
    )


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES)
def test_bslz4_image_round_trips(dtype: str, shape: tuple[int, ...]) -> None:
    array = sample(shape, dtype, seed=1)
    chunk = bslz4.compress(array)
    parts = stins.encode_image(5, 4, chunk, array.shape, np.dtype(dtype), "bslz4")

    message = stins.parse(as_received(parts))

    assert isinstance(message, Image)
    assert message.compression == "bslz4"
    assert message.shape == shape
    assert message.dtype == np.dtype(dtype)
    assert bytes(message.data) == chunk, "the chunk must pass through untouched"
    np.testing.assert_array_equal(
        bslz4.decompress(message.data, message.shape, message.dtype), array
    )


def test_image_discard_flag_and_extra_fields_are_kept() -> None:
    array = sample((4, 4), "uint16")
    parts = stins.encode_image(
        9,
        8,
        array.tobytes(),
        array.shape,
        "uint16",
        discard=True,
        exposure_time=0.5,
        chunks=[1, 4, 4],
    )

    message = stins.parse(as_received(parts))

    assert isinstance(message, Image)
    assert message.discard is True
    assert message.fields["exposure_time"] == 0.5
    assert message.fields["chunks"] == [1, 4, 4]


def test_series_end_round_trips_with_extra_fields() -> None:
    message = stins.parse(as_received(stins.encode_series_end(42, reason="done")))

    assert isinstance(message, SeriesEnd)
    assert message.seq == 42
    assert message.fields["reason"] == "done"


def _without_number(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k != "msg_number"}


def test_reencoding_a_header_changes_only_the_number() -> None:
    original = stins.parse(
        as_received(stins.encode_header(3, "a/b.h5", {"x": {"y": [1, 2]}}, user="bob"))
    )

    again = stins.parse(as_received(stins.encode(original, 100)))

    assert isinstance(again, SeriesStart)
    assert again.seq == 100
    assert again.fields["msg_number"] == 100
    assert again.filename == original.filename
    assert again.meta == original.meta
    assert _without_number(again.fields) == _without_number(original.fields)


@pytest.mark.parametrize("compression", ["none", "bslz4"])
def test_reencoding_an_image_changes_only_the_number(compression: str) -> None:
    array = sample((3, 5, 7), "int32")
    blob = bslz4.compress(array) if compression == "bslz4" else array.tobytes()
    original = stins.parse(
        as_received(
            stins.encode_image(
                4, 3, blob, array.shape, "int32", compression, discard=True, exposure_time=0.1
            )
        )
    )

    again = stins.parse(as_received(stins.encode(original, 0)))

    assert isinstance(again, Image)
    assert again.seq == 0
    assert again.fields["msg_number"] == 0
    assert (again.frame, again.shape, again.dtype, again.compression, again.discard) == (
        3,
        (3, 5, 7),
        np.dtype("int32"),
        compression,
        True,
    )
    assert bytes(again.data) == blob
    assert _without_number(again.fields) == _without_number(original.fields)


def test_reencoding_a_series_end_changes_only_the_number() -> None:
    original = stins.parse(as_received(stins.encode_series_end(9, reason="abort")))

    again = stins.parse(as_received(stins.encode(original, 1)))

    assert isinstance(again, SeriesEnd)
    assert again.seq == 1
    assert _without_number(again.fields) == _without_number(original.fields)


def test_reencoding_keeps_the_discard_flag_of_an_image_built_directly() -> None:
    image = Image(
        seq=1,
        frame=0,
        shape=(2, 3),
        dtype=np.dtype("uint16"),
        compression="none",
        data=GOOD_BLOB,
        discard=True,
    )

    again = stins.parse(as_received(stins.encode(image, 5)))

    assert isinstance(again, Image)
    assert again.discard is True


# --- bslz4 against the reference implementations -------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES)
def test_bslz4_chunk_is_readable_by_bitshuffle(dtype: str, shape: tuple[int, ...]) -> None:
    array = sample(shape, dtype, seed=2)

    chunk = bslz4.compress(array)

    nbytes = int.from_bytes(chunk[:8], "big")
    block_bytes = int.from_bytes(chunk[8:12], "big")
    assert nbytes == array.nbytes
    assert block_bytes % array.dtype.itemsize == 0
    decoded = bitshuffle.decompress_lz4(
        np.frombuffer(chunk, dtype=np.uint8, offset=12),
        array.shape,
        array.dtype,
        block_bytes // array.dtype.itemsize,
    )
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES)
def test_bslz4_chunk_is_readable_by_hdf5_filter_32008(
    tmp_path: Path, dtype: str, shape: tuple[int, ...]
) -> None:
    frames = [sample(shape, dtype, seed=s) for s in range(3)]
    path = tmp_path / "direct.h5"
    with h5py.File(path, "w") as h5:
        dset = h5.create_dataset(
            "data",
            shape=(len(frames), *shape),
            chunks=(1, *shape),
            dtype=dtype,
            **hdf5plugin.Bitshuffle(cname="lz4"),
        )
        for index, frame in enumerate(frames):
            dset.id.write_direct_chunk((index,) + (0,) * len(shape), bslz4.compress(frame))

    with h5py.File(path, "r") as h5:
        assert h5["data"].id.get_create_plist().get_filter(0)[0] == bslz4.HDF5_FILTER_ID
        np.testing.assert_array_equal(h5["data"][()], np.stack(frames))


def test_bslz4_compress_accepts_non_contiguous_arrays() -> None:
    array = sample((8, 10), "uint16")[:, ::2]

    chunk = bslz4.compress(array)

    np.testing.assert_array_equal(bslz4.decompress(chunk, array.shape, array.dtype), array)


# --- malformed messages --------------------------------------------------------------------


def test_empty_message_is_refused() -> None:
    error = parse_error([])
    assert "empty" in str(error)
    assert error.seq is None


@pytest.mark.parametrize("part", [b"{not json", b"\xff\xfe\xfa", b""])
def test_part0_that_is_not_json_is_refused(part: bytes) -> None:
    error = parse_error([part])
    assert "JSON" in str(error)
    assert error.seq is None


@pytest.mark.parametrize("part", [b"[1, 2]", b'"header"', b"7", b"null"])
def test_part0_that_is_not_an_object_is_refused(part: bytes) -> None:
    error = parse_error([part])
    assert "JSON object" in str(error)
    assert error.seq is None


@pytest.mark.parametrize("number", [..., "3", 3.0, True, None])
def test_missing_or_non_integer_msg_number_is_refused(number: Any) -> None:
    fields = (
        {"htype": "series_end"} if number is ... else {"htype": "series_end", "msg_number": number}
    )

    error = parse_error([json.dumps(fields).encode()])

    assert "msg_number" in str(error)
    assert error.seq is None


@pytest.mark.parametrize("htype", ["dimage", "Header", None])
def test_unknown_htype_is_refused_with_its_number(htype: Any) -> None:
    error = parse_error([json_part(htype=htype, msg_number=4)])

    assert "htype" in str(error)
    assert repr(htype) in str(error)
    assert error.seq == 4


def test_header_without_filename_is_refused() -> None:
    error = parse_error([json_part(htype="header", msg_number=2)])

    assert "filename" in str(error)
    assert error.seq == 2


@pytest.mark.parametrize("filename", [42, None, ["a.h5"]])
def test_header_with_non_string_filename_is_refused(filename: Any) -> None:
    error = parse_error([json_part(htype="header", msg_number=2, filename=filename)])

    assert "filename" in str(error)
    assert error.seq == 2


@pytest.mark.parametrize("meta", [b"[1, 2]", b"5", b"{broken", b"null"])
def test_header_metadata_part_that_is_not_an_object_is_refused(meta: bytes) -> None:
    error = parse_error([json_part(htype="header", msg_number=8, filename="x.h5"), meta])

    assert "metadata" in str(error)
    assert error.seq == 8


@pytest.mark.parametrize("frame", [..., -1, "3", 2.0, True, None])
def test_image_with_missing_or_bad_frame_is_refused(frame: Any) -> None:
    error = parse_error([json.dumps(image_fields(frame=frame)).encode(), GOOD_BLOB])

    assert "'frame'" in str(error)
    assert error.seq == 7


@pytest.mark.parametrize(
    "shape", [..., [], [0, 6], [-2, -3], [2.0, 3], "2x3", [2, "3"], 6, [True, 6]]
)
def test_image_with_missing_or_bad_shape_is_refused(shape: Any) -> None:
    error = parse_error([json.dumps(image_fields(shape=shape)).encode(), GOOD_BLOB])

    assert "'shape'" in str(error)
    assert error.seq == 7


@pytest.mark.parametrize("dtype", ["uint17", "pixels", 5, [1]])
def test_image_with_unknown_type_is_refused(dtype: Any) -> None:
    error = parse_error([json.dumps(image_fields(type=dtype)).encode(), GOOD_BLOB])

    assert "'type'" in str(error)
    assert error.seq == 7


def test_image_without_type_is_refused() -> None:
    float64_blob = np.zeros((2, 3), dtype=np.float64).tobytes()

    error = parse_error([json.dumps(image_fields(type=...)).encode(), float64_blob])

    assert "'type'" in str(error)
    assert error.seq == 7


@pytest.mark.parametrize("dtype", ["str", "object", "bool", "complex64", "i4,i4", "datetime64"])
def test_image_with_unsupported_type_is_refused(dtype: str) -> None:
    error = parse_error([json.dumps(image_fields(type=dtype)).encode(), GOOD_BLOB])

    assert "unsupported pixel type" in str(error)
    assert error.seq == 7


@pytest.mark.parametrize("compression", ["gzip", "lz4", None, ...])
def test_image_with_unknown_compression_is_refused(compression: Any) -> None:
    error = parse_error([json.dumps(image_fields(compression=compression)).encode(), GOOD_BLOB])

    assert "compression" in str(error)
    assert repr(None if compression is ... else compression) in str(error)
    assert error.seq == 7


@pytest.mark.parametrize("compression", ["none", "bslz4"])
def test_image_without_data_part_is_refused(compression: str) -> None:
    error = parse_error([json.dumps(image_fields(compression=compression)).encode()])

    assert "data part is missing" in str(error)
    assert error.seq == 7


@pytest.mark.parametrize("size", [0, 11, 13])
def test_uncompressed_image_with_wrong_blob_size_is_refused(size: int) -> None:
    error = parse_error([json.dumps(image_fields()).encode(), bytes(size)])

    assert f"has {size} bytes" in str(error)
    assert "needs 12" in str(error)
    assert error.seq == 7


@pytest.mark.parametrize("size", [0, 5, 11])
def test_bslz4_chunk_shorter_than_its_header_is_refused(size: int) -> None:
    error = parse_error([json.dumps(image_fields(compression="bslz4")).encode(), bytes(size)])

    assert "12-byte header" in str(error)
    assert error.seq == 7


def test_bslz4_chunk_announcing_the_wrong_size_is_refused() -> None:
    chunk = bslz4.compress(np.zeros((4, 3), dtype=np.uint16))  # 24 bytes, the message says 12

    error = parse_error([json.dumps(image_fields(compression="bslz4")).encode(), chunk])

    assert "announces 24 bytes" in str(error)
    assert "needs 12" in str(error)
    assert error.seq == 7

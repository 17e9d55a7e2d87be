"""Pilatus mini-CBF (protocols.cbf): the files it encodes are fabio's, and fabio's are its.

fabio is the reference both ways: it must read what the simulator encodes as
the pixels and header it was given, and the streamer's check and the
receiver's decoding must take the files fabio writes (Dectris' layout) and
find in them the pixels fabio reads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import fabio
import fabio.cbfimage
import numpy as np
import pytest

from protocols import cbf

WHEN = datetime(2024, 6, 1, 12, 0, 0, 123_000)
SHAPE = (5, 7)
WRITERS = ["protocols.cbf", "fabio"]


def counts() -> np.ndarray:
    """Deltas of 1, 3 and 7 bytes (an escape to 16 and to 32 bits), negatives, then 1-byte ones.

    Its byte-offset stream is 49 bytes: 20 for the first 6 pixels, then one per pixel.
    """
    frame = np.arange(35, dtype=np.int32).reshape(SHAPE)
    frame.flat[:5] = [-2, 125, -3, 40_000, -1]
    return frame


def written(writer: str, pixels: np.ndarray, tmp_path: Path, **header: Any) -> bytes:
    """The file ``writer`` makes of ``pixels``."""
    if writer == "fabio":
        path = tmp_path / "by_fabio.cbf"
        fabio.cbfimage.CbfImage(data=pixels).write(str(path))
        return path.read_bytes()
    return cbf.encode(pixels, "scan_00000.cbf", cbf.CbfHeader(**header), WHEN)


def fabio_reads(blob: bytes, tmp_path: Path) -> np.ndarray:
    path = tmp_path / "read_by_fabio.cbf"
    path.write_bytes(blob)
    with fabio.open(str(path)) as image:
        return image.data


def decoded(blob: bytes) -> np.ndarray:
    return cbf.decode_pixels(blob, cbf.binary_section(blob))


def test_fabio_reads_an_encoded_file_as_its_pixels_and_header(tmp_path: Path) -> None:
    header = cbf.CbfHeader(
        exposure_time=0.097, exposure_period=0.1, threshold_ev=4500, image_path="/ramdisk/images"
    )
    path = tmp_path / "scan_00000.cbf"
    path.write_bytes(cbf.encode(counts(), path.name, header, WHEN))

    image = fabio.open(str(path))

    assert image.data.dtype == np.int32
    np.testing.assert_array_equal(image.data, counts())
    assert image.header["conversions"] == "x-CBF_BYTE_OFFSET"
    assert image.header["X-Binary-Element-Type"] == "signed 32-bit integer"
    contents = image.header["_array_data.header_contents"]
    for line in (
        "# Detector: PILATUS3 2M, S/N 24-0000 (simulated)",
        "# 2024-Jun-01T12:00:00.123",
        "# Pixel_size 172e-6 m x 172e-6 m",
        "# Exposure_time 0.0970000 s",
        "# Exposure_period 0.1000000 s",
        "# Threshold_setting: 4500 eV",
        "# Image_path: /ramdisk/images/",
    ):
        assert line in contents


def test_only_a_2d_frame_is_encoded() -> None:
    with pytest.raises(ValueError, match="a Pilatus image is 2-D, not of shape"):
        cbf.encode(np.zeros((2, 3, 4), np.int32), "x.cbf", cbf.CbfHeader(), WHEN)


@pytest.mark.parametrize("writer", WRITERS)
def test_the_binary_section_decodes_as_fabio_reads_the_file(writer: str, tmp_path: Path) -> None:
    blob = written(writer, counts(), tmp_path)

    section = cbf.binary_section(memoryview(blob))
    pixels = cbf.decode_pixels(memoryview(blob), section)

    assert section == cbf.BinarySection(blob.index(cbf.MARKER) + 4, 49, SHAPE)
    assert pixels.dtype == np.int32
    np.testing.assert_array_equal(pixels, fabio_reads(blob, tmp_path))


def _misaligned(blob: bytes) -> bytes:
    """An escape byte (0x80) instead of a 1-byte delta: the pixels no longer line up."""
    position = blob.index(cbf.MARKER) + 4 + 20
    assert blob[position : position + 3] == b"\x01\x01\x01", "the fixture's stream changed"
    return blob[:position] + b"\x80" + blob[position + 1 :]


FAULTS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated": (
        lambda b: b[: b.index(cbf.MARKER) + 30],
        "X-Binary-Size is 49 bytes but only 26 follow the start marker",
    ),
    "corrupt stream": (
        _misaligned,
        "the 49-byte byte-offset stream does not hold exactly 35 pixels (corrupt or truncated data)",
    ),
    "more pixels than announced": (
        lambda b: b.replace(b"Second-Dimension: 5", b"Second-Dimension: 4"),
        "the 49-byte byte-offset stream does not hold exactly 28 pixels (corrupt or truncated data)",
    ),
    "no binary section": (
        lambda b: b.replace(cbf.MARKER, b"...."),
        "no binary section (start marker 0C 1A 04 D5 not found)",
    ),
    "other element type": (
        lambda b: b.replace(b"signed 32-bit integer", b"signed 16-bit integer"),
        "X-Binary-Element-Type must be 'signed 32-bit integer', found 'signed 16-bit integer'",
    ),
    "other byte order": (
        lambda b: b.replace(b"LITTLE_ENDIAN", b"BIG_ENDIAN"),
        "X-Binary-Element-Byte-Order 'BIG_ENDIAN' is not LITTLE_ENDIAN",
    ),
    "other conversion": (
        lambda b: b.replace(b"x-CBF_BYTE_OFFSET", b"x-CBF_PACKED"),
        "conversions must be 'x-CBF_BYTE_OFFSET', found 'x-CBF_PACKED'",
    ),
    "no dimension": (
        lambda b: b.replace(b"X-Binary-Size-Second-Dimension", b"X-Comment"),
        "X-Binary-Size-Second-Dimension must be a positive integer, found ''",
    ),
}


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_file_is_refused_with_the_reason(writer: str, fault: str, tmp_path: Path) -> None:
    damage, reason = FAULTS[fault]
    blob = damage(written(writer, counts(), tmp_path))

    with pytest.raises(cbf.CbfError) as refused:
        decoded(blob)

    assert str(refused.value) == reason


def test_read_cbf_info_tells_whole_files_from_files_being_written_and_foreign_ones() -> None:
    """The streamer sends a file once it is whole, waits while it is written, drops the rest."""
    whole = cbf.encode(counts(), "x.cbf", cbf.CbfHeader(exposure_time=0.5), WHEN)
    start = whole.index(cbf.MARKER) + 4

    assert cbf.read_cbf_info(whole) == cbf.CbfInfo(SHAPE, 0.5)
    untimed = whole.replace(b"# Exposure_time", b"# Exposure_tim")
    assert cbf.read_cbf_info(untimed) == cbf.CbfInfo(SHAPE, None)
    being_written = {
        "10 of 49 bytes of pixel data so far": whole[: start + 10],
        "pixel data complete, the closing boundary not written yet": whole[:-20],
        "no binary section yet in 100 bytes": whole[:100],
    }
    for reason, part in being_written.items():
        with pytest.raises(cbf.CbfIncomplete) as incomplete:
            cbf.read_cbf_info(part)
        assert str(incomplete.value) == reason
    with pytest.raises(cbf.CbfError, match="no binary section") as foreign:
        cbf.read_cbf_info(b"not a cbf" * 10_000)
    assert not isinstance(foreign.value, cbf.CbfIncomplete)
    with pytest.raises(cbf.CbfError, match="X-Binary-Element-Type must be") as other:
        cbf.read_cbf_info(whole.replace(b"signed 32-bit integer", b"unsigned 16-bit integer"))
    assert not isinstance(other.value, cbf.CbfIncomplete)

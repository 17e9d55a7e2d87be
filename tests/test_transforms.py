"""Per-frame transforms: what a worker makes of a frame is what the reference tools make of it.

fabio reading the CBF file is the reference for the Pilatus decoding, numpy
(rot90, fancy indexing, slicing) for rotation, ToT lookup and masks, and a
per-pixel bit loop written here for the 12-bit packed camera format. Frames
come in as a worker holds them: 'none' or 'bslz4' blobs, bytes or memoryviews.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import fabio
import fabio.cbfimage
import numpy as np
import pytest
from pydantic import ValidationError

from protocols import bslz4
from protocols.errors import MalformedMessage
from protocols.model import Image
from receiver.transforms import Rotate, build_pipeline

PILATUS_2M = (1679, 1475)
SEQ, FRAME = 41, 40


def make_image(frame: np.ndarray, compression: str = "none") -> Image:
    blob = bslz4.compress(frame) if compression == "bslz4" else frame.tobytes()
    return Image(SEQ, FRAME, frame.shape, frame.dtype, compression, memoryview(blob))


def pixels(image: Image) -> np.ndarray:
    if image.compression == "bslz4":
        return bslz4.decompress(image.data, image.shape, image.dtype)
    assert image.compression == "none"
    return np.frombuffer(image.data, dtype=image.dtype).reshape(image.shape)


def refused(transform: Callable[[Image], Image], image: Image) -> str:
    """The reason a transform gives for refusing ``image``, checked to name the frame."""
    with pytest.raises(MalformedMessage) as info:
        transform(image)
    assert info.value.seq == SEQ
    assert info.value.reason.startswith(f"frame {FRAME}: ")
    return info.value.reason


def pilatus_counts(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A Pilatus frame: Poisson background, Bragg peaks, gaps at -1, a few bad pixels at -2."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(4.0, size=shape).astype(np.int32)
    peaks = rng.integers(0, counts.size, size=max(1, counts.size // 5000))
    counts.flat[peaks] = rng.integers(150, 2_000_000, size=peaks.size)  # 2- and 4-byte deltas
    module_rows, module_columns = 195, 487
    for row in range(module_rows, shape[0], module_rows + 17):
        counts[row : row + 17] = -1
    for column in range(module_columns, shape[1], module_columns + 7):
        counts[:, column : column + 7] = -1
    counts.flat[rng.integers(0, counts.size, size=5)] = -2
    return counts


def write_cbf(path: Path, counts: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The file's bytes, as the Pilatus streamer sends them, and fabio's reading of the file."""
    fabio.cbfimage.CbfImage(data=counts).write(str(path))
    with fabio.open(str(path)) as reference:
        return path.read_bytes(), reference.data


def cbf_image(blob: bytes, shape: tuple[int, ...]) -> Image:
    return Image(SEQ, FRAME, shape, np.dtype("int32"), "cbf", memoryview(blob))


@pytest.fixture(scope="module")
def small_cbf(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, np.ndarray]:
    counts = pilatus_counts((5, 7), seed=1)
    counts[0, :4] = [-2, 125, -3, 40_000]  # 1-, 2- and 4-byte deltas, negatives
    return write_cbf(tmp_path_factory.mktemp("cbf") / "small_00001.cbf", counts)


@pytest.fixture(scope="module")
def pilatus_cbf(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, np.ndarray]:
    counts = pilatus_counts(PILATUS_2M)
    return write_cbf(tmp_path_factory.mktemp("cbf") / "scan_00001.cbf", counts)


# --- CBF (Pilatus) -------------------------------------------------------------------------


@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "memoryview"])
def test_small_cbf_decodes_as_fabio_reads_it(small_cbf, as_bytes: bool) -> None:
    blob, reference = small_cbf
    image = cbf_image(blob, reference.shape)
    if as_bytes:
        image.data = bytes(image.data)

    out = build_pipeline([{"kind": "cbf", "compression": "none"}])(image)

    assert (out.compression, out.dtype, out.shape) == ("none", np.dtype("int32"), (5, 7))
    np.testing.assert_array_equal(pixels(out), reference)
    assert (out.seq, out.frame) == (SEQ, FRAME)


def test_pilatus_2m_cbf_becomes_the_bslz4_chunk_of_fabios_pixels(pilatus_cbf) -> None:
    blob, reference = pilatus_cbf

    out = build_pipeline([{"kind": "cbf"}])(cbf_image(blob, PILATUS_2M))

    assert (out.compression, out.dtype, out.shape) == ("bslz4", np.dtype("int32"), PILATUS_2M)
    assert out.data == bslz4.compress(reference)
    np.testing.assert_array_equal(pixels(out), reference)


def test_a_broken_cbf_is_refused_with_the_formats_reason(small_cbf) -> None:
    """Which files are broken, and why, is protocols.cbf's (tests/test_cbf.py)."""
    image = cbf_image(small_cbf[0].replace(b"x-CBF_BYTE_OFFSET", b"x-CBF_PACKED"), (5, 7))

    reason = refused(build_pipeline([{"kind": "cbf"}]), image)

    assert reason == (
        f"frame {FRAME}: cbf: conversions must be 'x-CBF_BYTE_OFFSET', found 'x-CBF_PACKED'"
    )


def test_a_cbf_of_another_size_than_announced_is_refused(small_cbf) -> None:
    reason = refused(build_pipeline([{"kind": "cbf"}]), cbf_image(small_cbf[0], (7, 5)))

    assert "the file holds 5 rows of 7 pixels but the message announces shape [7, 5]" in reason


def test_the_cbf_transform_refuses_a_frame_that_is_not_cbf() -> None:
    image = make_image(np.zeros((5, 7), np.int32), "bslz4")

    assert "compression is 'bslz4', not 'cbf'" in refused(build_pipeline([{"kind": "cbf"}]), image)


# --- rotation ------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "bslz4"])
@pytest.mark.parametrize("k", [1, 2, 3, 0, -1, 6])
def test_rotation_is_numpys_rot90_and_keeps_the_compression(compression: str, k: int) -> None:
    frame = np.arange(3 * 5, dtype=np.uint16).reshape(3, 5)

    out = build_pipeline([{"kind": "rotate", "k": k}])(make_image(frame, compression))

    expected = np.rot90(frame, k)
    assert (out.compression, out.shape, out.dtype) == (compression, expected.shape, frame.dtype)
    np.testing.assert_array_equal(pixels(out), expected)


def test_a_stack_of_module_images_turns_each_module() -> None:
    stack = np.arange(2 * 3 * 4, dtype=np.uint32).reshape(2, 3, 4)

    out = build_pipeline([{"kind": "rotate", "k": 1}])(make_image(stack, "bslz4"))

    np.testing.assert_array_equal(pixels(out), [np.rot90(stack[0]), np.rot90(stack[1])])


def test_a_pilatus_2m_bslz4_frame_rotates(pilatus_cbf) -> None:
    frame = pilatus_cbf[1]

    out = build_pipeline([{"kind": "rotate", "k": -1}])(make_image(frame, "bslz4"))

    assert (out.compression, out.shape) == ("bslz4", (1475, 1679))
    np.testing.assert_array_equal(pixels(out), np.rot90(frame, -1))


# --- masked rectangle ----------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "bslz4"])
@pytest.mark.parametrize(("value", "fill"), [(0, 0), (7, 7), ("max", 65535)])
def test_a_masked_rectangle_takes_the_value(compression: str, value, fill: int) -> None:
    frame = np.arange(1, 6 * 8 + 1, dtype=np.uint16).reshape(6, 8)
    image = make_image(frame, compression)
    config = {"kind": "mask", "x": 2, "y": 1, "width": 3, "height": 4, "value": value}

    out = build_pipeline([config])(image)

    expected = frame.copy()
    expected[1:5, 2:5] = fill
    assert (out.compression, out.shape, out.dtype) == (compression, (6, 8), frame.dtype)
    np.testing.assert_array_equal(pixels(out), expected)
    np.testing.assert_array_equal(pixels(image), frame)  # the message's own buffer is untouched


def test_a_mask_does_not_write_into_a_writable_message_buffer() -> None:
    frame = np.ones((4, 4), dtype=np.int32)
    blob = bytearray(frame.tobytes())
    image = Image(SEQ, FRAME, (4, 4), frame.dtype, "none", memoryview(blob))

    out = build_pipeline([{"kind": "mask", "x": 0, "y": 0, "width": 4, "height": 4}])(image)

    assert not pixels(out).any()
    assert blob == frame.tobytes()


def test_a_float_frame_is_masked_with_a_float_value() -> None:
    frame = np.ones((3, 3), dtype=np.float32)
    config = {"kind": "mask", "x": 1, "y": 1, "width": 1, "height": 1, "value": 0.1}

    masked = pixels(build_pipeline([config])(make_image(frame)))

    assert masked[1, 1] == np.float32(0.1)
    assert masked.sum() == pytest.approx(8.1)


@pytest.mark.parametrize(
    ("rectangle", "reason"),
    [
        (
            {"x": 6, "y": 0, "width": 3, "height": 1},
            "x 6..8, y 0..0 does not fit in a frame of 8 x 6",
        ),
        (
            {"x": 0, "y": 0, "width": 1, "height": 1, "value": -1},
            "value -1 does not fit in a uint16",
        ),
        ({"x": 0, "y": 0, "width": 1, "height": 1, "value": 1.5}, "value 1.5 cannot be stored"),
    ],
)
def test_a_mask_that_does_not_fit_the_frame_is_refused(rectangle: dict, reason: str) -> None:
    image = make_image(np.zeros((6, 8), dtype=np.uint16))

    assert reason in refused(build_pipeline([{"kind": "mask", **rectangle}]), image)


# --- time over threshold to energy ---------------------------------------------------------


def energies_by_loop(tot: np.ndarray, table: np.ndarray) -> np.ndarray:
    energy = np.empty(tot.shape, dtype=np.float32)
    for y in range(tot.shape[0]):
        for x in range(tot.shape[1]):
            count = tot[y, x]
            energy[y, x] = table[y, x, count] if 0 < count < table.shape[2] else -1.0
    return energy


def test_tot_counts_become_energies_from_the_maxiv_npz_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    table = rng.uniform(2.0, 30.0, size=(4, 6, 10))  # keV, float64 as MAX IV stores it
    np.savez(tmp_path / "tot.npz", tot_to_energy_tensor=table)
    tot = rng.integers(-2, 13, size=(4, 6), dtype=np.int32)  # gaps, no hit, beyond the table
    tot[0, :4] = [0, 1, 9, 10]

    out = build_pipeline([{"kind": "tot", "table": tmp_path / "tot.npz"}])(make_image(tot))

    assert (out.dtype, out.shape, out.compression) == (np.dtype("float32"), (4, 6), "none")
    np.testing.assert_array_equal(pixels(out), energies_by_loop(tot, table))
    assert list(pixels(out)[0, :4]) == [
        -1.0,
        np.float32(table[0, 1, 1]),
        np.float32(table[0, 2, 9]),
        -1.0,
    ]


@pytest.mark.parametrize("dtype", ["uint16", "uint64", "int64"])
def test_tot_frames_of_any_integer_type_are_looked_up(tmp_path: Path, dtype: str) -> None:
    table = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    np.save(tmp_path / "tot.npy", table)
    tot = np.array([[0, 1, 2], [3, 4, 5]], dtype=dtype)

    out = build_pipeline([{"kind": "tot", "table": tmp_path / "tot.npy"}])(make_image(tot))

    assert pixels(out).tolist() == [[-1.0, 6.0, 12.0], [18.0, 24.0, -1.0]]


def test_a_pilatus_2m_tot_frame_matches_numpy_fancy_indexing(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n_tot = 4
    table = rng.uniform(2.0, 30.0, size=(*PILATUS_2M, n_tot)).astype(np.float32)
    np.save(tmp_path / "tot.npy", table)
    tot = pilatus_counts(PILATUS_2M) % (n_tot + 2) - np.int32(1)

    out = build_pipeline([{"kind": "tot", "table": tmp_path / "tot.npy"}])(make_image(tot, "bslz4"))

    rows, columns = np.indices(PILATUS_2M)
    looked_up = table[rows, columns, np.clip(tot, 0, n_tot - 1)]
    expected = np.where((tot > 0) & (tot < n_tot), looked_up, np.float32(-1.0))
    assert out.compression == "bslz4"
    np.testing.assert_array_equal(pixels(out), expected)


def test_a_tot_frame_that_does_not_fit_the_table_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "tot.npy", np.ones((4, 6, 10)))
    transform = build_pipeline([{"kind": "tot", "table": tmp_path / "tot.npy"}])

    other_size = refused(transform, make_image(np.ones((6, 4), dtype=np.int32)))
    floats = refused(transform, make_image(np.ones((4, 6), dtype=np.float32)))

    assert "the frame is [6, 4] pixels but the calibration table is for [4, 6]" in other_size
    assert "ToT frames hold integers, this one holds float32" in floats


@pytest.mark.parametrize(
    ("arrays", "reason"),
    [
        ({"other_name": np.ones((2, 2, 3))}, "has no array 'tot_to_energy_tensor'"),
        ({"tot_to_energy_tensor": np.ones((2, 3))}, "shape (ny, nx, n_tot)"),
    ],
)
def test_an_unusable_tot_table_fails_when_the_pipeline_is_built(
    tmp_path: Path, arrays: dict, reason: str
) -> None:
    np.savez(tmp_path / "tot.npz", **arrays)

    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        build_pipeline([{"kind": "tot", "table": tmp_path / "tot.npz"}])


# --- 12-bit packed (mono12p) ---------------------------------------------------------------


def pack_mono12p(frame: np.ndarray) -> bytes:
    """GenICam Mono12p: all pixels as one bit stream, 12 bits each, least significant bit first."""
    bits = (frame.reshape(-1, 1).astype(np.uint16) >> np.arange(12)) & 1
    return np.packbits(bits.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def unpack_by_loop(blob: bytes, count: int) -> list[int]:
    pixels_read = []
    for index in range(count):
        first_bit = 12 * index
        byte = first_bit // 8
        if first_bit % 8 == 0:  # 8 bits of this byte, then the low nibble of the next
            pixels_read.append(blob[byte] | (blob[byte + 1] & 0x0F) << 8)
        else:  # the high nibble of this byte, then 8 bits of the next
            pixels_read.append(blob[byte] >> 4 | blob[byte + 1] << 4)
    return pixels_read


def mono12p_image(blob: bytes, shape: tuple[int, ...]) -> Image:
    return Image(SEQ, FRAME, shape, np.dtype("uint16"), "mono12p", memoryview(blob))


def test_mono12p_follows_the_genicam_layout_not_mono12packed() -> None:
    # PFNC Mono12p: 0x123, 0x456 -> 23 61 45. GigE Mono12Packed would read 0x231 first.
    out = build_pipeline([{"kind": "mono12p"}])(mono12p_image(bytes([0x23, 0x61, 0x45]), (1, 2)))

    assert pixels(out).tolist() == [[0x123, 0x456]]


def test_a_small_mono12p_frame_matches_the_bit_loop_and_round_trips() -> None:
    frame = np.random.default_rng(5).integers(0, 4096, size=(3, 5), dtype=np.uint16)
    blob = pack_mono12p(frame)  # 15 pixels: 22.5 bytes, padded to 23

    out = build_pipeline([{"kind": "mono12p", "compression": "none"}])(mono12p_image(blob, (3, 5)))

    assert (len(blob), out.compression, out.dtype) == (23, "none", np.dtype("uint16"))
    assert pixels(out).reshape(-1).tolist() == unpack_by_loop(blob, 15)
    np.testing.assert_array_equal(pixels(out), frame)


def test_a_pilatus_2m_sized_mono12p_frame_round_trips_to_bslz4() -> None:
    frame = np.random.default_rng(6).integers(0, 4096, size=PILATUS_2M, dtype=np.uint16)

    out = build_pipeline([{"kind": "mono12p"}])(mono12p_image(pack_mono12p(frame), PILATUS_2M))

    assert (out.compression, out.shape, out.dtype) == ("bslz4", PILATUS_2M, np.dtype("uint16"))
    np.testing.assert_array_equal(pixels(out), frame)


def test_a_mono12p_frame_of_the_wrong_length_is_refused() -> None:
    blob = pack_mono12p(np.zeros((4, 4), dtype=np.uint16))

    reason = refused(build_pipeline([{"kind": "mono12p"}]), mono12p_image(blob[:-1], (4, 4)))

    assert "23 bytes, but shape [4, 4] packs into 24" in reason


# --- pipelines -----------------------------------------------------------------------------


def test_a_pipeline_applies_its_transforms_in_order(small_cbf, tmp_path: Path) -> None:
    blob, counts = small_cbf
    table = np.random.default_rng(7).uniform(2.0, 30.0, size=(5, 7, 50)).astype(np.float32)
    np.save(tmp_path / "tot.npy", table)
    transform = build_pipeline(
        [
            {"kind": "cbf"},
            {"kind": "tot", "table": str(tmp_path / "tot.npy")},
            Rotate(kind="rotate", k=1),
            {"kind": "mask", "x": 0, "y": 0, "width": 2, "height": 1, "value": "max"},
        ]
    )

    out = transform(cbf_image(blob, counts.shape))

    expected = np.rot90(energies_by_loop(counts, table)).copy()
    expected[0, :2] = np.finfo(np.float32).max
    assert (out.compression, out.shape, out.dtype) == ("bslz4", (7, 5), np.dtype("float32"))
    np.testing.assert_array_equal(pixels(out), expected)


def test_no_transforms_leave_the_image_as_it_is(small_cbf) -> None:
    image = cbf_image(small_cbf[0], (5, 7))

    assert build_pipeline([])(image) is image


@pytest.mark.parametrize(
    ("configs", "reason"),
    [
        ([{"kind": "rotate", "k": 1}, {"kind": "cbf"}], "can only be the first"),
        ([{"kind": "flip"}], "does not match any of the expected tags"),
        ([{"kind": "rotate", "k": 1, "degrees": 90}], "Extra inputs are not permitted"),
        ([{"kind": "rotate", "k": "1"}], "Input should be a valid integer"),
        ([{"kind": "mask", "x": 0, "y": 0, "width": 0, "height": 1}], "greater than 0"),
        ([{"kind": "tot", "table": "/nonexistent/tot.npz"}], "Path does not point to a file"),
    ],
)
def test_an_invalid_pipeline_is_refused_when_it_is_built(configs: list, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        build_pipeline(configs)


def test_a_cbf_frame_needs_the_cbf_transform_first(small_cbf) -> None:
    reason = refused(build_pipeline([{"kind": "rotate", "k": 1}]), cbf_image(small_cbf[0], (5, 7)))

    assert (
        "compression 'cbf' needs its decoding transform ('cbf', 'mono12p' or 'mono12packed') first"
        in reason
    )


def _cut_block(chunk: bytes) -> bytes:
    return chunk[: len(chunk) // 2]


def _bad_block_size(chunk: bytes) -> bytes:
    return chunk[:12] + b"\x00\x10\x00\x00" + chunk[16:]


def _damaged_block(chunk: bytes) -> bytes:
    """LZ4 commands that run past the block (a flipped literal would go unnoticed: no checksum)."""
    return chunk[:16] + b"\xff" * 64 + chunk[80:]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_cut_block, "bslz4 chunk ends in block"),
        (_bad_block_size, "bslz4 chunk ends in block"),
        (_damaged_block, "bslz4 chunk is corrupt"),
        (lambda chunk: chunk[:8], "shorter than its 12-byte header"),
    ],
)
def test_a_damaged_bslz4_frame_is_refused_not_a_crash(damage, reason: str) -> None:
    frame = pilatus_counts((64, 300))
    image = make_image(frame, "bslz4")
    image.data = damage(bytes(image.data))

    assert reason in refused(build_pipeline([{"kind": "rotate", "k": 1}]), image)


def test_a_raw_frame_of_the_wrong_length_is_refused() -> None:
    image = make_image(np.zeros((4, 4), dtype=np.uint16))
    image.data = image.data[:-2]

    reason = refused(build_pipeline([{"kind": "rotate", "k": 1}]), image)

    assert "30 bytes, but shape [4, 4] of uint16 needs 32" in reason


def test_a_transformed_raw_frame_is_a_flat_byte_buffer() -> None:
    frame = np.arange(12, dtype=np.int32).reshape(3, 4)

    out = build_pipeline([{"kind": "rotate", "k": 1}])(make_image(frame))

    assert len(out.data) == math.prod(out.shape) * 4 == 48
    assert bytes(out.data) == np.rot90(frame).tobytes()


def _andor_packed(pixels: np.ndarray) -> bytes:
    """Andor's Mono12Packed, written from its description: A = b0<<4 | b1&0xF, B = b2<<4 | b1>>4,
    an odd last pixel of a row in two bytes."""
    out = bytearray()
    for row in pixels.astype(int):
        for k in range(0, len(row) - 1, 2):
            a, b = row[k], row[k + 1]
            out += bytes([a >> 4, (a & 0xF) | (b & 0xF) << 4, b >> 4])
        if len(row) % 2:
            out += bytes([row[-1] >> 4, row[-1] & 0xF])
    return bytes(out)


@pytest.mark.parametrize("shape", [(3, 8), (4, 7)])
def test_andor_mono12packed_frames_unpack_exactly(shape):
    frame = np.random.default_rng(5).integers(0, 4096, size=shape, dtype=np.uint16)
    image = Image(SEQ, FRAME, shape, np.dtype(np.uint16), "mono12packed", _andor_packed(frame))
    out = build_pipeline([{"kind": "mono12packed", "compression": "none"}])(image)
    np.testing.assert_array_equal(pixels(out), frame)


def test_a_mono12packed_frame_of_the_wrong_size_is_malformed():
    image = Image(SEQ, FRAME, (4, 8), np.dtype(np.uint16), "mono12packed", bytes(47))
    with pytest.raises(MalformedMessage, match="47 bytes, but 4 rows of 8 pixels pack into 48"):
        build_pipeline([{"kind": "mono12packed"}])(image)

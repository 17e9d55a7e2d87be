"""The series file as a user opens it: plain h5py + hdf5plugin, NeXus layout, frames in place."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers filter 32008 for reading)
import numpy as np
import pytest

from protocols import bslz4
from protocols.model import Image
from receiver.nexus import FrameRejectedError, NexusFile
from receiver.paths import PathRefusedError, create_destination

DETECTOR = "eiger"
DET = f"/entry/instrument/{DETECTOR}"
SHAPE = (4, 6)


def pixels(frame: int, shape: tuple[int, ...] = SHAPE, dtype: str = "uint16") -> np.ndarray:
    """A frame whose pixels say which frame it is."""
    base = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % 50
    return (base + 100 * (frame + 1)).astype(dtype)


def image(
    frame: int,
    compression: str = "none",
    array: np.ndarray | None = None,
    discard: bool = False,
) -> Image:
    array = pixels(frame) if array is None else array
    data = bslz4.compress(array) if compression == "bslz4" else array.tobytes()
    return Image(
        seq=frame + 1,
        frame=frame,
        shape=array.shape,
        dtype=array.dtype,
        compression=compression,
        data=data,
        discard=discard,
    )


def create_in(root: Path, name: str, meta: dict[str, Any] | None = None) -> NexusFile:
    """As the writer creates a series file: in one step inside the data root."""
    with create_destination(root, name) as created:
        return NexusFile.create(created.proc_path, created.path, DETECTOR, meta or {})


def create(tmp_path: Path, meta: dict[str, Any] | None = None) -> NexusFile:
    return create_in(tmp_path, "scan.h5", meta)


def test_layout_is_nexus_and_readable_with_plain_h5py(tmp_path: Path) -> None:
    nexus = create(tmp_path)
    for frame in range(3):
        nexus.write(image(frame, "bslz4"))
    assert nexus.close() == []

    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        assert h5["/entry"].attrs["NX_class"] == "NXentry"
        assert h5["/entry/instrument"].attrs["NX_class"] == "NXinstrument"
        assert h5[DET].attrs["NX_class"] == "NXdetector"
        assert h5["/entry/data"].attrs["NX_class"] == "NXdata"
        assert h5["/entry/data"].attrs["signal"] == "data"
        expected = np.stack([pixels(f) for f in range(3)])
        np.testing.assert_array_equal(h5[f"{DET}/data"][()], expected)
        np.testing.assert_array_equal(h5["/entry/data/data"][()], expected)
        assert h5["/entry/data/data"] == h5[f"{DET}/data"], "NXdata must link, not copy"
        np.testing.assert_array_equal(h5[f"{DET}/sequence_number"][()], [0, 1, 2])
        assert h5[f"{DET}/missing_frames"].shape == (0,)
        start = h5["/entry/start_time"].asstr()[()]
        end = h5["/entry/end_time"].asstr()[()]
        assert start <= end
        assert start[:4].isdigit() and "T" in start


def test_each_frame_is_its_own_chunk_written_with_the_bslz4_filter(tmp_path: Path) -> None:
    nexus = create(tmp_path)
    frames = [pixels(f, shape=(64, 300), dtype="uint32") for f in range(2)]
    for frame, array in enumerate(frames):
        nexus.write(image(frame, "bslz4", array))
    nexus.close()

    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        data = h5[f"{DET}/data"]
        assert data.chunks == (1, 64, 300)
        assert data.id.get_create_plist().get_filter(0)[0] == bslz4.HDF5_FILTER_ID
        for frame, array in enumerate(frames):
            _, chunk = data.id.read_direct_chunk((frame, 0, 0))
            assert chunk == bslz4.compress(array), "the chunk must be stored as received"
        np.testing.assert_array_equal(data[()], np.stack(frames))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "int32", "float32"])
@pytest.mark.parametrize("compression", ["none", "bslz4"])
def test_frames_read_back_equal_to_the_source(tmp_path: Path, compression: str, dtype: str) -> None:
    shape = (3, 5, 7)
    frames = [pixels(f, shape, dtype) for f in range(3)]
    nexus = create(tmp_path)
    for frame, array in enumerate(frames):
        nexus.write(image(frame, compression, array))
    nexus.close()

    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        data = h5[f"{DET}/data"]
        assert data.dtype == np.dtype(dtype)
        assert data.shape == (3, *shape)
        np.testing.assert_array_equal(data[()], np.stack(frames))


@pytest.mark.parametrize("compression", ["none", "bslz4"])
def test_frames_out_of_order_land_at_their_frame_index_and_holes_are_reported(
    tmp_path: Path, compression: str
) -> None:
    nexus = create(tmp_path)
    for frame in (6, 0, 3, 1):
        nexus.write(image(frame, compression))

    missing = nexus.close()

    assert missing == [2, 4, 5]
    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        data = h5[f"{DET}/data"][()]
        assert data.shape == (7, *SHAPE)
        for frame in (0, 1, 3, 6):
            np.testing.assert_array_equal(data[frame], pixels(frame))
        for frame in (2, 4, 5):
            assert not data[frame].any(), "a missing frame's place must stay empty"
        np.testing.assert_array_equal(h5[f"{DET}/sequence_number"][()], [0, 1, -1, 3, -1, -1, 6])
        np.testing.assert_array_equal(h5[f"{DET}/missing_frames"][()], [2, 4, 5])


def test_discarded_frames_take_no_place(tmp_path: Path) -> None:
    """MAX IV's test_discard: frames 0-9, 0-2 and 7-9 flagged discard."""
    nexus = create(tmp_path)
    for frame in range(10):
        if frame in (0, 1, 2, 7, 8, 9):
            nexus.discard(frame)
        else:
            nexus.write(image(frame, "bslz4"))

    assert nexus.close() == []

    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        data = h5[f"{DET}/data"][()]
        assert data.shape == (4, *SHAPE)
        np.testing.assert_array_equal(data, np.stack([pixels(f) for f in (3, 4, 5, 6)]))
        np.testing.assert_array_equal(h5[f"{DET}/sequence_number"][()], [3, 4, 5, 6])


def test_missing_frames_between_discarded_ones_are_named_by_frame_number(tmp_path: Path) -> None:
    nexus = create(tmp_path)
    for frame in (0, 1, 2):
        nexus.discard(frame)
    nexus.write(image(3))
    nexus.write(image(6))  # 4 and 5 never came
    nexus.discard(7)
    nexus.write(image(8))

    assert nexus.close() == [4, 5]

    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        np.testing.assert_array_equal(h5[f"{DET}/sequence_number"][()], [3, -1, -1, 6, 8])
        np.testing.assert_array_equal(h5[f"{DET}/missing_frames"][()], [4, 5])
        np.testing.assert_array_equal(h5[f"{DET}/data"][4], pixels(8))


def test_a_repeated_discard_does_not_shift_later_frames(tmp_path: Path) -> None:
    nexus = create(tmp_path)
    for frame in (0, 1, 2):
        nexus.write(image(frame))
    nexus.discard(3)
    with contextlib.suppress(FrameRejectedError):  # refusing the repeat is fine
        nexus.discard(3)

    nexus.write(image(4))

    assert nexus.close() == []
    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        np.testing.assert_array_equal(h5[f"{DET}/sequence_number"][()], [0, 1, 2, 4])


def test_discard_of_a_frame_below_a_stored_one_is_rejected(tmp_path: Path) -> None:
    nexus = create(tmp_path)
    nexus.write(image(0))
    nexus.write(image(2))

    with pytest.raises(FrameRejectedError, match="frame 1 is flagged discard"):
        nexus.discard(1)

    assert nexus.close() == [1]
    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        np.testing.assert_array_equal(h5[f"{DET}/data"][2], pixels(2))


def test_the_dataset_grows_beyond_its_initial_capacity(tmp_path: Path) -> None:
    nexus = create(tmp_path)
    for frame in range(100):
        nexus.write(image(frame, "bslz4"))

    assert nexus.frames_written == 100
    assert nexus.close() == []

    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        data = h5[f"{DET}/data"]
        assert data.shape == (100, *SHAPE)
        np.testing.assert_array_equal(data[99], pixels(99))
        np.testing.assert_array_equal(data[0], pixels(0))
        np.testing.assert_array_equal(h5[f"{DET}/sequence_number"][()], np.arange(100))


def test_a_frame_far_ahead_grows_the_dataset_at_once(tmp_path: Path) -> None:
    nexus = create(tmp_path)
    nexus.write(image(0))
    nexus.write(image(70))

    missing = nexus.close()

    assert missing == list(range(1, 70))
    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        assert h5[f"{DET}/data"].shape == (71, *SHAPE)
        np.testing.assert_array_equal(h5[f"{DET}/data"][70], pixels(70))


def test_metadata_nesting(tmp_path: Path) -> None:
    meta = {
        "count_time": 0.001,
        "nimages": 10,
        "description": "EIGER2 X 4M",
        "flatfield_applied": True,
        "threshold_energy": [6000.0, 12000.0],
        "module_size": [[512, 1028], [512, 1028]],
        "tags": ["a", "bc"],
        "not_set": None,
        "geometry": {"beam_center_x": 1024.5, "axes": {"omega": "rotation"}, "skip": None},
    }
    nexus = create(tmp_path, meta)
    nexus.close()

    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        det = h5[DET]
        assert det["count_time"][()] == 0.001
        assert det["nimages"][()] == 10
        assert det["description"].asstr()[()] == "EIGER2 X 4M"
        assert bool(det["flatfield_applied"][()]) is True
        np.testing.assert_array_equal(det["threshold_energy"][()], [6000.0, 12000.0])
        np.testing.assert_array_equal(det["module_size"][()], [[512, 1028], [512, 1028]])
        assert list(det["tags"].asstr()[()]) == ["a", "bc"]
        assert "not_set" not in det
        assert isinstance(det["geometry"], h5py.Group)
        assert det["geometry/beam_center_x"][()] == 1024.5
        assert isinstance(det["geometry/axes"], h5py.Group)
        assert det["geometry/axes/omega"].asstr()[()] == "rotation"
        assert "skip" not in det["geometry"]


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (image(2, array=pixels(2, shape=(4, 5))), ["[4, 5]", "[4, 6]"]),
        (image(2, array=pixels(2, dtype="uint32")), ["uint32", "uint16"]),
        (image(2, "bslz4"), ["bslz4", "none"]),
    ],
    ids=["shape", "dtype", "compression"],
)
def test_a_frame_unlike_the_first_is_rejected_and_the_file_still_closes(
    tmp_path: Path, bad: Image, words: list[str]
) -> None:
    nexus = create(tmp_path)
    nexus.write(image(0))
    nexus.write(image(1))

    with pytest.raises(FrameRejectedError) as info:
        nexus.write(bad)
    nexus.write(image(3))

    message = str(info.value)
    assert "frame 2" in message
    assert all(word in message for word in words), message
    assert nexus.close() == [2]
    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        data = h5[f"{DET}/data"][()]
        for frame in (0, 1, 3):
            np.testing.assert_array_equal(data[frame], pixels(frame))
        np.testing.assert_array_equal(h5[f"{DET}/sequence_number"][()], [0, 1, -1, 3])


def test_a_duplicate_frame_is_rejected_and_the_first_copy_kept(tmp_path: Path) -> None:
    nexus = create(tmp_path)
    nexus.write(image(0))
    nexus.write(image(1))

    with pytest.raises(FrameRejectedError, match="frame 1 arrived twice"):
        nexus.write(image(1, array=pixels(99)))

    assert nexus.frames_written == 2
    assert nexus.close() == []
    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        np.testing.assert_array_equal(h5[f"{DET}/data"][1], pixels(1))


def test_a_series_without_frames_still_closes_into_a_valid_file(tmp_path: Path) -> None:
    nexus = create(tmp_path, {"nimages": 5})

    assert nexus.close() == []

    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        assert h5[DET].attrs["NX_class"] == "NXdetector"
        assert h5[f"{DET}/sequence_number"].shape == (0,)
        assert h5[f"{DET}/missing_frames"].shape == (0,)
        assert "end_time" in h5["/entry"]


def test_create_makes_missing_directories(tmp_path: Path) -> None:
    nexus = create_in(tmp_path, "a/b/scan.h5")
    nexus.close()

    assert (tmp_path / "a" / "b" / "scan.h5").is_file()


def test_create_refuses_an_existing_file(tmp_path: Path) -> None:
    existing = tmp_path / "scan.h5"
    existing.write_bytes(b"precious")

    with pytest.raises(PathRefusedError, match="exists"):
        create_in(tmp_path, "scan.h5")

    assert existing.read_bytes() == b"precious"

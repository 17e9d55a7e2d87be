"""The C batch of direct chunk writes against h5py's write_direct_chunk, the reference."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from protocols import bslz4
from receiver.chunk_io import ChunkWriteError, write_chunks, write_chunks_h5py

SHAPE = (33, 47)


def frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.poisson(2.0, SHAPE).astype("uint32") for _ in range(count)]


def write_file(path: Path, writer, compressed: bool, order: list[int]) -> None:
    pixels = frames(len(order))
    filters = hdf5plugin.Bitshuffle(cname="lz4") if compressed else {}
    with h5py.File(path, "w") as f:
        data = f.create_dataset(
            "data", shape=(len(order), *SHAPE), chunks=(1, *SHAPE), dtype="uint32", **filters
        )
        blobs = [bslz4.compress(pixels[k]) if compressed else pixels[k].tobytes() for k in order]
        writer(data, order, blobs)


@pytest.mark.parametrize("compressed", [False, True], ids=["none", "bslz4"])
def test_batch_writes_the_same_chunks_as_h5py(tmp_path, compressed):
    order = [3, 0, 7, 1, 2, 6, 5, 4]
    write_file(tmp_path / "c.h5", write_chunks, compressed, order)
    write_file(tmp_path / "ref.h5", write_chunks_h5py, compressed, order)

    with h5py.File(tmp_path / "c.h5") as ours, h5py.File(tmp_path / "ref.h5") as ref:
        for k in range(len(order)):
            assert ours["data"].id.read_direct_chunk((k, 0, 0)) == ref["data"].id.read_direct_chunk(
                (k, 0, 0)
            )
        np.testing.assert_array_equal(ours["data"][()], ref["data"][()])
        for k, expected in enumerate(frames(len(order))):
            np.testing.assert_array_equal(ours["data"][k], expected)


def test_a_refused_chunk_names_the_frame_and_counts_what_went_in(tmp_path):
    blob = frames(1)[0].tobytes()
    with h5py.File(tmp_path / "small.h5", "w") as f:
        data = f.create_dataset("data", shape=(2, *SHAPE), chunks=(1, *SHAPE), dtype="uint32")

        with pytest.raises(ChunkWriteError) as info:
            write_chunks(data, [0, 5, 1], [blob, blob, blob])

        assert info.value.written == 1
        assert "frame index 5" in str(info.value)
        np.testing.assert_array_equal(data[0], frames(1)[0])


def test_planes_of_a_stacked_frame_go_to_their_own_chunks_as_with_h5py(tmp_path):
    """Thresholds of a Dectris v2 frame: chunk (frame, plane, 0, 0), one per plane."""
    pixels = frames(6)
    indices, planes = [1, 1, 1, 0, 0, 0], [2, 0, 1, 1, 2, 0]
    blobs = [bslz4.compress(p) for p in pixels]
    for name, writer in (("c.h5", write_chunks), ("ref.h5", write_chunks_h5py)):
        with h5py.File(tmp_path / name, "w") as f:
            data = f.create_dataset(
                "data",
                shape=(2, 3, *SHAPE),
                chunks=(1, 1, *SHAPE),
                dtype="uint32",
                **hdf5plugin.Bitshuffle(cname="lz4"),
            )
            writer(data, indices, blobs, planes=planes)

    with h5py.File(tmp_path / "c.h5") as ours, h5py.File(tmp_path / "ref.h5") as ref:
        np.testing.assert_array_equal(ours["data"][()], ref["data"][()])
        for index, plane, expected in zip(indices, planes, pixels, strict=True):
            np.testing.assert_array_equal(ours["data"][index, plane], expected)

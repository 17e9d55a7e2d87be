"""Batches of HDF5 direct chunk writes, with the GIL released for the whole batch.

``write_chunks`` is the hot path (C loop in ``receiver._chunks``);
``write_chunks_h5py`` does the same with h5py's ``write_direct_chunk`` and
is the reference the tests compare it with. Both store each blob unchanged
as the chunk at ``(index, 0, ...)``, or ``(index, plane, 0, ...)`` for the
planes of a stacked frame (one chunk per threshold or module).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import cffi
import h5py
import numpy as np
from h5py._objects import phil

from protocols.model import Buffer
from receiver._chunks import ffi, lib


class ChunkWriteError(OSError):
    """HDF5 refused a chunk (disk full, file closed, bad size); ``written`` went in before it."""

    def __init__(self, message: str, written: int) -> None:
        super().__init__(message)
        self.written = written


@functools.cache
def _hdf5_write_chunk() -> tuple[object, object]:
    """(library handle, address of ``H5Dwrite_chunk``) of the HDF5 that h5py has loaded.

    Found through the process's memory map, so it is the very same library
    instance (and the same dataset handles) whatever way h5py was built. The
    handle is returned too so that the library stays open with the address.
    """
    abi = cffi.FFI()
    abi.cdef(
        "int H5Dwrite_chunk(int64_t, int64_t, uint32_t, const unsigned long long *, "
        "size_t, const void *);"
    )
    handle = abi.dlopen(str(_loaded_hdf5()))
    address = int(abi.cast("uintptr_t", abi.addressof(handle, "H5Dwrite_chunk")))
    return handle, ffi.cast("void *", address)


def _loaded_hdf5() -> Path:
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.rsplit(None, 1)[-1]
            name = Path(path).name
            if name.startswith("libhdf5") and "_hl" not in name and ".so" in name:
                return Path(path)
    raise ChunkWriteError(
        "the HDF5 library loaded by h5py was not found in /proc/self/maps", written=0
    )


def write_chunks(
    dataset: h5py.Dataset,
    indices: Sequence[int],
    blobs: Sequence[Buffer],
    filter_mask: int = 0,
    planes: Sequence[int] | None = None,
) -> None:
    """Write ``blobs[i]`` as the chunk of frame index ``indices[i]``, all in one C call.

    With ``planes``, ``blobs[i]`` is the chunk of plane ``planes[i]`` of that frame.

    h5py's global lock (``phil``, h5py's own, imported from its internals) is
    held so that no other thread enters HDF5 meanwhile, as HDF5 is not
    thread-safe; the GIL is released, so the receiving workers run in
    parallel.
    """
    count = len(indices)
    if count == 0:
        return
    rank = dataset.ndim
    offsets = np.zeros((count, rank), dtype=np.uint64)
    offsets[:, 0] = indices
    if planes is not None:
        offsets[:, 1] = planes
    sizes = np.fromiter((len(b) for b in blobs), dtype=np.uintp, count=count)
    keep = [ffi.from_buffer(b) for b in blobs]
    buffers = ffi.new("const void *[]", keep)
    with phil:
        written = lib.write_chunks(
            _hdf5_write_chunk()[1],
            dataset.id.id,
            filter_mask,
            rank,
            count,
            ffi.from_buffer("unsigned long long[]", offsets),
            ffi.from_buffer("size_t[]", sizes),
            buffers,
        )
    if written < count:
        raise ChunkWriteError(
            f"HDF5 could not write the chunk of frame index {indices[written]} "
            f"({len(blobs[written])} bytes) to {dataset.file.filename}; {written} chunks "
            "of this batch were written before it",
            written,
        )


def write_chunks_h5py(
    dataset: h5py.Dataset,
    indices: Sequence[int],
    blobs: Sequence[Buffer],
    filter_mask: int = 0,
    planes: Sequence[int] | None = None,
) -> None:
    """The reference: the same chunks through h5py, one call per chunk."""
    origin = (0,) * (dataset.ndim - 1)
    if planes is None:
        for index, blob in zip(indices, blobs, strict=True):
            dataset.id.write_direct_chunk((index, *origin), blob, filter_mask)
        return
    for index, plane, blob in zip(indices, planes, blobs, strict=True):
        dataset.id.write_direct_chunk((index, plane, *origin[1:]), blob, filter_mask)

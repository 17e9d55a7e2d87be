"""One NeXus HDF5 file of one series: frames at the index of their frame number.

Layout: ``/entry`` (NXentry) / ``instrument`` (NXinstrument) / ``<detector>``
(NXdetector) holding ``data`` (one chunk per frame), ``sequence_number`` (the
frame number stored at each index, -1 where a frame is missing),
``missing_frames`` and the header metadata; ``/entry/data`` (NXdata) links to
``data``. Chunks are written with direct chunk writes: bslz4 frames go in as
received under filter 32008, so nothing is decompressed on the way. A frame
of several planes (the thresholds of a Dectris stream v2 frame) is stored
with the planes as the second axis, one chunk per plane as it came.

A multi-module detector (XSpectrum Lambda) is stored the same way: ``data``
is (frames, modules, H, W), one chunk per module and frame, as received; each
module has an NXdetector_module group (``<detector>/<module name>``) giving
its plane in ``data`` (``data_origin``, ``data_size``) and its place in the
full image (``full_image_origin`` [row, column], ``full_image_rotation`` in
quarter turns counter-clockwise, as numpy.rot90), with the full image's
shape in ``<detector>/full_image_shape``; ``module_sequence_number``
(frames x modules) holds the frame number of every stored module chunk, -1
where a module sent nothing (its plane reads as the dataset's fill value).

The dataset grows by doubling and frame numbers are kept in memory, because
resizing and writing a tiny dataset for every frame is what limits the rate
of older receivers. They reach the file at every :meth:`NexusFile.flush`
(the writer calls it about once a second) and at close: ``data`` is then cut
to the frames stored so far and ``sequence_number`` says which they are.

Files are written in HDF5's SWMR mode (single writer, multiple readers;
``libver="latest"``), switched on once the frame dataset exists: another
process opens the file with ``h5py.File(path, "r", swmr=True)`` and sees the
frames of the last flush while the series runs. If the receiver is killed,
the file holds every frame flushed before; HDF5 then still marks it open for
writing, which a reader in SWMR mode ignores and ``daq-recover`` (HDF5's
``h5clear -s``) clears for plain readers.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from protocols.model import Buffer, Image, ModuleLayout, StackedImage
from receiver.assembly import fill_of
from receiver.chunk_io import ChunkWriteError, write_chunks
from receiver.stream_items import ModuleImage

logger = logging.getLogger(__name__)


class FrameRejectedError(ValueError):
    """A frame that cannot go into this file (wrong shape, type, compression or duplicate)."""


STORED_COMPRESSIONS = ("none", "bslz4")
DETECTOR_FIELDS = frozenset(
    {"data", "sequence_number", "missing_frames", "module_sequence_number", "full_image_shape"}
)
"""Names this module writes in the NXdetector group itself."""
TIME_FIELDS = frozenset(
    {"count_time", "frame_time", "exposure_time", "exposure_period", "detector_readout_time"}
)
"""Header fields that are durations in seconds (NXdetector names, Dectris' and STINS' own)."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


class NexusFile:
    """An open series file; create with :meth:`create`, finish with :meth:`close`."""

    def __init__(
        self,
        h5: h5py.File,
        path: Path,
        detector: h5py.Group,
        modules: ModuleLayout | None = None,
        max_frames: int = 10_000_000,
    ) -> None:
        self._h5 = h5
        self._modules = modules
        self._module_numbers: np.ndarray | None = None
        self.path = path
        self.directory = self.path.parent
        self._detector = detector
        self._data: h5py.Dataset | None = None
        self._layout: tuple[tuple[int, ...], np.dtype, str] | None = None
        self._stacked = False
        self._numbers = np.full(0, -1, dtype=np.int64)
        self._extent = 0
        self._discarded: list[int] = []
        self._highest = -1
        self._max_frames = max_frames
        self._sequence: h5py.Dataset | None = None
        self._module_sequence: h5py.Dataset | None = None
        self._closed = False
        self.frames_written = 0
        self.frames_durable = 0
        """Frames written before the last flush: readable now, and after a crash."""

    @classmethod
    def create(
        cls,
        opened: str,
        path: Path,
        detector_name: str,
        meta: dict[str, Any],
        modules: ModuleLayout | None = None,
        module_meta: dict[str, dict[str, Any]] | None = None,
        max_frames: int = 10_000_000,
    ) -> NexusFile:
        """Write the NeXus groups and metadata into the new, empty file ``path``.

        ``opened`` names that very file for HDF5 (``receiver.paths.CreatedFile.proc_path``:
        the file as it was created inside the data root, whatever its name points to now).
        ``modules``: a multi-module detector, whose geometry goes to one
        NXdetector_module group per module (with ``module_meta``, the header
        metadata in which that module differs). ``max_frames``: frame numbers
        from this on are refused (the header's count, or the configured
        bound), so one absurd number cannot make the file or the memory huge.
        """
        h5 = h5py.File(opened, "w", libver="latest")
        try:
            h5.attrs["NX_class"] = "NXroot"
            h5.attrs["default"] = "entry"
            entry = h5.create_group("entry")
            entry.attrs["NX_class"] = "NXentry"
            entry.attrs["default"] = "data"
            entry["start_time"] = _now()
            instrument = entry.create_group("instrument")
            instrument.attrs["NX_class"] = "NXinstrument"
            detector = instrument.create_group(detector_name)
            detector.attrs["NX_class"] = "NXdetector"
            _store_metadata(detector, meta)
            if modules is not None:
                _store_geometry(detector, modules, module_meta or {})
        except BaseException:
            h5.close()
            raise
        return cls(h5, path, detector, modules, max_frames)

    def write(self, image: Image) -> None:
        """Store one frame (see :meth:`write_many`); raise if it is refused."""
        refused = self.write_many([image])
        if refused:
            raise refused[0]

    def write_many(self, images: Sequence[Image]) -> list[FrameRejectedError]:
        """Store frames at the index of their frame number (minus discarded frames below it).

        All accepted frames go to HDF5 in one batch; the refused ones are
        returned, not stored. An I/O error raises :class:`ChunkWriteError`
        after recording what was written before it.
        """
        if self._stacked or (
            self._data is None and images and isinstance(images[0], StackedImage | ModuleImage)
        ):
            return self._write_stacked(images)
        refused: list[FrameRejectedError] = []
        indices: list[int] = []
        blobs: list[Buffer] = []
        for image in images:
            try:
                index = self._place(image)
            except FrameRejectedError as exc:
                refused.append(exc)
                continue
            self._numbers[index] = image.frame
            indices.append(index)
            blobs.append(image.data)
        try:
            write_chunks(self._data, indices, blobs)
        except ChunkWriteError as exc:
            self._numbers[indices[exc.written :]] = -1
            indices = indices[: exc.written]
            raise
        finally:
            self.frames_written += len(indices)
            self._highest = max(self._highest, *indices, -1)
        return refused

    def _write_stacked(self, images: Sequence[Image]) -> list[FrameRejectedError]:
        """:meth:`write_many` for frames of several planes: one chunk per plane, as received.

        A module that sent nothing for a frame leaves its plane unwritten
        (the fill value) and -1 in ``module_sequence_number``.
        """
        refused: list[FrameRejectedError] = []
        frames: list[int] = []
        ends: list[int] = []
        indices: list[int] = []
        planes: list[int] = []
        blobs: list[Buffer] = []
        for image in images:
            if not isinstance(image, StackedImage | ModuleImage):
                refused.append(
                    FrameRejectedError(
                        f"frame {image.frame} is a single plane but the series started with "
                        "frames of several planes; it was not stored"
                    )
                )
                continue
            try:
                index = self._place(image, stacked=True)
            except FrameRejectedError as exc:
                refused.append(exc)
                continue
            self._numbers[index] = image.frame
            frames.append(index)
            for plane, chunk in enumerate(image.chunks()):
                if chunk is None:
                    continue
                indices.append(index)
                planes.append(plane)
                blobs.append(chunk)
                if self._module_numbers is not None:
                    self._module_numbers[index, plane] = image.frame
            ends.append(len(indices))
        try:
            write_chunks(self._data, indices, blobs, planes=planes)
        except ChunkWriteError as exc:
            done = bisect.bisect_right(ends, exc.written)
            self._numbers[frames[done:]] = -1
            if self._module_numbers is not None:
                self._module_numbers[frames[done:]] = -1
            frames = frames[:done]
            raise
        finally:
            self.frames_written += len(frames)
            self._highest = max(self._highest, *frames, -1)
        return refused

    def _place(self, image: Image, stacked: bool = False) -> int:
        """The index where ``image`` goes, once its layout and number are checked."""
        layout = (image.shape, image.dtype, image.compression)
        if image.compression not in STORED_COMPRESSIONS:
            raise FrameRejectedError(
                f"frame {image.frame} is {image.compression!r} data, which is stored only once "
                f'decoded: add {{"kind": "{image.compression}"}} first to the receiver\'s transforms'
            )
        if self._data is None or self._layout is None:
            self._create_dataset(*layout, stacked=stacked)
        elif layout != self._layout:
            shape, dtype, compression = self._layout
            raise FrameRejectedError(
                f"frame {image.frame} has shape {list(image.shape)}, {image.dtype.name}, "
                f"{image.compression} but the series started with {list(shape)}, "
                f"{dtype.name}, {compression}; it was not stored"
            )
        if image.frame >= self._max_frames:
            raise FrameRejectedError(
                f"frame {image.frame} is beyond the series, which has at most "
                f"{self._max_frames} frames (the header's count or max_frames); not stored"
            )
        index = image.frame - bisect.bisect_left(self._discarded, image.frame)
        if index >= self._extent:
            self._reserve(index)
        if self._numbers[index] != -1:
            raise FrameRejectedError(f"frame {image.frame} arrived twice; the first one is kept")
        return index

    def discard(self, frame: int) -> None:
        """Note a frame that takes no place in the file."""
        if frame in self._discarded:
            raise FrameRejectedError(f"frame {frame} arrived twice (flagged discard both times)")
        if frame <= self._highest_frame():
            raise FrameRejectedError(
                f"frame {frame} is flagged discard but arrived after a later stored frame; "
                "stored frames after it keep their places"
            )
        bisect.insort(self._discarded, frame)

    def _highest_frame(self) -> int:
        return int(self._numbers[self._highest]) if self._highest >= 0 else -1

    def missing_frames(self) -> list[int]:
        """Frame numbers with an empty place in the file (below the highest stored one)."""
        numbers = self._numbers[: self._highest + 1]
        return [self._frame_at(int(i)) for i in np.flatnonzero(numbers == -1)]

    def _frame_at(self, index: int) -> int:
        """The frame number that belongs at ``index``, skipping discarded frame numbers."""
        frame = index
        for discarded in self._discarded:
            if discarded <= frame:
                frame += 1
        return frame

    def close(self) -> list[int]:
        """Trim, write the frame numbers and the missing list, close; return the missing frames."""
        missing = self.missing_frames()
        try:
            self._write_numbers()
            if self._sequence is None:
                self._detector.create_dataset("sequence_number", data=self._numbers[:0])
                if self._modules is not None:
                    empty = np.full((0, len(self._modules.modules)), -1, dtype=np.int64)
                    self._detector.create_dataset("module_sequence_number", data=empty)
            self._detector.create_dataset(
                "missing_frames", data=np.asarray(missing, dtype=np.int64)
            )
            self._h5["entry"]["end_time"] = _now()
        finally:
            self._close_once()
        self.frames_durable = self.frames_written
        return missing

    def _close_once(self) -> None:
        """Close the HDF5 file; never a second time, even when the first close failed.

        A close that fails on a full disk leaves h5py's file in a state where
        closing it again crashes the process (segmentation fault).
        """
        if self._closed:
            return
        self._closed = True
        self._h5.close()

    def flush(self) -> None:
        """Make the frames written so far readable by others, and kept if the receiver dies."""
        self._write_numbers()
        self._h5.flush()
        self.frames_durable = self.frames_written

    def _write_numbers(self) -> None:
        """Cut ``data`` to the frames stored so far and write which frame each index holds."""
        if self._data is None or self._sequence is None:
            return
        count = self._highest + 1
        self._data.resize(count, axis=0)
        self._extent = count
        self._sequence.resize(count, axis=0)
        self._sequence[:count] = self._numbers[:count]
        if self._module_sequence is not None and self._module_numbers is not None:
            self._module_sequence.resize(count, axis=0)
            self._module_sequence[:count] = self._module_numbers[:count]

    def abandon(self) -> None:
        """Close after an error without further writes, keeping what is on disk."""
        try:
            self._close_once()
        except (OSError, RuntimeError, ValueError) as exc:
            logger.warning("closing %s after an error failed too: %s", self.path, exc)

    def _create_dataset(
        self, shape: tuple[int, ...], dtype: np.dtype, compression: str, stacked: bool = False
    ) -> None:
        """One chunk per frame, or per plane of a stacked frame (``shape[0]`` planes)."""
        filters: dict[str, Any] = (
            dict(hdf5plugin.Bitshuffle(cname="lz4")) if compression == "bslz4" else {}
        )
        if self._modules is not None:
            filters["fillvalue"] = _module_fill(self._modules, dtype)
        self._data = self._detector.create_dataset(
            "data",
            shape=(0, *shape),
            maxshape=(None, *shape),
            chunks=(1, 1, *shape[1:]) if stacked else (1, *shape),
            dtype=dtype,
            **filters,
        )
        if self._modules is not None:
            self._module_numbers = np.full((0, shape[0]), -1, dtype=np.int64)
            for placement in self._modules.modules:
                self._detector[placement.name]["data_size"] = np.array([1, *shape[1:]], np.int64)
        self._stacked = stacked
        self._layout = (shape, dtype, compression)
        self._data.attrs["interpretation"] = "image"
        nxdata = self._h5["entry"].create_group("data")
        nxdata.attrs["NX_class"] = "NXdata"
        nxdata.attrs["signal"] = "data"
        nxdata.attrs["axes"] = ["."] * (len(shape) + 1)
        nxdata["data"] = h5py.SoftLink(self._data.name)
        self._sequence = self._detector.create_dataset(
            "sequence_number", shape=(0,), maxshape=(None,), dtype=np.int64, fillvalue=-1
        )
        if self._modules is not None:
            modules = len(self._modules.modules)
            self._module_sequence = self._detector.create_dataset(
                "module_sequence_number",
                shape=(0, modules),
                maxshape=(None, modules),
                dtype=np.int64,
                fillvalue=-1,
            )
        self._h5.swmr_mode = True

    def _reserve(self, index: int) -> None:
        """Grow the dataset (and the frame-number list) to hold ``index``, by doubling."""
        if self._data is None:
            raise RuntimeError(f"frame {index} placed before the dataset was created")
        self._extent = max(index + 1, 2 * self._extent, 16)
        self._data.resize(self._extent, axis=0)
        if self._extent <= len(self._numbers):
            return
        new_capacity = self._extent
        grown = np.full(new_capacity, -1, dtype=np.int64)
        grown[: len(self._numbers)] = self._numbers
        self._numbers = grown
        if self._module_numbers is not None:
            modules = np.full((new_capacity, self._module_numbers.shape[1]), -1, dtype=np.int64)
            modules[: len(self._module_numbers)] = self._module_numbers
            self._module_numbers = modules


def _store_geometry(
    detector: h5py.Group, layout: ModuleLayout, module_meta: dict[str, dict[str, Any]]
) -> None:
    """One NXdetector_module per module: its plane in ``data`` and its place in the full image."""
    shape = detector.create_dataset("full_image_shape", data=np.array(layout.full_shape, np.int64))
    shape.attrs["description"] = "rows and columns of the full image the modules are placed in"
    for index, placement in enumerate(layout.modules):
        group = detector.create_group(placement.name)
        group.attrs["NX_class"] = "NXdetector_module"
        group["data_origin"] = np.array([index, 0, 0], np.int64)
        group["data_origin"].attrs["description"] = (
            "this module's plane in data: data[:, data_origin[0]] (frames x H x W)"
        )
        group["full_image_origin"] = np.array([placement.y, placement.x], np.int64)
        group["full_image_origin"].attrs["description"] = (
            "row and column of the full image where the turned module frame starts"
        )
        group["full_image_rotation"] = placement.rotation % 4
        group["full_image_rotation"].attrs["description"] = (
            "quarter turns counter-clockwise (numpy.rot90) that turn the module frame the way "
            "it sits in the full image: full[r:r+h, c:c+w] = numpy.rot90(plane, k)"
        )
        group["stream"] = placement.endpoint
        _store_metadata(group, module_meta.get(placement.name, {}))


def _module_fill(layout: ModuleLayout, dtype: np.dtype) -> Any:
    """The layout's fill value in ``dtype``, for the planes a module did not send."""
    try:
        return fill_of(layout, dtype)
    except ValueError as exc:
        raise FrameRejectedError(str(exc)) from None


def _store_metadata(group: h5py.Group, meta: dict[str, Any]) -> None:
    """Header metadata as NeXus fields; nested objects become groups, odd values JSON text."""
    for key, value in meta.items():
        name = str(key).replace("/", "_")
        if isinstance(value, dict):
            sub = group.create_group(name)
            sub.attrs["NX_class"] = "NXcollection"
            _store_metadata(sub, value)
        elif value is None:
            continue
        else:
            group[name] = _as_field(value)
            if name in TIME_FIELDS and group[name].dtype.kind in "iuf":
                group[name].attrs["units"] = "s"


def _as_field(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    try:
        array = np.asarray(value)
    except ValueError:
        return json.dumps(value)
    if array.dtype.kind in "biuf":
        return array
    if array.dtype.kind == "U":
        return array.astype(object)
    return json.dumps(value)

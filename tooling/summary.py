"""What a beamline user checks first in a file a demo wrote: layout, count, order, content."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the bslz4 filter for reading)
import numpy as np

from sim.frames import synthetic_frame


def summarize(path: Path, detector: str = "detector") -> None:
    """Print what a beamline user checks first: layout, frame count, order, content."""
    with h5py.File(path) as f:
        group = f[f"entry/instrument/{detector}"]
        data = group["data"]
        numbers = group["sequence_number"][()]
        filters = data.id.get_create_plist()
        codec = "bslz4 (filter 32008)" if filters.get_nfilters() else "none"
        first, last = data[0], data[-1]
        print(f"file: {path}")
        print(f"  /entry/instrument/{detector}/data: {data.shape} {data.dtype}, {codec}")
        link = f["entry/data"].get("data", getlink=True).path
        print(f"  chunks: {data.chunks}, /entry/data/data links to {link}")
        ordered = bool(np.array_equal(numbers, np.arange(len(numbers))))
        print(
            f"  sequence_number: {numbers[0]}..{numbers[-1]} ({'in order' if ordered else 'NOT in order'})"
        )
        print(f"  missing frames: {list(group['missing_frames'][()]) or 'none'}")
        same = np.array_equal(
            first, synthetic_frame(0, first.shape, data.dtype)
        ) and np.array_equal(last, synthetic_frame(len(data) - 1, last.shape, data.dtype))
        print(f"  first/last frame equal to what was sent: {same}")
        print(f"  frame 0: min {first.min()}, max {first.max()}, mean {first.mean():.2f}")

"""``daq-recover FILE...``: make the file of a receiver that was killed readable by any reader.

A receiver writes its files in HDF5's SWMR mode and flushes them about once a
second, so a killed receiver leaves every frame flushed before the kill on
disk. HDF5 still marks such a file as open for writing: a reader in SWMR
mode (``h5py.File(path, "r", swmr=True)``) opens it anyway, a plain reader
refuses it until the mark is cleared. This clears it with HDF5's own tool
(``h5clear -s``, Debian's hdf5-tools) and then says what the file holds:
``sequence_number`` gives the frame stored at each index (-1: none).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

H5CLEAR = "h5clear"


class RecoverError(RuntimeError):
    """A file that cannot be recovered; the text says why."""


def recover(path: Path) -> str:
    """Clear the open-for-writing mark of ``path`` and describe the frames it holds."""
    if not path.is_file():
        raise RecoverError(f"{path}: no such file")
    tool = shutil.which(H5CLEAR)
    if tool is None:
        raise RecoverError(
            f"{H5CLEAR} not found: install Debian's hdf5-tools (scripts/setup-env does)"
        )
    result = subprocess.run(
        [tool, "-s", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise RecoverError(f"{path}: h5clear failed: {reason[-1] if reason else result.returncode}")
    return describe(path)


def describe(path: Path) -> str:
    """One line: how many frames the file holds, from its ``sequence_number`` datasets."""
    try:
        with h5py.File(path, "r") as h5:
            numbers = _sequence_numbers(h5)
    except OSError as exc:
        raise RecoverError(f"{path}: not readable as HDF5 after h5clear: {exc}") from None
    if numbers is None:
        return f"{path}: readable, no frames (the series ended before its first frame)"
    stored = numbers[numbers >= 0]
    missing = int(np.count_nonzero(numbers < 0))
    if stored.size == 0:
        return f"{path}: readable, no frames"
    return (
        f"{path}: readable, {stored.size} frames (frame numbers {int(stored.min())}.."
        f"{int(stored.max())}), {missing} places empty"
    )


def _sequence_numbers(h5: h5py.File) -> np.ndarray | None:
    instrument = h5.get("entry/instrument")
    if instrument is None:
        return None
    for detector in instrument.values():
        if "sequence_number" in detector:
            numbers: np.ndarray = detector["sequence_number"][()]
            return numbers
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="daq-recover",
        description="Make the files of a killed receiver readable without SWMR mode "
        "(clears HDF5's open-for-writing mark with h5clear -s) and say what each holds.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="HDF5 files")
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        try:
            print(recover(path))
        except RecoverError as exc:
            print(f"daq-recover: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())

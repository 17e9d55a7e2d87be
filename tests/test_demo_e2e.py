"""The README's main command: daq-demo runs the whole Tango chain and checks its file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the bslz4 filter for reading
import pytest
import silx.io.nxdata

from tests.helpers import VENV_BIN

pytestmark = pytest.mark.e2e


def test_daq_demo_acquires_through_tango_and_summarizes_the_file(tmp_path: Path) -> None:
    args = ["--data-root", str(tmp_path), "--triggers", "3", "--frames-per-trigger", "4"]
    result = subprocess.run(
        [str(VENV_BIN / "daq-demo"), *args, "--frame-time", "0.01"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DetectorDevice det01 ON" in result.stdout
    assert "ready; last series: 12 of 12 frames into" in result.stdout
    assert "first/last frame equal to what was sent: True" in result.stdout
    (path,) = tmp_path.glob("tango_*.h5")
    with h5py.File(path) as f:
        assert f["/entry/instrument/det01/data"].shape == (12, 1065, 1030)
        assert f["/entry/instrument/det01/data"].attrs["interpretation"] == "image"
        assert f["/entry/instrument/det01/count_time"].attrs["units"] == "s"
        default = silx.io.nxdata.get_default(f)
        assert default is not None, "a viewer opening the file finds no default plot"
        assert default.signal.shape == (12, 1065, 1030)
        assert default.interpretation == "image"

"""A real Tango database with det01 configured in it, for the end-to-end tests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the bslz4 filter for reading
import numpy as np
import tango

from sim.frames import synthetic_frame
from tests.helpers import Processes, wait_until
from tooling.ports import free_port
from tooling.tango_db import DEFAULT_CONFIG, load_config, start_database, tango_env

DEVICE = "sim/detector/det01"
SHAPE = (48, 40)


@dataclass
class Bench:
    """The database and what the tests need to reach and configure det01."""

    tango_host: str
    data_root: Path
    processes: Processes
    stream: str
    trigger_input: str

    @property
    def env(self) -> dict[str, str]:
        return tango_env(self.tango_host)

    def load(self, **properties: str | list[str]) -> None:
        values = {
            "StreamAddress": self.stream,
            "TriggerInputAddress": self.trigger_input,
            "FrameShape": [str(n) for n in SHAPE],
            "DataRoot": str(self.data_root),
            "ReceiverHttpPort": "-1",
            "ArmTimeout": "5",
            "CloseTimeout": "5",
            **properties,
        }
        load_config(
            DEFAULT_CONFIG,
            self.tango_host,
            {f"{DEVICE}/{k}": [v] if isinstance(v, str) else v for k, v in values.items()},
        )

    def start_server(self) -> subprocess.Popen:
        proc = self.processes.start("DetectorDevice", "det01", env=self.env)
        wait_until(lambda: self._exported(proc), 30, "DetectorDevice det01 to export its device")
        return proc

    def _exported(self, proc: subprocess.Popen) -> bool:
        assert proc.poll() is None, self.processes.output(proc)
        try:
            self.proxy().ping()
        except tango.DevFailed:
            return False
        return True

    def proxy(self) -> tango.DeviceProxy:
        return tango.DeviceProxy(f"tango://{self.tango_host}/{DEVICE}")


def running_bench(root: Path) -> Iterator[Bench]:
    """A database on a free port and free addresses for det01; everything ends on exit."""
    data_root = root / "data"
    data_root.mkdir()
    processes = Processes(root)
    port = free_port()
    db = start_database(port, root / "tango.db", root / "database.log")
    try:
        yield Bench(
            f"127.0.0.1:{port}",
            data_root,
            processes,
            f"tcp://127.0.0.1:{free_port()}",
            f"tcp://127.0.0.1:{free_port()}",
        )
    finally:
        processes.stop_all()
        db.terminate()
        db.wait(timeout=10)


def acquire(
    device: tango.DeviceProxy,
    filename: str,
    mode: str,
    n_triggers: int,
    per_trigger: int = 1,
    trigger: Callable[[], None] | None = None,
) -> None:
    """What a MAX IV scan does: Stop, settings, Arm, triggers, poll State until ON."""
    device.Stop()
    device.TriggerMode = mode
    device.DestinationFilename = filename
    device.ExposureTime = 0.002
    device.FrameTime = 0.004
    device.nTriggers = n_triggers
    device.nFramesPerTrigger = per_trigger
    device.Arm()
    for point in range(1, n_triggers + 1 if trigger else 1):
        assert trigger is not None
        trigger()
        wait_until(lambda p=point: device.nFramesAcquired >= p * per_trigger, 10, f"point {point}")
    wait_until(lambda: device.state() != tango.DevState.RUNNING, 20, "the series to end")
    assert device.state() == tango.DevState.ON, device.status()


def assert_file_holds(path: Path, frames: int) -> None:
    with h5py.File(path) as f:
        data = f["/entry/instrument/det01/data"]
        assert data.shape == (frames, *SHAPE)
        np.testing.assert_array_equal(f["/entry/instrument/det01/sequence_number"], range(frames))
        for k in (0, frames - 1):
            np.testing.assert_array_equal(data[k], synthetic_frame(k, SHAPE, "uint16"))

"""``daq-demo``: the main job, a simulated acquisition through Tango, end to end on 127.0.0.1.

It does what a beamline does, with every part real: starts the Tango database
(pytango's DatabaseDS, sqlite), loads ``tango_db_config/det01.json`` into it,
starts ``DetectorDevice det01`` from the database (simulator backend, embedded
receiver), drives the device as a MAX IV scan does (settings, Arm, poll State
until ON), and prints a summary of the HDF5 file read back with h5py.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime
from pathlib import Path

import tango

from sim.cli_support import OneLineParser, int_at_least, positive_seconds
from tooling.ports import free_port
from tooling.processes import DemoError, child_process, wait_for
from tooling.stream_demo import data_root_of, last_line
from tooling.summary import summarize
from tooling.tango_db import DEFAULT_CONFIG, TangoDbError, load_config, start_database, tango_env

logger = logging.getLogger("daq-demo")
BIN = Path(sys.executable).parent
DEVICE = "sim/detector/det01"


def run(data_root: Path, n_triggers: int, frames_per_trigger: int, frame_time: float) -> Path:
    """Run the whole chain once, below ``data_root`` (which exists); return the file written."""
    run_dir = data_root / f"tango_{datetime.now():%Y%m%d_%H%M%S}"
    run_dir.mkdir()
    port = free_port()
    tango_host = f"127.0.0.1:{port}"
    database = start_database(port, run_dir / "tango.db", run_dir / "database.log")
    try:
        http = free_port()
        load_config(
            DEFAULT_CONFIG,
            tango_host,
            {
                f"{DEVICE}/DataRoot": [str(data_root)],
                f"{DEVICE}/StreamAddress": [f"tcp://127.0.0.1:{free_port()}"],
                f"{DEVICE}/TriggerInputAddress": [f"tcp://127.0.0.1:{free_port()}"],
                f"{DEVICE}/ReceiverHttpPort": [str(http)],
            },
        )
        print(f"Tango database on {tango_host}, {DEFAULT_CONFIG.name} loaded")
        server_args = [str(BIN / "DetectorDevice"), "det01"]
        server_log = run_dir / "DetectorDevice.log"
        with child_process(server_args, server_log, tango_env(tango_host)) as server:
            device = tango.DeviceProxy(f"tango://{tango_host}/{DEVICE}")

            def on() -> bool:
                if server.poll() is not None:
                    raise DemoError(f"DetectorDevice det01 exited: {last_line(server_log)}")
                return bool(_state(device) == tango.DevState.ON)

            wait_for(on, 30, f"DetectorDevice det01 ON (its log: {server_log})")
            print(f"DetectorDevice det01 ON: {device.status()}")
            print(f"  live view: http://127.0.0.1:{http}/")
            return _acquire(
                device, run_dir.name + ".h5", n_triggers, frames_per_trigger, frame_time
            )
    finally:
        database.terminate()
        database.wait(timeout=15)


def _state(device: tango.DeviceProxy) -> tango.DevState | None:
    try:
        return device.state()
    except tango.DevFailed:
        return None


def _acquire(
    device: tango.DeviceProxy, filename: str, n_triggers: int, per_trigger: int, frame_time: float
) -> Path:
    """The client side, as a MAX IV scan writes it."""
    device.Stop()
    device.TriggerMode = "INTERNAL"
    device.DestinationFilename = filename
    device.ExposureTime = frame_time * 0.8
    device.FrameTime = frame_time
    device.nTriggers = n_triggers
    device.nFramesPerTrigger = per_trigger
    expected = n_triggers * per_trigger
    started = time.monotonic()
    device.Arm()
    print(f"Arm: {device.state()} - {device.status()}")
    shown = -1
    while device.state() == tango.DevState.RUNNING:
        frames = device.nFramesAcquired
        if frames != shown:
            print(f"  RUNNING {frames:6d}/{expected} frames acquired")
            shown = frames
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    if device.state() != tango.DevState.ON:
        raise DemoError(f"the device is {device.state()}: {device.status()}")
    print(f"ON after {elapsed:.1f} s: {device.status()}")
    return Path(device.ReceiverFile)


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog="daq-demo",
        description="Start a Tango database and DetectorDevice det01 (simulated detector, "
        "embedded receiver) on 127.0.0.1, acquire a series through the device, summarize the file.",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="where the file and a run directory of logs go; must exist (default: demo-data, "
        "created if missing)",
    )
    parser.add_argument(
        "--triggers", type=int_at_least(1), default=10, help="nTriggers (default %(default)s)"
    )
    parser.add_argument(
        "--frames-per-trigger",
        type=int_at_least(1),
        default=50,
        help="nFramesPerTrigger (default %(default)s)",
    )
    parser.add_argument(
        "--frame-time",
        type=positive_seconds,
        default=0.004,
        help="FrameTime in s; ExposureTime is 80%% of it (default %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    data_root = data_root_of(parser, args.data_root)
    logging.basicConfig(level=logging.WARNING)
    try:
        path = run(data_root, args.triggers, args.frames_per_trigger, args.frame_time)
        summarize(path, "det01")
    except (DemoError, TangoDbError, tango.DevFailed) as exc:
        reason = exc.args[0].desc if isinstance(exc, tango.DevFailed) else exc
        print(f"daq-demo: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

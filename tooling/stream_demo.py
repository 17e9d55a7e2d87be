"""``daq-stream-demo``: a receiver and a generator on 127.0.0.1, then a summary of the file.

It starts a ``stream-receiver`` and a ``daq-generator`` as separate processes,
exactly as they run at a beamline, follows the receiver over its HTTP API and
reads the resulting NeXus file back with plain h5py + hdf5plugin.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from tooling.ports import free_port
from tooling.processes import DemoError, child_process, wait_for
from tooling.summary import summarize

logger = logging.getLogger("daq-stream-demo")
BIN = Path(sys.executable).parent


def _status(url: str) -> dict[str, Any] | None:
    """The receiver's ``/status``; None while it does not answer with a JSON object."""
    try:
        status = requests.get(f"{url}/status", timeout=2).json()
    except requests.RequestException:
        return None
    return status if isinstance(status, dict) else None


def run(data_root: Path, frames: int, rate: float, shape: list[int], workers: int) -> Path:
    data_root.mkdir(parents=True, exist_ok=True)
    filename = f"demo_{datetime.now():%Y%m%d_%H%M%S}.h5"
    stream, http = free_port(), free_port()
    url = f"http://127.0.0.1:{http}"
    receiver_args = [
        str(BIN / "stream-receiver"),
        "--connect", f"tcp://127.0.0.1:{stream}",
        "--http", f"127.0.0.1:{http}",
        "--data-root", str(data_root),
        "--workers", str(workers),
    ]  # fmt: skip
    with child_process(receiver_args, data_root / "stream-receiver.log") as receiver:
        wait_for(lambda: receiver.poll() is None and _status(url), 30, "the receiver's HTTP API")
        print(f"receiver ready: {url}/status  (live view: {url}/)")
        generator_args = [
            str(BIN / "daq-generator"),
            "--bind", f"tcp://127.0.0.1:{stream}",
            "--frames", str(frames),
            "--rate", str(rate),
            "--shape", *map(str, shape),
            "--dtype", "uint16",
            "--compression", "bslz4",
            "--filename", filename,
        ]  # fmt: skip
        started = time.monotonic()
        with child_process(generator_args, data_root / "daq-generator.log") as generator:
            status = _follow(url, frames)
            if generator.wait(timeout=60) != 0:
                raise DemoError(f"daq-generator failed; see {data_root / 'daq-generator.log'}")
        elapsed = time.monotonic() - started
    if status["state"] != "idle":
        raise DemoError(f"the receiver reports {status['state']}: {status['error']}")
    path = Path(status["filename"])
    print(f"acquired {status['frames_written']} frames in {elapsed:.1f} s")
    return path


def _follow(url: str, frames: int) -> dict[str, Any]:
    """Print progress until the receiver has closed the series."""
    shown = -1
    deadline = time.monotonic() + 120 + frames
    while time.monotonic() < deadline:
        status = _status(url) or {}
        received = status.get("frames_received", 0)
        if received != shown and status.get("series_count"):
            print(f"  {status['state']:8s} {received:6d}/{frames} frames received")
            shown = received
        if status.get("series_count") and not status.get("series_open"):
            return status
        time.sleep(0.5)
    raise DemoError("the series did not end in time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="daq-stream-demo",
        description="Stream a simulated series into a receiver on 127.0.0.1 and summarize the file.",
    )
    parser.add_argument("--data-root", type=Path, default=Path("demo-data"), help="where files go")
    parser.add_argument("--frames", type=int, default=500, help="frames in the series")
    parser.add_argument("--rate", type=float, default=250.0, help="frames per second (0 = max)")
    parser.add_argument("--shape", type=int, nargs=2, default=[1065, 1030], help="frame shape")
    parser.add_argument("--workers", type=int, default=2, help="receiver workers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        path = run(args.data_root.resolve(), args.frames, args.rate, args.shape, args.workers)
        summarize(path)
    except DemoError as exc:
        print(f"daq-stream-demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

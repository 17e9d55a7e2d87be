"""``daq-demo``: a simulated acquisition end to end on 127.0.0.1, then a summary of the file.

It starts a ``stream-receiver`` and a ``daq-generator`` as separate processes,
exactly as they run at a beamline, follows the receiver over its HTTP API and
reads the resulting NeXus file back with plain h5py + hdf5plugin.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the bslz4 filter for reading)
import numpy as np
import requests

from sim.frames import synthetic_frame
from sim.ports import free_port

logger = logging.getLogger("daq-demo")
BIN = Path(sys.executable).parent


class DemoError(RuntimeError):
    """The demo could not complete; the message says which part failed."""


def _wait(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")


def _status(url: str) -> dict | None:
    try:
        return requests.get(f"{url}/status", timeout=2).json()
    except requests.RequestException:
        return None


@contextlib.contextmanager
def _process(args: list[str], log: Path):
    """A child process that is always ended, by its PID, when the block exits."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
    with _process(receiver_args, data_root / "stream-receiver.log") as receiver:
        _wait(lambda: receiver.poll() is None and _status(url), 30, "the receiver's HTTP API")
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
        with _process(generator_args, data_root / "daq-generator.log") as generator:
            status = _follow(url, frames)
            if generator.wait(timeout=60) != 0:
                raise DemoError(f"daq-generator failed; see {data_root / 'daq-generator.log'}")
        elapsed = time.monotonic() - started
    if status["state"] != "idle":
        raise DemoError(f"the receiver reports {status['state']}: {status['error']}")
    path = Path(status["filename"])
    print(f"acquired {status['frames_written']} frames in {elapsed:.1f} s")
    return path


def _follow(url: str, frames: int) -> dict:
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


def summarize(path: Path) -> None:
    """Print what a beamline user checks first: layout, frame count, order, content."""
    with h5py.File(path) as f:
        detector = f["entry/instrument/detector"]
        data = detector["data"]
        numbers = detector["sequence_number"][()]
        filters = data.id.get_create_plist()
        codec = "bslz4 (filter 32008)" if filters.get_nfilters() else "none"
        first, last = data[0], data[-1]
        print(f"file: {path}")
        print(f"  /entry/instrument/detector/data: {data.shape} {data.dtype}, {codec}")
        link = f["entry/data"].get("data", getlink=True).path
        print(f"  chunks: {data.chunks}, /entry/data/data links to {link}")
        ordered = bool(np.array_equal(numbers, np.arange(len(numbers))))
        print(
            f"  sequence_number: {numbers[0]}..{numbers[-1]} ({'in order' if ordered else 'NOT in order'})"
        )
        print(f"  missing frames: {list(detector['missing_frames'][()]) or 'none'}")
        same = np.array_equal(
            first, synthetic_frame(0, first.shape, data.dtype)
        ) and np.array_equal(last, synthetic_frame(len(data) - 1, last.shape, data.dtype))
        print(f"  first/last frame equal to what was sent: {same}")
        print(f"  frame 0: min {first.min()}, max {first.max()}, mean {first.mean():.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="daq-demo",
        description="Run a simulated acquisition end to end on 127.0.0.1 and summarize the file.",
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
        print(f"daq-demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

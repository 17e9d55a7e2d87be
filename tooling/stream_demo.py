"""``daq-stream-demo``: a receiver and a generator on 127.0.0.1, then a summary of the file.

It starts a ``stream-receiver`` and a ``daq-generator`` as separate processes,
exactly as they run at a beamline, follows the receiver over its HTTP API and
reads the resulting NeXus file back with plain h5py + hdf5plugin.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from receiver.config import ReceiverConfig
from sim.cli_support import OneLineParser, float_at_least, int_at_least
from tooling.ports import free_port
from tooling.processes import DemoError, child_process, wait_for
from tooling.summary import summarize

logger = logging.getLogger("daq-stream-demo")
BIN = Path(sys.executable).parent
DEFAULT_DATA_ROOT = Path("demo-data")
MAX_WORKERS = next(
    int(meta.le) for meta in ReceiverConfig.model_fields["workers"].metadata if hasattr(meta, "le")
)


def _status(url: str) -> dict[str, Any] | None:
    """The receiver's ``/status``; None while it does not answer with a JSON object."""
    try:
        status = requests.get(f"{url}/status", timeout=2).json()
    except requests.RequestException:
        return None
    return status if isinstance(status, dict) else None


def run(data_root: Path, frames: int, rate: float, shape: list[int], workers: int) -> Path:
    """Stream one series into a receiver writing below ``data_root`` (which exists)."""
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
    receiver_log = data_root / "stream-receiver.log"
    with child_process(receiver_args, receiver_log) as receiver:

        def serving() -> dict[str, Any] | None:
            if receiver.poll() is not None:
                raise DemoError(f"stream-receiver exited: {last_line(receiver_log)}")
            return _status(url)

        wait_for(serving, 30, "the receiver's HTTP API")
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
        generator_log = data_root / "daq-generator.log"
        with child_process(generator_args, generator_log) as generator:
            status = _follow(url, frames, generator, generator_log)
            if generator.wait(timeout=60) != 0:
                raise DemoError(f"daq-generator failed: {last_line(generator_log)}")
        elapsed = time.monotonic() - started
    if status["state"] != "idle":
        raise DemoError(f"the receiver reports {status['state']}: {status['error']}")
    path = Path(status["filename"])
    print(f"acquired {status['frames_written']} frames in {elapsed:.1f} s")
    return path


def _follow(
    url: str, frames: int, generator: subprocess.Popen[bytes], generator_log: Path
) -> dict[str, Any]:
    """Print progress until the receiver has closed the series; fail at once if the sender did."""
    shown = -1
    deadline = time.monotonic() + 120 + frames
    while time.monotonic() < deadline:
        if generator.poll() not in (None, 0):
            raise DemoError(f"daq-generator failed: {last_line(generator_log)}")
        status = _status(url) or {}
        received = status.get("frames_received", 0)
        if received != shown and status.get("series_count"):
            print(f"  {status['state']:8s} {received:6d}/{frames} frames received")
            shown = received
        if status.get("series_count") and not status.get("series_open"):
            return status
        time.sleep(0.5)
    raise DemoError("the series did not end in time")


def last_line(log: Path) -> str:
    """The last line a child wrote (its refusal or error), or where to look."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1].strip() if lines else f"no output; see {log}"


def _workers(text: str) -> int:
    count = int_at_least(1)(text)
    if count > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_WORKERS}, got {count}")
    return count


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog="daq-stream-demo",
        description="Stream a simulated series into a receiver on 127.0.0.1 and summarize the file.",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="where the file and the logs go; must exist (default: demo-data, created if missing)",
    )
    parser.add_argument(
        "--frames",
        type=int_at_least(1),
        default=500,
        help="frames in the series (default %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=float_at_least(0),
        default=250.0,
        help="frames per second, 0 for as fast as possible (default %(default)s)",
    )
    parser.add_argument(
        "--shape",
        type=int_at_least(1),
        nargs=2,
        default=[1065, 1030],
        metavar=("ROWS", "COLUMNS"),
        help="frame shape (default 1065 1030)",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default=2,
        help=f"receiver workers, 1 to {MAX_WORKERS} (default %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    data_root = data_root_of(parser, args.data_root)
    logging.basicConfig(level=logging.INFO)
    try:
        path = run(data_root, args.frames, args.rate, args.shape, args.workers)
        summarize(path)
    except DemoError as exc:
        print(f"daq-stream-demo: {exc}", file=sys.stderr)
        return 1
    return 0


def data_root_of(parser: OneLineParser, given: Path | None) -> Path:
    """``--data-root`` as given (it must exist, as for stream-receiver), or the default, created."""
    if given is None:
        DEFAULT_DATA_ROOT.mkdir(exist_ok=True)
        return DEFAULT_DATA_ROOT.resolve()
    if not given.is_dir():
        parser.error(f"--data-root {given}: no such directory; create it or pass another")
    return given.resolve()


if __name__ == "__main__":
    sys.exit(main())

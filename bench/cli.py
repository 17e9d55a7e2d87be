"""``daq-bench``: the receiver's limits against a bare ZeroMQ sink and a bare file write."""

from __future__ import annotations

import argparse
import logging
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import camera, lambda_, pilatus
from bench.measure import (
    FORWARD_MODES,
    BenchError,
    Case,
    Measurement,
    ReceiverProcess,
    make_case,
    measure_sink,
    measure_write,
    parse_size,
)
from bench.report import plot, summarize, table, to_json
from sim.cli_support import OneLineParser, float_at_least, int_at_least

DEFAULT_SIZES = ["20kB", "200kB", "2MB", "20MB"]


def _size(text: str) -> str:
    """A frame size as ``--sizes`` takes it (kept as text: it labels the results)."""
    try:
        size = parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size such as 20kB, 2MB or 123456 (bytes)"
        ) from None
    if size < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: a frame holds at least 2 bytes")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="daq-bench",
        description="Measure the stream-receiver (separate processes on 127.0.0.1) against a "
        "bare ZeroMQ PULL sink, a bare sequential file write of the same bytes, and a bare "
        "sink that writes what it receives.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one repeat, less data: under 2 min (default: off)"
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=_size,
        default=DEFAULT_SIZES,
        help="frame sizes such as 20kB, 2MB or 123456 (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        nargs="+",
        type=int_at_least(1),
        default=[1, 2, 4],
        help="worker counts (default: %(default)s)",
    )
    parser.add_argument(
        "--io-threads",
        nargs="+",
        type=int_at_least(1),
        default=[1],
        help="ZeroMQ I/O thread counts (default: %(default)s)",
    )
    parser.add_argument(
        "--modes", nargs="+", choices=["write", "no-write"], default=["write", "no-write"],
        help="with and/or without file writing (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--forward", nargs="+", choices=FORWARD_MODES, default=list(FORWARD_MODES),
        help="the receiver without a forwarder (none), with one bound and no consumer (bound, "
        "as deployed from a MAX IV entry), and with a consumer (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--receiver-tree",
        type=Path,
        metavar="DIR",
        help="run the receiver of this checkout (C extensions built in place) instead, "
        "to compare commits (default: this one)",
    )
    parser.add_argument(
        "--repeat",
        type=int_at_least(1),
        help="runs per configuration (default 3, with --quick 1)",
    )
    parser.add_argument(
        "--bytes-per-run",
        type=float_at_least(1e-6),
        metavar="GB",
        help="data per run in GB (default 2, with --quick 0.4)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("."),
        help="where files are written, a real disk; must exist (default: the current directory)",
    )
    parser.add_argument(
        "--pilatus",
        type=int_at_least(1),
        metavar="FRAMES",
        help="instead: a Pilatus3 2M CBF stream of FRAMES frames at 250 frames/s into the "
        "receiver (cbf transform, writing) for each --workers count (default: off)",
    )
    parser.add_argument(
        "--lambda",
        dest="lambda_frames",
        type=int_at_least(1),
        metavar="FRAMES",
        help="instead: ForMAX's four-module Lambda windmill, FRAMES frames at 500 frames/s "
        "into the receiver (writing, forwarding to a consumer), then the whole chain over the "
        "fake SDK as fast as it goes, for each --workers count (default: off)",
    )
    parser.add_argument(
        "--camera",
        action="append",
        choices=sorted(camera.CAMERAS),
        help="instead: the whole camera chain (fake SDK, camera-streamer, receiver writing) at "
        "the camera's full frame rate, for each --workers count; repeat for both "
        "(default: off)",
    )
    parser.add_argument(
        "--camera-frames",
        type=int_at_least(1),
        default=300,
        metavar="FRAMES",
        help="frames per --camera run (default %(default)s)",
    )
    parser.add_argument(
        "--json", type=Path, help="write the results as JSON here (default: not written)"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        help="write a PNG plot here, needs matplotlib (default: not written)",
    )
    return parser


def _cases(args: argparse.Namespace) -> list[Case]:
    target = int((args.bytes_per_run or (0.4 if args.quick else 2.0)) * 1e9)
    min_frames = 20 if args.quick else 100
    return [make_case(size, target, min_frames, 20_000) for size in args.sizes]


def run(args: argparse.Namespace, data_dir: Path) -> list[Measurement]:
    repeats = args.repeat or (1 if args.quick else 3)
    cases = _cases(args)
    results: list[Measurement] = []
    for _ in range(repeats):
        for case in cases:
            results.append(measure_sink(case, max(args.io_threads), data_dir))
            results.append(measure_write(case, data_dir))
            if "write" in args.modes:
                results.append(measure_sink(case, max(args.io_threads), data_dir, write=True))
            logging.info("baselines %s done", case.label)
        for write in (mode == "write" for mode in args.modes):
            for workers in args.workers:
                for io_threads in args.io_threads:
                    for forward in args.forward:
                        receiver = ReceiverProcess(
                            workers, io_threads, write, data_dir,
                            forward=forward, tree=args.receiver_tree,
                        )  # fmt: skip
                        try:
                            for case in cases:
                                results.append(receiver.measure(case))
                        finally:
                            receiver.close()
                        logging.info(
                            "receiver write=%s %d workers %d io forward %s done",
                            write, workers, io_threads, forward,
                        )  # fmt: skip
    return results


def _pilatus(frames: int, workers: list[int], data_dir: Path) -> None:
    for count in workers:
        print(pilatus.measure(count, frames, data_dir).line(), flush=True)


def _one_case(run_case: Callable[[], None], data_dir: Path) -> int:
    try:
        run_case()
    except BenchError as exc:
        print(f"daq-bench: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="daq-bench: %(message)s")
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir}: no such directory; create it or pass another")
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None and not path.resolve().parent.is_dir():
            parser.error(f"{flag} {path}: no directory {path.resolve().parent} to write it in")
    data_dir = Path(tempfile.mkdtemp(prefix="daq-bench-", dir=args.data_dir))
    if args.pilatus:
        return _one_case(lambda: _pilatus(args.pilatus, args.workers, data_dir), data_dir)
    if args.camera:
        return _one_case(
            lambda: camera.run(args.camera, args.camera_frames, args.workers, data_dir), data_dir
        )
    if args.lambda_frames:
        return _one_case(lambda: lambda_.run(args.lambda_frames, args.workers, data_dir), data_dir)
    started = time.monotonic()
    try:
        measurements = run(args, data_dir)
    except BenchError as exc:
        print(f"daq-bench: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    summaries = summarize(measurements)
    print(table(summaries))
    lost = sum(s.lost for s in summaries)
    print(f"\n{len(measurements)} runs in {time.monotonic() - started:.0f} s; lost frames: {lost}")
    if args.json:
        meta = {
            "machine": platform.node(),
            "python": platform.python_version(),
            "argv": sys.argv[1:],
        }
        args.json.write_text(to_json(summaries, measurements, meta))
    if args.plot:
        plot(summaries, args.plot)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())

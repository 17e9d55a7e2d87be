"""``daq-sim lambda`` (or ``python -m sim.lambda_fake``): a simulated four-module Lambda.

It writes the two DCUs' system files of ForMAX's windmill and runs one
``lambda-streamer`` process per DCU over the fake SDK on 127.0.0.1, as two
DCUs would run them: control channels on ``--control-port`` and the next
port (``tango_db_config/lambda01.json`` expects 9020 and 9021), module i's
stream on ``--stream-port`` + i (9010..9013). Until Ctrl-C or SIGTERM; a
streamer that exits ends it, with that streamer's status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from sim.cli_support import OneLineParser, int_at_least, positive_seconds, tcp_port
from sim.lambda_fake import library_path, windmill_systems

PROG = "python -m sim.lambda_fake"
FAULTS_VARIABLE = "LAMBDA_FAKE_FAULTS"


def _parser(prog: str) -> OneLineParser:
    parser = OneLineParser(
        prog=prog,
        description="Run a simulated four-module XSpectrum Lambda (ForMAX's windmill): two "
        "lambda-streamer processes, one per simulated DCU, over the fake SDK on 127.0.0.1.",
    )
    parser.add_argument(
        "--shape",
        type=int_at_least(1),
        nargs=2,
        metavar=("ROWS", "COLUMNS"),
        default=[512, 1536],
        help="one module's frame (default: a Lambda 750K module, 512 1536)",
    )
    parser.add_argument(
        "--control-port",
        type=tcp_port,
        default=9020,
        help="DCU 1's control channel; DCU 2's is the next port (default %(default)s)",
    )
    parser.add_argument(
        "--stream-port",
        type=tcp_port,
        default=9010,
        help="module i's stream binds this port + i (default %(default)s)",
    )
    parser.add_argument(
        "--trigger-period",
        type=positive_seconds,
        default=0.002,
        help="period of the fake's own trigger pulses in the external trigger modes, s "
        "(default %(default)s: 500 Hz)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        help="where the system files are written (default: a new temporary directory)",
    )
    parser.add_argument(
        "--faults",
        default=os.environ.get(FAULTS_VARIABLE, ""),
        help="faults of the fake SDK, key=value;... e.g. 'lose_frame=1:17;stall_module=2:500' "
        f"(default: ${FAULTS_VARIABLE}; docs/lambda.md#the-fake-sdk)",
    )
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = _parser(prog).parse_args(argv)
    try:
        library = library_path()
    except FileNotFoundError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    directory = args.dir or Path(tempfile.mkdtemp(prefix="daq-sim-lambda-"))
    directory.mkdir(parents=True, exist_ok=True)
    systems = windmill_systems(args.shape, trigger_period_ms=args.trigger_period * 1e3)
    env = {**os.environ, FAULTS_VARIABLE: args.faults}
    streamers: list[subprocess.Popen[bytes]] = []
    for k, system in enumerate(systems):
        path = system.write(directory / f"dcu{k + 1}.conf")
        command = [
            sys.executable,
            "-m",
            "streamers.lambda_",
            "--library",
            library,
            "--system",
            str(path),
            "--stream",
            f"tcp://127.0.0.1:{args.stream_port}",
            "--control",
            f"127.0.0.1:{args.control_port + k}",
        ]
        streamers.append(subprocess.Popen(command, env=env))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    controls = ", ".join(f"127.0.0.1:{args.control_port + k}" for k in range(len(systems)))
    print(
        f"Lambda simulator: {len(systems)} DCUs, system files in {directory}; "
        f"DetectorAddress = {controls}",
        flush=True,
    )
    while not stop.wait(0.5):
        if any(proc.poll() is not None for proc in streamers):
            break
    for proc in streamers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    codes = [proc.wait() for proc in streamers]
    return 0 if stop.is_set() and not any(codes) else 1


if __name__ == "__main__":
    sys.exit(main())

"""``daq-sim pilatus`` (or ``python -m sim.pilatus``): a simulated Pilatus3 camserver.

It listens for camserver commands on ``--port`` (camserver's own is 41234),
writes CBF files into ``--imgpath`` and takes external triggers on
``--trigger-input`` (pulse it with ``daq-sim trigger ADDRESS``), until Ctrl-C
or SIGTERM.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from sim.cli_support import OneLineParser, float_at_least, int_at_least, tcp_port, zmq_endpoint
from sim.pilatus.camserver import PILATUS3_2M_SHAPE, CamserverError, CamserverSimulator
from sim.pilatus.ramdisk import WRITE_MODES, RamDisk

PROG = "python -m sim.pilatus"


def _parser(prog: str) -> OneLineParser:
    parser = OneLineParser(
        prog=prog,
        description="Run a simulated Pilatus3 camserver: camserver's TCP commands, CBF files "
        "written into a RAM-disk directory, external triggers from daq-sim trigger.",
    )
    parser.add_argument(
        "--imgpath", type=Path, required=True, help="the RAM disk directory (must exist)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=tcp_port,
        default=41234,
        help="command port, 0 for any free one (default %(default)s, camserver's own)",
    )
    parser.add_argument(
        "--trigger-input",
        type=zmq_endpoint,
        default=None,
        metavar="ADDRESS",
        help="ZeroMQ endpoint to bind the external trigger input on, e.g. "
        "tcp://127.0.0.1:9998 (default: none)",
    )
    parser.add_argument(
        "--shape",
        type=int_at_least(1),
        nargs=2,
        default=PILATUS3_2M_SHAPE,
        metavar=("ROWS", "COLUMNS"),
        help="frame shape (default: Pilatus3 2M, 1679 x 1475)",
    )
    parser.add_argument(
        "--ramdisk-size",
        type=int_at_least(1),
        default=None,
        metavar="BYTES",
        help="bytes the RAM disk holds (default: no limit)",
    )
    parser.add_argument(
        "--write-mode",
        choices=WRITE_MODES,
        default="rename",
        help="rename: write a hidden temporary file, then rename it (camserver); "
        "in-place: write under the final name (default %(default)s)",
    )
    parser.add_argument(
        "--chunk-pause",
        type=float_at_least(0),
        default=0.0,
        metavar="S",
        help="in-place: s between the 4 chunks of a file (default %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Serve until SIGINT or SIGTERM; 2 on bad arguments, 1 when it cannot start."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.imgpath.is_dir():
        parser.error(f"--imgpath {args.imgpath}: no such directory; create it (a RAM disk)")
    try:
        camserver = CamserverSimulator(
            args.imgpath,
            args.host,
            args.port,
            args.trigger_input,
            args.shape,
            RamDisk(args.ramdisk_size, args.write_mode, chunk_pause_s=args.chunk_pause),
        )
    except CamserverError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # create_server appends "(while attempting to bind ...)" to strerror
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        busy = " (in use: choose another --port)" if exc.errno == errno.EADDRINUSE else ""
        print(f"{prog}: cannot listen on {args.host}:{args.port}: {reason}{busy}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    host, port = camserver.address
    print(f"camserver simulator on {host}:{port}, images in {args.imgpath}", flush=True)
    if camserver.trigger_endpoint:
        print(f"trigger input {camserver.trigger_endpoint}", flush=True)
    stop.wait()
    camserver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

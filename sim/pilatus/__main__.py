"""``python -m sim.pilatus``: a simulated Pilatus3 camserver on 127.0.0.1 until Ctrl-C.

It listens for camserver commands on ``--port`` (camserver's own is 41234),
writes CBF files into ``--imgpath`` and takes external triggers on
``--trigger-input`` (pulse it with ``daq-sim trigger ADDRESS``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from sim.pilatus.camserver import PILATUS3_2M_SHAPE, CamserverError, CamserverSimulator
from sim.pilatus.ramdisk import WRITE_MODES, RamDisk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim.pilatus", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--imgpath", type=Path, required=True, help="the RAM disk directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=41234, help="command port (0: any free port)")
    parser.add_argument(
        "--trigger-input", default="", help="ZeroMQ endpoint of the external trigger input"
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs=2,
        default=PILATUS3_2M_SHAPE,
        metavar=("ROWS", "COLUMNS"),
        help="frame shape (default: Pilatus3 2M, 1679 x 1475)",
    )
    parser.add_argument(
        "--ramdisk-size",
        type=int,
        default=None,
        help="bytes the RAM disk holds (default: no limit)",
    )
    parser.add_argument(
        "--write-mode",
        choices=WRITE_MODES,
        default="rename",
        help="rename: write a hidden temporary file, then rename it (camserver); "
        "in-place: write under the final name",
    )
    parser.add_argument(
        "--chunk-pause", type=float, default=0.0, help="in-place: s between the 4 chunks of a file"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.imgpath.is_dir():
        parser.error(f"--imgpath {args.imgpath}: no such directory")
    try:
        camserver = CamserverSimulator(
            args.imgpath,
            args.host,
            args.port,
            args.trigger_input or None,
            args.shape,
            RamDisk(args.ramdisk_size, args.write_mode, chunk_pause_s=args.chunk_pause),
        )
    except (CamserverError, OSError) as exc:
        print(f"sim.pilatus: {exc}", file=sys.stderr)
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

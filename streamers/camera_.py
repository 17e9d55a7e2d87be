"""``camera-streamer``: an sCMOS camera (Andor SDK3 or Hamamatsu DCAM) as a STINS stream.

Run it on the machine the camera is plugged into::

    camera-streamer --sdk andor --library /usr/local/lib/libatcore.so \\
        --stream tcp://*:9999 --control <control-address>:9030

then set the device's ``DetectorAddress`` to ``<host>:9030`` and its
``StreamAddress`` to ``tcp://<host>:9999``. When the Tango device server runs
on that machine itself, leave ``DetectorAddress`` at ``embedded``: the
backend then holds the same streamer in its own process (docs/cameras.md).
"""

from __future__ import annotations

import logging
import sys

from sim.cli_support import OneLineParser, int_at_least, positive_seconds, zmq_endpoint
from streamers.camera_adapter import CameraError
from streamers.camera_control_api import create_app
from streamers.camera_stream import CameraStreamer
from streamers.cameras import ADAPTERS, LIBRARY_VARIABLES, open_adapter
from streamers.control_server import serve_until_signal
from streamers.pilatus import parse_host_port

logger = logging.getLogger(__name__)

PROG = "camera-streamer"


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Streams an sCMOS camera (Andor SDK3 or Hamamatsu DCAM) as STINS, "
        "controlled over HTTP by the Tango device's andor or hamamatsu backend.",
    )
    parser.add_argument("--sdk", choices=sorted(ADAPTERS), required=True, help="the camera's SDK")
    parser.add_argument(
        "--library",
        help="the SDK's shared library (default: "
        + ", ".join(f"${v} for {k}" for k, v in LIBRARY_VARIABLES.items())
        + ", then the SDK's usual place)",
    )
    parser.add_argument(
        "--camera", type=int_at_least(0), default=0, help="camera index (default %(default)s)"
    )
    parser.add_argument(
        "--pixel-encoding",
        default="Mono16",
        help="Mono16, Mono12 (16-bit words) or Mono12p (12-bit packed, ORCA; the receiver's "
        "mono12p transform unpacks it) (default %(default)s)",
    )
    parser.add_argument(
        "--stream",
        type=zmq_endpoint,
        default="tcp://*:9999",
        help="STINS stream endpoint to bind (default %(default)s)",
    )
    parser.add_argument(
        "--control",
        default="127.0.0.1:9030",
        help="host:port of the HTTP control channel; it drives the camera, so loopback "
        "unless given (default %(default)s)",
    )
    parser.add_argument(
        "--stall-margin",
        type=positive_seconds,
        default=2.0,
        help="s beyond the frame time without a frame before the camera is reported stalled "
        "(default %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        host, port = parse_host_port(args.control)
    except ValueError as exc:
        parser.error(f"--control: {exc}")
    try:
        adapter = open_adapter(args.sdk, args.library, args.camera, args.pixel_encoding)
    except CameraError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    try:
        streamer = CameraStreamer(adapter, args.stream, args.stall_margin)
    except OSError as exc:
        adapter.close()
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    return serve_until_signal(
        create_app(streamer),
        host,
        port,
        PROG,
        streamer.close,
        lambda url: f"{adapter.model} {adapter.serial} on {streamer.endpoint}, control on {url}",
    )


if __name__ == "__main__":
    sys.exit(main())

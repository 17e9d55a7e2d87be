"""``lambda-streamer``: the DCU-side application of an XSpectrum Lambda.

One process per DCU, one thread and one STINS stream per module it serves
(:mod:`streamers.lambda_module`), and an HTTP control channel for the Tango
backend (:mod:`streamers.lambda_control_api`). Run it on the DCU::

    lambda-streamer --library /opt/xsp/lib/liblambda_sdk_shim.so \\
        --system /opt/xsp/config/system.yml --stream tcp://*:9010 \\
        --control <dcu-control-address>:9020

then list ``<dcu>:9020`` in the device's ``DetectorAddress`` (one entry per
DCU). Module i (its index in the whole detector) binds port 9010 + i, as
MAX IV's streams do. The control channel drives the detector, so it listens
on loopback unless ``--control`` names an address; the streams carry data
only and bind all interfaces by default. ``daq-sim lambda`` runs it over the
fake SDK (:mod:`sim.lambda_fake`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from sim.cli_support import OneLineParser, positive_seconds
from streamers.control_server import serve_until_signal
from streamers.lambda_control_api import create_app
from streamers.lambda_sdk.binding import LambdaSdkError
from streamers.lambda_streamer import LambdaStreamer, module_endpoint
from streamers.pilatus import parse_host_port

logger = logging.getLogger(__name__)

PROG = "lambda-streamer"
LIBRARY_VARIABLE = "LAMBDA_SDK_LIBRARY"


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="The DCU-side application of an XSpectrum Lambda: reads each module "
        "through the SDK and sends it as its own STINS stream; controlled over HTTP by the "
        "Tango device's lambda backend.",
    )
    parser.add_argument(
        "--library",
        default=os.environ.get(LIBRARY_VARIABLE),
        help=f"the Lambda SDK shim's shared library (docs/lambda.md; default: ${LIBRARY_VARIABLE})",
    )
    parser.add_argument(
        "--system", type=Path, required=True, help="the SDK's system configuration file"
    )
    parser.add_argument(
        "--stream",
        default="tcp://*:9010",
        help="module i binds this port + i (its index in the whole detector); "
        "tcp://HOST:* for free ports (default %(default)s)",
    )
    parser.add_argument(
        "--control",
        default="127.0.0.1:9020",
        help="host:port of the HTTP control channel; it drives the detector, so loopback "
        "unless given (default %(default)s)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=positive_seconds,
        default=5.0,
        help="s without a frame from a module while the detector is busy before it is "
        "reported stalled (default %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.library:
        parser.error(f"--library is needed (or set ${LIBRARY_VARIABLE}): the Lambda SDK shim")
    if not args.system.is_file():
        parser.error(f"--system {args.system}: no such file (the SDK's system configuration)")
    try:
        module_endpoint(args.stream, 0)
        host, port = parse_host_port(args.control)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        streamer = LambdaStreamer(args.library, args.system, args.stream, args.stall_timeout)
    except (LambdaSdkError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    return serve_until_signal(
        create_app(streamer),
        host,
        port,
        PROG,
        streamer.close,
        lambda url: (
            f"control on {url}, modules "
            + ", ".join(f"{m.info.id} {m.endpoint}" for m in streamer.modules)
        ),
    )


if __name__ == "__main__":
    sys.exit(main())

"""``daq-sim``: run or operate a hardware simulator on 127.0.0.1.

``daq-sim pilatus --imgpath DIR`` runs a simulated Pilatus3 camserver writing
CBF files there. ``daq-sim eiger --port P`` runs a simulated DECTRIS EIGER 1M (SIMPLON 1.8 REST
API) until interrupted. ``daq-sim lambda`` runs a simulated four-module XSpectrum
Lambda (two ``lambda-streamer`` processes over the fake SDK).
``daq-sim trigger ADDRESS`` pulses the trigger input of a simulated detector, as a timing system's TTL output would (EXTERNAL,
EXTERNAL_MULTI, GATE modes; the Eiger's exts and exte).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

import zmq

from sim.cli_support import OneLineParser, float_at_least, int_at_least, tcp_port, zmq_endpoint
from sim.trigger_input import fire

PROG = "daq-sim"
DESCRIPTION = "Run or operate a hardware simulator on 127.0.0.1."


def _stream_endpoint(text: str) -> str:
    return text if text == "none" else zmq_endpoint(text)


def _parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="SIMULATOR")
    trigger = commands.add_parser(
        "trigger",
        help="pulse a simulated detector's trigger input",
        description="Pulse the trigger input of a simulated detector, as a timing system's "
        "TTL output would (EXTERNAL, EXTERNAL_MULTI, GATE modes; the Eiger's exts and exte).",
    )
    trigger.add_argument(
        "address",
        type=zmq_endpoint,
        help="its TriggerInputAddress, e.g. tcp://127.0.0.1:9998",
    )
    trigger.add_argument(
        "--count", type=int_at_least(1), default=1, help="pulses to send (default %(default)s)"
    )
    trigger.add_argument(
        "--width",
        type=float_at_least(0),
        default=0.0,
        help="gate width in s, GATE mode; 0 is an edge (default %(default)s)",
    )
    eiger = commands.add_parser(
        "eiger",
        help="run a simulated EIGER 1M (SIMPLON 1.8 REST API) on 127.0.0.1",
        description="Run a simulated DECTRIS EIGER 1M (SIMPLON 1.8 REST API and its stream) "
        "on 127.0.0.1 until interrupted.",
    )
    eiger.add_argument(
        "--port", type=tcp_port, default=8080, help="HTTP port; 0: any free one (default 8080)"
    )
    eiger.add_argument(
        "--trigger-input",
        type=zmq_endpoint,
        metavar="ADDRESS",
        help="bind the external trigger input here (e.g. tcp://127.0.0.1:9998) for "
        "daq-sim trigger in exts/exte modes (default: none)",
    )
    eiger.add_argument(
        "--stream",
        type=_stream_endpoint,
        metavar="ADDRESS",
        default="tcp://127.0.0.1:9999",
        help="bind the data stream (Dectris stream v1 or v2, as set over REST) here; "
        "'none' for no stream (default %(default)s)",
    )
    eiger.add_argument(
        "--initialized",
        action="store_true",
        help="start idle instead of 'na', where a real detector needs the initialize "
        "command first (default: off)",
    )
    commands.add_parser(
        "pilatus",
        add_help=False,
        help="run a simulated Pilatus3 camserver (options: daq-sim pilatus --help)",
    )
    commands.add_parser(
        "lambda",
        add_help=False,
        help="run a simulated four-module Lambda: two lambda-streamers over the fake SDK "
        "(options: daq-sim lambda --help)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, passed_on = parser.parse_known_args(argv)
    if args.command == "pilatus":
        from sim.pilatus.__main__ import main as pilatus_main

        return pilatus_main(passed_on, prog=f"{PROG} pilatus")
    if args.command == "lambda":
        from sim.lambda_fake.__main__ import main as lambda_main

        return lambda_main(passed_on, prog=f"{PROG} lambda")
    if passed_on:
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    if args.command == "eiger":
        return _run_eiger(args.port, args.trigger_input, args.stream, args.initialized)
    try:
        fire(args.address, args.count, args.width)
    except TimeoutError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except zmq.ZMQError as exc:
        print(f"{PROG}: cannot connect to {args.address}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{args.count} pulse(s) sent to {args.address}")
    return 0


def _run_eiger(port: int, trigger_input: str | None, stream: str, initialized: bool) -> int:
    from sim.eiger.server import EigerSimulator, SimulatorError
    from sim.eiger.zmq_stream import StreamError, ZmqStreamSink

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        sink = None if stream == "none" else ZmqStreamSink(stream)
    except StreamError as exc:
        print(f"daq-sim: {exc}", file=sys.stderr)
        return 1
    simulator = EigerSimulator(
        port=port, sink=sink, trigger_endpoint=trigger_input, initialized=initialized
    )
    try:
        simulator.start()
    except SimulatorError as exc:
        if sink is not None:
            sink.close()
        print(f"daq-sim: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        trigger = f", trigger input {simulator.trigger_endpoint}" if trigger_input else ""
        data = f", stream {sink.endpoint}" if sink else ", no stream"
        print(f"EIGER simulator: SIMPLON 1.8.0 on {simulator.url}{data}{trigger}", flush=True)
        stop.wait()
    finally:
        simulator.stop()
        if sink is not None:
            sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``daq-sim``: run or operate a hardware simulator on 127.0.0.1.

``daq-sim pilatus --imgpath DIR`` runs a simulated Pilatus3 camserver writing
CBF files there. ``daq-sim eiger --port P`` runs a simulated DECTRIS EIGER 1M (SIMPLON 1.8 REST
API) until interrupted. ``daq-sim trigger ADDRESS`` pulses the trigger input
of a simulated detector, as a timing system's TTL output would (EXTERNAL,
EXTERNAL_MULTI, GATE modes; the Eiger's exts and exte).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from sim.trigger_input import fire


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="daq-sim", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    trigger = commands.add_parser("trigger", help="pulse a simulated detector's trigger input")
    trigger.add_argument("address", help="its TriggerInputAddress, e.g. tcp://127.0.0.1:9998")
    trigger.add_argument("--count", type=int, default=1, help="pulses to send")
    trigger.add_argument(
        "--width", type=float, default=0.0, help="gate width in s (GATE mode; 0 = an edge)"
    )
    eiger = commands.add_parser(
        "eiger", help="run a simulated EIGER 1M (SIMPLON 1.8 REST API) on 127.0.0.1"
    )
    eiger.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    eiger.add_argument(
        "--trigger-input",
        metavar="ADDRESS",
        help="bind the external trigger input here (e.g. tcp://127.0.0.1:9998) for "
        "`daq-sim trigger` in exts/exte modes",
    )
    eiger.add_argument(
        "--stream",
        metavar="ADDRESS",
        default="tcp://127.0.0.1:9999",
        help="bind the data stream (Dectris stream v1 or v2, as set over REST) here "
        "(default tcp://127.0.0.1:9999; 'none' for no stream)",
    )
    eiger.add_argument(
        "--initialized",
        action="store_true",
        help="start idle instead of 'na' (a real detector needs the initialize command first)",
    )
    commands.add_parser(
        "pilatus",
        add_help=False,
        help="run a simulated Pilatus3 camserver (options: daq-sim pilatus --help)",
    )
    args, passed_on = parser.parse_known_args(argv)
    if args.command == "pilatus":
        from sim.pilatus.__main__ import main as pilatus_main

        return pilatus_main(passed_on)
    if passed_on:
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    if args.command == "eiger":
        if not 0 <= args.port <= 65535:
            parser.error("--port must be in 0..65535")
        return _run_eiger(args.port, args.trigger_input, args.stream, args.initialized)
    if args.count < 1 or args.width < 0:
        parser.error("--count must be >= 1 and --width >= 0")
    try:
        fire(args.address, args.count, args.width)
    except TimeoutError as exc:
        print(f"daq-sim: {exc}", file=sys.stderr)
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

"""``daq-sim``: run or operate a hardware simulator on 127.0.0.1.

``daq-sim trigger ADDRESS`` pulses the trigger input of a simulated detector,
as a timing system's TTL output would (EXTERNAL, EXTERNAL_MULTI, GATE modes).
"""

from __future__ import annotations

import argparse
import sys

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
    args = parser.parse_args(argv)
    if args.count < 1 or args.width < 0:
        parser.error("--count must be >= 1 and --width >= 0")
    try:
        fire(args.address, args.count, args.width)
    except TimeoutError as exc:
        print(f"daq-sim: {exc}", file=sys.stderr)
        return 1
    print(f"{args.count} pulse(s) sent to {args.address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

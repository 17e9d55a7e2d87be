"""``stream-receiver``: run the receiver as a process with its HTTP API until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import zmq

from receiver.api import ApiServer, ApiServerError, create_app
from receiver.config import ConfigError, ReceiverConfig, load
from receiver.readers import PARSERS
from receiver.receiver import Receiver

logger = logging.getLogger("stream-receiver")

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _parser() -> argparse.ArgumentParser:
    fields = ReceiverConfig.model_fields
    parser = argparse.ArgumentParser(
        prog="stream-receiver",
        description="Receive a detector stream over ZeroMQ, write it in order to NeXus HDF5, "
        "republish it and report over HTTP. Flags override the configuration file.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="configuration file: .json or .toml with our settings, or a MAX IV "
        "streaming-receiver .yaml file together with --entry (drop-in mode)",
    )
    parser.add_argument("--entry", help="the detector entry of a MAX IV .yaml configuration")
    parser.add_argument(
        "--connect",
        action="append",
        metavar="ENDPOINT",
        help=f"{fields['connect'].description} (repeatable; default tcp://127.0.0.1:9999)",
    )
    parser.add_argument("--protocol", choices=sorted(PARSERS), help=fields["protocol"].description)
    parser.add_argument("--socket", choices=["pull", "sub"], help=fields["socket"].description)
    parser.add_argument("--workers", type=int, help=fields["workers"].description)
    parser.add_argument("--io-threads", type=int, help=fields["io_threads"].description)
    parser.add_argument("--forward", metavar="ENDPOINT", help=fields["forward"].description)
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="address of the HTTP API (default 127.0.0.1:5000; port 0 picks a free one)",
    )
    parser.add_argument("--data-root", type=Path, help=fields["data_root"].description)
    parser.add_argument(
        "--no-write",
        dest="write",
        action="store_const",
        const=False,
        help="receive and forward without writing files",
    )
    parser.add_argument("--detector-name", help=fields["detector_name"].description)
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "connect": args.connect,
        "protocol": args.protocol,
        "socket": args.socket,
        "workers": args.workers,
        "io_threads": args.io_threads,
        "forward": args.forward,
        "data_root": args.data_root,
        "write": args.write,
        "detector_name": args.detector_name,
    }
    if args.http:
        host, _, port = args.http.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--http must be HOST:PORT, got {args.http!r}")
        overrides.update(http_host=host, http_port=int(port))
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load(args.config, _overrides(args), args.entry)
    except ConfigError as exc:
        print(f"stream-receiver: {exc}", file=sys.stderr)
        return 2
    # Blocked before any thread exists, so every thread inherits the mask and
    # the signal is taken by sigwait below instead of landing in a thread
    # that cannot act on it. The default disposition first: a shell starts
    # background jobs with SIGINT ignored, and an ignored signal never arrives.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        receiver = Receiver(config)
    except zmq.ZMQError as exc:
        print(
            f"stream-receiver: cannot bind the forwarder to {config.forward}: {exc}",
            file=sys.stderr,
        )
        return 1
    app = create_app(receiver, legacy_pickle_default=config.legacy_last_frame)
    api = ApiServer(app, config.http_host, config.http_port)
    try:
        api.start()
    except (ApiServerError, OSError) as exc:
        print(f"stream-receiver: cannot serve the HTTP API: {exc}", file=sys.stderr)
        receiver.stop()
        return 1
    receiver.start()
    logger.info(
        "ready: HTTP API %s, data root %s, forwarding to %s",
        api.url,
        config.data_root.resolve(),
        receiver.forward_endpoint or "nobody",
    )
    signum = signal.sigwait(STOP_SIGNALS)
    logger.info("stopping on %s", signal.Signals(signum).name)
    api.stop()
    receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

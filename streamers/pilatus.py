"""``pilatus-streamer``: the DCU-side application of a Dectris Pilatus3.

camserver writes one CBF file per frame to a RAM disk; this application
turns them into a STINS stream for the receiver (:mod:`streamers.pilatus_stream`)
and offers camserver's TCP protocol as a proxy (:mod:`streamers.pilatus_proxy`),
so that the Tango device driving it can run anywhere. Run it on the DCU::

    pilatus-streamer --imgpath /ramdisk/images --camserver 127.0.0.1:41234 \\
        --listen <dcu-control-address>:8888 --stream tcp://*:9999

then point the device's ``DetectorAddress`` at ``<dcu>:8888`` and the
receiver (``StreamAddress``) at ``tcp://<dcu>:9999``. The proxy drives the
detector, so it listens on loopback unless ``--listen`` names an address
(the control network's, or ``0.0.0.0`` for all); the stream carries data
only and binds all interfaces by default, for a receiver on another host.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    field_validator,
)

from sim.cli_support import OneLineParser, positive_seconds
from streamers.pilatus_proxy import CamserverProxy, ProxyError
from streamers.pilatus_stream import ImageStreamer

logger = logging.getLogger(__name__)


def parse_host_port(text: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); ValueError with the reason."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.1:8888)")
    return host.strip("[]"), int(port)


class StreamerConfig(BaseModel):
    """Everything the streamer needs, checked once."""

    model_config = ConfigDict(frozen=True)

    imgpath: Path = Field(description="camserver's image directory (the RAM disk)")
    camserver: tuple[str, int] = Field(("127.0.0.1", 41234), description="camserver's TCP address")
    listen: tuple[str, int] = Field(
        ("127.0.0.1", 8888), description="the proxy's TCP address (loopback unless given)"
    )
    stream: str = Field("tcp://*:9999", description="ZeroMQ endpoint the STINS stream binds")
    file_timeout: PositiveFloat = Field(
        5.0, description="s to wait, after camserver's 7 OK, for the last file to appear"
    )

    @field_validator("imgpath")
    @classmethod
    def _is_directory(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value


class PilatusStreamer:
    """The image streamer and the camserver proxy, started together, closed together."""

    def __init__(self, config: StreamerConfig) -> None:
        self.config = config
        self.images = ImageStreamer(config.imgpath, config.stream, config.file_timeout)
        try:
            self.proxy = CamserverProxy(config.listen, config.camserver, self.images)
        except OSError as exc:
            self.images.close()
            host, port = config.listen
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        try:
            self.proxy.connect()
        except ProxyError:
            self.close()
            raise

    @property
    def stream_endpoint(self) -> str:
        return self.images.endpoint

    @property
    def address(self) -> tuple[str, int]:
        """Where the proxy listens (the backend's ``DetectorAddress``)."""
        return self.proxy.address

    def close(self) -> None:
        self.proxy.close()
        self.images.close()


PROG = "pilatus-streamer"


def _host_port(text: str) -> tuple[str, int]:
    try:
        return parse_host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _endpoint(text: str) -> str:
    if re.fullmatch(r"(tcp|ipc|inproc)://\S+", text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a ZeroMQ endpoint such as tcp://*:9999 (tcp://, ipc:// or inproc://)"
        )
    return text


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="The DCU-side application of a Dectris Pilatus3: streams camserver's CBF "
        "files from the RAM disk as STINS and proxies camserver's TCP protocol for the Tango "
        "device.",
    )
    parser.add_argument(
        "--imgpath", type=Path, required=True, help="camserver's image directory (must exist)"
    )
    parser.add_argument(
        "--camserver",
        type=_host_port,
        default="127.0.0.1:41234",
        help="camserver's host:port (default %(default)s)",
    )
    parser.add_argument(
        "--listen",
        type=_host_port,
        default="127.0.0.1:8888",
        help="the camserver proxy's host:port, for the Tango device's DetectorAddress; it "
        "drives the detector, so loopback unless given: the DCU's control-network address, "
        "or 0.0.0.0 for all interfaces (default %(default)s)",
    )
    parser.add_argument(
        "--stream",
        type=_endpoint,
        default="tcp://*:9999",
        help="STINS stream endpoint to bind; all interfaces by default, for a receiver on "
        "another host (default %(default)s)",
    )
    parser.add_argument(
        "--file-timeout",
        type=positive_seconds,
        default=5.0,
        help="s to wait after camserver's 7 OK for the series' last file (default %(default)s)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every file (default: off)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.imgpath.is_dir():
        parser.error(f"--imgpath {args.imgpath}: no such directory (camserver's RAM disk)")
    try:
        config = StreamerConfig(
            imgpath=args.imgpath,
            camserver=args.camserver,
            listen=args.listen,
            stream=args.stream,
            file_timeout=args.file_timeout,
        )
    except ValidationError as exc:
        parser.error("; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors()))
    try:
        streamer = PilatusStreamer(config)
    except OSError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    host, port = streamer.address
    logger.info(
        "camserver proxy on %s:%d, STINS stream on %s, watching %s",
        host,
        port,
        streamer.stream_endpoint,
        config.imgpath,
    )
    while not stop.wait(0.5):
        if streamer.images.failed.is_set():
            break
    streamer.close()
    if streamer.images.failed.is_set():
        print(f"{PROG}: {streamer.images.failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

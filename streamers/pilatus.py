"""``pilatus-streamer``: the DCU-side application of a Dectris Pilatus3.

camserver writes one CBF file per frame to a RAM disk; this application
turns them into a STINS stream for the receiver (:mod:`streamers.pilatus_stream`)
and offers camserver's TCP protocol as a proxy (:mod:`streamers.pilatus_proxy`),
so that the Tango device driving it can run anywhere. Run it on the DCU::

    pilatus-streamer --imgpath /ramdisk/images --camserver 127.0.0.1:41234 \\
        --listen 0.0.0.0:8888 --stream tcp://*:9999

then point the device's ``DetectorAddress`` at ``<dcu>:8888`` and the
receiver (``StreamAddress``) at ``tcp://<dcu>:9999``.
"""

from __future__ import annotations

import argparse
import logging
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
    listen: tuple[str, int] = Field(("0.0.0.0", 8888), description="the proxy's TCP address")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pilatus-streamer", description=__doc__.splitlines()[0])
    parser.add_argument("--imgpath", type=Path, required=True, help="camserver's image directory")
    parser.add_argument(
        "--camserver", default="127.0.0.1:41234", help="camserver's host:port (default %(default)s)"
    )
    parser.add_argument(
        "--listen", default="0.0.0.0:8888", help="the proxy's host:port (default %(default)s)"
    )
    parser.add_argument(
        "--stream", default="tcp://*:9999", help="STINS stream endpoint (default %(default)s)"
    )
    parser.add_argument(
        "--file-timeout",
        type=float,
        default=5.0,
        help="s to wait after camserver's 7 OK for the series' last file (default %(default)s)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every file")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = StreamerConfig(
            imgpath=args.imgpath,
            camserver=parse_host_port(args.camserver),
            listen=parse_host_port(args.listen),
            stream=args.stream,
            file_timeout=args.file_timeout,
        )
    except ValidationError as exc:
        parser.error("; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors()))
    except ValueError as exc:
        parser.error(str(exc))
    try:
        streamer = PilatusStreamer(config)
    except OSError as exc:
        print(f"pilatus-streamer: {exc}", file=sys.stderr)
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
        print(f"pilatus-streamer: {streamer.images.failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

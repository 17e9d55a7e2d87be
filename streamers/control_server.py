"""A streamer's HTTP control channel, served until SIGINT or SIGTERM (lambda-, camera-streamer)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable

from starlette.types import ASGIApp

from http_service.server import HttpServiceError, ThreadedServer

logger = logging.getLogger(__name__)


def serve_until_signal(
    app: ASGIApp,
    host: str,
    port: int,
    program: str,
    close: Callable[[], None],
    describe: Callable[[str], str],
) -> int:
    """Serve ``app`` on ``host:port`` until a signal, then ``close`` the streamer; the exit status.

    ``describe(url)`` is the line logged once the channel serves. A busy port
    is refused in one line naming ``--control``, and the streamer is closed.
    """
    server = ThreadedServer(
        app,
        host,
        port,
        name=f"{program}-control",
        what="the control channel",
        busy_hint="choose another --control port or stop the process that holds it",
    )
    try:
        server.start()
    except HttpServiceError as exc:
        close()
        print(f"{program}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logger.info("%s", describe(server.url))
    stop.wait()
    server.stop()
    close()
    return 0

"""The simulated Eiger as a running service: HTTP server, detector, trigger input.

The HTTP server is the shared threaded uvicorn (:mod:`http_service.server`)
with one difference on the wire: a response leaves in one write, as a real
detector's does (see :class:`_OneWriteTransport`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import zmq
from uvicorn.protocols.http.h11_impl import H11Protocol

from http_service.server import HttpServiceError, ThreadedServer
from sim.eiger.api import create_app
from sim.eiger.detector import EigerDetector
from sim.eiger.stream import NullSink, StreamSink
from sim.trigger_input import TriggerInput

logger = logging.getLogger(__name__)


class SimulatorError(RuntimeError):
    """The simulator could not start or stop; the message says why."""


class _OneWriteTransport:
    """An asyncio transport whose writes within one loop iteration leave as one send.

    uvicorn writes a response's head and body separately; a detector sends them
    together, and ADEiger reads a small answer with a single ``recv``, so a
    head arriving alone would look like an answer without content.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if self._pending and not self._transport.is_closing():
            self._transport.write(b"".join(self._pending))
        self._pending.clear()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_OneWriteTransport(transport, self.loop))  # type: ignore[arg-type]


class EigerSimulator:
    """A simulated EIGER 1M on ``host:port``: SIMPLON 1.8 REST, its stream through ``sink``.

    ``trigger_endpoint`` (e.g. ``tcp://127.0.0.1:9998``, port 0 or ``*`` for any)
    binds the trigger input that :func:`sim.trigger_input.fire` and
    ``daq-sim trigger`` pulse; :meth:`EigerDetector.external_trigger` does the
    same in-process. ``initialized=False`` starts in state ``na``, as after power-up.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        sink: StreamSink | None = None,
        trigger_endpoint: str | None = None,
        initialized: bool = False,
        initialize_time_s: float = 0.2,
    ) -> None:
        self.detector = EigerDetector(
            sink or NullSink(), initialized=initialized, initialize_time_s=initialize_time_s
        )
        self._http = ThreadedServer(
            create_app(self.detector),
            host,
            port,
            name="eiger-http",
            http=_Protocol,
            keep_alive_s=60,
            server_header=False,
        )
        self._host = host
        self._trigger_endpoint = trigger_endpoint
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._trigger_input: TriggerInput | None = None

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def trigger_endpoint(self) -> str | None:
        """The bound trigger input (port resolved), None without one."""
        return self._trigger_input.endpoint if self._trigger_input else None

    def start(self) -> None:
        if self._trigger_endpoint:
            self._context = zmq.Context()
            try:
                self._trigger_input = TriggerInput(
                    self._context, self._trigger_endpoint, self.detector.external_trigger
                )
            except OSError as exc:
                self.stop()
                raise SimulatorError(str(exc)) from None
            self._trigger_input.start()
        try:
            self._http.start()
        except HttpServiceError as exc:
            self.stop()
            raise SimulatorError(str(exc)) from exc
        logger.info("Eiger simulator serving SIMPLON 1.8.0 on %s", self.url)

    def stop(self) -> None:
        """End any series (blocked triggers answer), then stop serving (idempotent)."""
        self.detector.close()
        try:
            self._http.stop()
        except HttpServiceError as exc:
            raise SimulatorError(str(exc)) from exc
        if self._trigger_input is not None:
            self._trigger_input.stop()
            self._trigger_input = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def __enter__(self) -> EigerSimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

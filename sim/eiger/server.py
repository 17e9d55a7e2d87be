"""The simulated Eiger as a running service: HTTP server, detector, trigger input.

The HTTP server runs uvicorn in a thread of its own on a socket bound in the
caller's thread (a busy port is an immediate error, port 0 is known at once),
without signal handlers or logging setup: the host process owns those.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import uvicorn
import zmq
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

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


class _Server(uvicorn.Server):
    """uvicorn that says when its socket serves, so ``start`` waits on readiness, not time."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()


class HttpServer:
    """Serves ``app`` on ``host:port`` from a background thread."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._socket: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise SimulatorError("the HTTP server is not started")
        return self._socket.getsockname()[1]

    def start(self, timeout: float = 10.0) -> None:
        try:
            self._socket = socket.create_server((self._host, self._requested_port))
        except OSError as exc:
            raise SimulatorError(
                f"cannot listen on {self._host}:{self._requested_port} ({exc.strerror}): "
                "choose another port or stop the process that holds it"
            ) from None
        ready = threading.Event()
        config = uvicorn.Config(
            self._app,
            http=_Protocol,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=60,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config, ready)
        self._thread = threading.Thread(
            target=self._serve, args=(self._server, self._socket, ready), name="eiger-http"
        )
        self._thread.start()
        if not ready.wait(timeout) or not self._server.started:
            failure = self._failure
            self.stop(timeout)
            reason = repr(failure) if failure else f"not ready within {timeout} s"
            raise SimulatorError(
                f"the HTTP server on {self._host}:{self._requested_port} did not start: {reason}"
            ) from failure

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, close the port, join the thread (idempotent)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
            if self._thread.is_alive():
                raise SimulatorError(f"the HTTP server thread did not stop within {2 * timeout} s")
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def _serve(self, server: _Server, sock: socket.socket, ready: threading.Event) -> None:
        try:
            server.run(sockets=[sock])
        except (Exception, SystemExit) as exc:  # uvicorn exits with SystemExit on startup failure
            self._failure = exc
            logger.exception("the Eiger simulator's HTTP server stopped unexpectedly")
        finally:
            ready.set()


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
        self._http = HttpServer(create_app(self.detector), host, port)
        self._host = host
        self._trigger_endpoint = trigger_endpoint
        self._context: zmq.Context | None = None
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
        except SimulatorError:
            self.stop()
            raise
        logger.info("Eiger simulator serving SIMPLON 1.8.0 on %s", self.url)

    def stop(self) -> None:
        """End any series (blocked triggers answer), then stop serving (idempotent)."""
        self.detector.close()
        self._http.stop()
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

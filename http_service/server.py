"""uvicorn serving an ASGI app from a background thread, for processes that own the main thread.

A Tango device server, a CLI waiting on signals or a test owns the main
thread, its signals and its logging, so uvicorn runs in a thread of its own,
installs no signal handlers there and is told not to configure logging. The
socket is bound in the caller's thread: a busy port is an immediate error, and
the port the OS picked for port 0 is known before the thread starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from typing import ClassVar, Self

import uvicorn
from starlette.types import ASGIApp

logger = logging.getLogger(__name__)


class HttpServiceError(RuntimeError):
    """The server could not start or stop; the text says why and what to do.

    ``reason`` is the cause alone (``Address already in use``), for a caller
    that words the advice itself, naming its own flag or setting.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class _Server(uvicorn.Server):
    """uvicorn that says when its socket serves, so ``start`` waits on readiness, not time."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()


class ThreadedServer:
    """Serves ``app`` on ``host:port`` from a daemon thread named ``name``; start, then stop.

    ``http`` replaces uvicorn's HTTP protocol class (a simulator that must
    answer the way a device does on the wire); ``keep_alive_s`` and
    ``server_header`` are uvicorn's ``timeout_keep_alive`` and
    ``server_header``. ``busy_hint`` ends the error of a busy port, naming the
    setting the user changes. Subclasses raise their own ``error`` type.
    """

    error: ClassVar[type[HttpServiceError]] = HttpServiceError

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str = "http-server",
        what: str = "the HTTP server",
        busy_hint: str = "choose another port or stop the process that holds it",
        access_log: bool = False,
        http: type[asyncio.Protocol] | None = None,
        keep_alive_s: int = 5,
        server_header: bool = True,
    ) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._name = name
        self._what = what
        self._busy_hint = busy_hint
        self._access_log = access_log
        self._http = http
        self._keep_alive_s = keep_alive_s
        self._server_header = server_header
        self._socket: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        """The bound port (the one the OS picked when 0 was asked)."""
        if self._socket is None:
            raise self.error(f"{self._what} is not started: call start() first")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:5000``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the server accepts connections, or raises with why not."""
        if self._thread is not None:
            raise self.error(f"{self._what} is already started")
        self._socket = self._bind()
        self._failure = None
        ready = threading.Event()
        self._server = _Server(self._config(), ready)
        self._thread = threading.Thread(
            target=self._serve,
            args=(self._server, self._socket, ready),
            name=self._name,
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(timeout) or not self._server.started:
            failure = self._failure
            self.stop(timeout)
            reason = repr(failure) if failure else f"not ready within {timeout:g} s"
            raise self.error(
                f"{self._what} on {self._host}:{self._requested_port} did not start: {reason}; "
                "see the log of logger 'uvicorn.error'",
                reason=f"did not start: {reason}",
            ) from failure

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, close the port and join the thread (idempotent).

        Requests in progress get ``timeout`` seconds to finish, then the
        server is forced to exit and gets as long again.
        """
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
            if self._thread.is_alive():
                raise self.error(
                    f"the thread of {self._what} did not stop within {2 * timeout:g} s; "
                    "a request handler is probably stuck"
                )
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        try:
            return socket.create_server((self._host, self._requested_port), family=family)
        except OSError as exc:
            # create_server appends "(while attempting to bind on address ...)" to strerror
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise self.error(
                f"cannot listen on {self._host}:{self._requested_port} ({reason}); "
                f"{self._busy_hint}",
                reason=reason,
            ) from None

    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self._app,
            http=self._http or "auto",
            log_config=None,
            access_log=self._access_log,
            lifespan="off",
            timeout_keep_alive=self._keep_alive_s,
            server_header=self._server_header,
            timeout_graceful_shutdown=5,
        )

    def _serve(self, server: _Server, sock: socket.socket, ready: threading.Event) -> None:
        try:
            server.run(sockets=[sock])
        except (Exception, SystemExit) as exc:  # uvicorn exits with SystemExit on startup failure
            self._failure = exc
            logger.exception("%s (thread %s) stopped unexpectedly", self._what, self._name)
        finally:
            ready.set()

"""The receiver's HTTP API, compatible with MAX IV's streaming-receiver endpoints.

MAX IV's Tango devices and live viewers poll ``/status``, ``/received_frames``,
``/downsample`` and ``/last_frame``; those paths and payloads are kept so they
keep working, and the rest (metrics, PNG, a browser page) is added beside them.
The app only reads the receiver through ``ReceiverView``, so it knows nothing
of workers or files, and the server runs in a thread of its own because the
receiver may live inside a Tango device server that owns the main thread.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
from enum import StrEnum
from typing import Annotated, Any, Protocol

import uvicorn
from fastapi import Body, FastAPI, Header, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field, StrictInt

from protocols.model import Image
from receiver import liveview

logger = logging.getLogger(__name__)

STATES = ("idle", "running", "error")
METRIC_PREFIX = "receiver_"
NO_CACHE = {"Cache-Control": "no-store"}
"""The latest frame changes under the same URL: a cached copy would show a stale image."""


class ReceiverView(Protocol):
    """What the API may see and change of a running receiver; it must be thread-safe."""

    def status(self) -> dict[str, Any]:
        """JSON-ready; always has "state": "idle" | "running" | "error"."""
        ...

    @property
    def received_frames(self) -> int:
        """Frames received in the current or last series."""
        ...

    @property
    def downsample(self) -> int:
        """Reduction factor of the live image."""
        ...

    @downsample.setter
    def downsample(self, value: int) -> None: ...

    def last_frame(self) -> Image | None:
        """The latest frame as received, None before the first."""
        ...

    def reset(self) -> None:
        """Leave the error state (back to idle)."""
        ...

    def metrics(self) -> dict[str, float]:
        """Counters (names ending in ``_total``) and gauges for ``/metrics``."""
        ...


class FrameFormat(StrEnum):
    """The forms of ``/last_frame``; pickle only for MAX IV's clients, which unpickle it."""

    RAW = "raw"
    JSON = "json"
    PNG = "png"
    PICKLE = "pickle"


class DownsampleBody(BaseModel):
    """``{"value": 4}``: the JSON form of ``POST /downsample``."""

    value: StrictInt = Field(ge=1, description="live-view reduction factor, 1 = full frame")


class ApiServerError(RuntimeError):
    """The HTTP API could not be started or stopped."""


def create_app(view: ReceiverView, legacy_pickle_default: bool = False) -> FastAPI:
    """The API over ``view``.

    ``legacy_pickle_default`` is MAX IV drop-in mode: its live viewers ask
    ``/last_frame`` without saying which format and expect the pickle.
    Endpoints are plain ``def`` so FastAPI runs them in its threadpool: decoding
    a frame or waiting on the receiver's locks must never block the event loop.
    """
    app = FastAPI(title="stream-receiver", summary="detector-daq stream-receiver API")
    _add_status_routes(app, view)
    _add_downsample_routes(app, view)
    _add_frame_routes(app, view, legacy_pickle_default)
    return app


def _add_status_routes(app: FastAPI, view: ReceiverView) -> None:
    @app.get("/status")
    def status() -> dict[str, Any]:
        """State (idle, running, error) and what the receiver reports beside it."""
        return view.status()

    @app.get("/received_frames")
    def received_frames() -> dict[str, int]:
        """Frames received in the current or last series (MAX IV's form)."""
        return {"value": view.received_frames}

    @app.post("/reset")
    def reset() -> dict[str, Any]:
        """Leave the error state; answers the new status so the caller sees it worked."""
        view.reset()
        return view.status()

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus text exposition, for dashboards and alerts."""
        text = prometheus_text(view.metrics(), view.status().get("state"))
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        """A live view for any browser, without installing a client."""
        return HTMLResponse(INDEX_HTML)


def _add_downsample_routes(app: FastAPI, view: ReceiverView) -> None:
    @app.get("/downsample")
    def get_downsample() -> dict[str, int]:
        """The live-view reduction factor (MAX IV's form)."""
        return {"value": view.downsample}

    @app.post("/downsample")
    def set_downsample(
        value: Annotated[int | None, Query(ge=1, description="reduction factor")] = None,
        body: Annotated[DownsampleBody | None, Body()] = None,
    ) -> dict[str, int]:
        """Set the factor as ``?value=4`` (MAX IV's clients) or a JSON body ``{"value": 4}``."""
        factor = _one_factor(value, body)
        view.downsample = factor
        logger.info("live-view downsample factor set to %d", factor)
        return {"value": factor}


def _one_factor(query: int | None, body: DownsampleBody | None) -> int:
    """The factor given in exactly one of the two places, or a 422 that says how to give it."""
    if (query is None) == (body is None):
        problem = "is missing" if query is None else "was given twice"
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "value"),
                    "msg": f"the downsample factor {problem}: send it once, "
                    'as ?value=4 or as the JSON body {"value": 4}',
                    "input": None,
                }
            ]
        )
    return query if body is None else body.value


def _add_frame_routes(app: FastAPI, view: ReceiverView, legacy_pickle_default: bool) -> None:
    @app.get(
        "/last_frame",
        response_class=Response,
        responses={404: {"description": "no frame received yet"}},
    )
    def last_frame(
        frame_format: Annotated[FrameFormat | None, Query(alias="format")] = None,
        accept: Annotated[str | None, Header()] = None,
    ) -> Response:
        """The latest frame, decoded and downsampled as configured.

        Raw bytes with the header JSON in ``X-Frame-Header`` unless the client
        asks for ``?format=json|png|pickle`` or sends ``Accept: image/png``.
        """
        image = view.last_frame()
        if image is None:
            raise HTTPException(status_code=404, detail="no frame received yet")
        chosen = frame_format or _default_format(accept, legacy_pickle_default)
        return render_frame(image, view.downsample, chosen)


def _default_format(accept: str | None, legacy_pickle_default: bool) -> FrameFormat:
    if accept and "image/png" in _media_types(accept):
        return FrameFormat.PNG
    return FrameFormat.PICKLE if legacy_pickle_default else FrameFormat.RAW


def _media_types(accept: str) -> set[str]:
    """The media types of an Accept header, parameters (q=...) dropped."""
    return {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}


def render_frame(image: Image, factor: int, frame_format: FrameFormat) -> Response:
    """``image`` decoded, reduced by ``factor`` and encoded as ``frame_format``."""
    try:
        array = liveview.downsample(liveview.decode(image), factor)
    except liveview.FrameDecodeError as exc:
        logger.warning("live view: %s", exc)
        raise HTTPException(status_code=500, detail=str(exc)) from exc
    header, raw = liveview.to_raw(array, image)
    if frame_format is FrameFormat.JSON:
        return JSONResponse(header, headers=NO_CACHE)
    if frame_format is FrameFormat.PNG:
        return Response(liveview.to_png(array), media_type="image/png", headers=NO_CACHE)
    if frame_format is FrameFormat.PICKLE:
        payload = liveview.to_pickle(array, header)
        return Response(payload, media_type="image/pickle", headers=NO_CACHE)
    headers = {**NO_CACHE, "X-Frame-Header": json.dumps(header, default=str)}
    return Response(raw, media_type="application/octet-stream", headers=headers)


def prometheus_text(metrics: dict[str, float], state: str | None) -> str:
    """Prometheus text format: ``receiver_`` names, plus the state as a 0/1 gauge per state.

    Names ending in ``_total`` are typed as counters, the rest as gauges, as
    Prometheus' naming convention has it.
    """
    lines = []
    for name, value in sorted(metrics.items()):
        full = _metric_name(name)
        kind = "counter" if full.endswith("_total") else "gauge"
        lines += [f"# TYPE {full} {kind}", f"{full} {_metric_value(value)}"]
    lines.append(f"# TYPE {METRIC_PREFIX}state gauge")
    lines += [f'{METRIC_PREFIX}state{{state="{s}"}} {int(s == state)}' for s in STATES]
    return "\n".join(lines) + "\n"


def _metric_name(name: str) -> str:
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name)
    return cleaned if cleaned.startswith(METRIC_PREFIX) else METRIC_PREFIX + cleaned


def _metric_value(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class _Server(uvicorn.Server):
    """uvicorn that says when its socket serves, so ``start`` waits on readiness, not time."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()


class ApiServer:
    """Serves an app from a background thread; no signal handlers, no logging setup.

    The host process (a Tango device server, a CLI) owns signals and logging,
    so uvicorn is told not to configure logging, and it installs no signal
    handlers outside the main thread. The socket is bound here, in the
    caller's thread, so a busy port is an immediate error and port 0 is known
    before the thread starts.
    """

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, access_log: bool = False
    ) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._access_log = access_log
        self._socket: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        """The bound port (the one picked by the OS when 0 was asked)."""
        if self._socket is None:
            raise ApiServerError("the API server is not started: call start() first")
        return self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        """Base URL of the running API, e.g. ``http://127.0.0.1:5000``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise ApiServerError("the API server is already started")
        self._socket = _bind(self._host, self._requested_port)
        self._failure = None
        ready = threading.Event()
        self._server = _Server(self._config(), ready)
        self._thread = threading.Thread(
            target=self._serve,
            args=(self._server, self._socket, ready),
            name="receiver-api",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(timeout) or not self._server.started:
            failure = self._failure
            self.stop(timeout)
            reason = repr(failure) if failure else f"not ready within {timeout} s"
            raise ApiServerError(
                f"the HTTP API on {self._host}:{self._requested_port} did not start: {reason}; "
                "see the log of logger 'uvicorn.error'"
            ) from failure
        logger.info("HTTP API serving on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, close the port and join the thread (idempotent)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
            if self._thread.is_alive():
                raise ApiServerError(
                    f"the HTTP API thread did not stop within {2 * timeout} s; "
                    "a request handler is probably stuck"
                )
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self._app,
            log_config=None,
            access_log=self._access_log,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )

    def _serve(self, server: _Server, sock: socket.socket, ready: threading.Event) -> None:
        try:
            server.run(sockets=[sock])
        except (Exception, SystemExit) as exc:  # uvicorn exits with SystemExit on startup failure
            self._failure = exc
            logger.exception("the HTTP API server stopped unexpectedly")
        finally:
            ready.set()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ApiServerError(
            f"cannot listen on {host}:{port} ({exc}); choose another api_port or stop "
            "the process that holds it"
        ) from exc


INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>stream-receiver</title>
<style>
body { font-family: sans-serif; margin: 1em; }
img { max-width: 100%; image-rendering: pixelated; }
pre { background: #eee; padding: 0.5em; }
</style>
</head>
<body>
<h1>stream-receiver</h1>
<pre id="status">loading...</pre>
<p id="note"></p>
<img id="frame" alt="latest frame">
<script>
const statusBox = document.getElementById("status");
const note = document.getElementById("note");
const frame = document.getElementById("frame");
frame.onload = () => { note.textContent = ""; frame.hidden = false; };
frame.onerror = () => { note.textContent = "no frame to show yet"; frame.hidden = true; };
async function refresh() {
  try {
    const reply = await fetch("status", {cache: "no-store"});
    statusBox.textContent = JSON.stringify(await reply.json(), null, 2);
  } catch (err) {
    statusBox.textContent = "receiver unreachable: " + err;
  }
  frame.src = "last_frame?format=png&t=" + Date.now();
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""

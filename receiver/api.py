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
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Protocol

from fastapi import Body, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field, StrictInt

from http_service.limits import BodySizeLimit
from http_service.server import HttpServiceError, ThreadedServer
from protocols.model import Image
from receiver import liveview
from receiver.status import ReceiverStatus, State
from receiver.stream_items import ModuleImage

logger = logging.getLogger(__name__)

METRIC_PREFIX = "receiver_"
MAX_DOWNSAMPLE = 4096
"""The largest live-view factor: a 16M detector (4371 x 4150) becomes 2 x 2 pixels."""
MAX_BODY_BYTES = 64 * 1024
"""Request bodies are tiny JSON documents; anything larger is refused with 413 unread."""
NO_CACHE = {"Cache-Control": "no-store"}
"""The latest frame changes under the same URL: a cached copy would show a stale image."""


class ReceiverView(Protocol):
    """What the API may see and change of a running receiver; it must be thread-safe."""

    def status_model(self) -> ReceiverStatus:
        """The ``/status`` document."""
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
    """The forms of ``/last_frame``; pickle only for MAX IV's clients, which unpickle it.

    ``pickle`` is exactly MAX IV's form: the header and the blobs as received
    (a bslz4 frame stays its chunk), for clients that decode it themselves
    (``liveview.maxiv_parts``); the other forms are decoded pixels.
    """

    RAW = "raw"
    JSON = "json"
    PNG = "png"
    PICKLE = "pickle"


class DownsampleBody(BaseModel):
    """``{"value": 4}``: the JSON form of ``POST /downsample``."""

    value: StrictInt = Field(
        ge=1, le=MAX_DOWNSAMPLE, description="live-view reduction factor, 1 = full frame"
    )


class ApiServerError(HttpServiceError):
    """The HTTP API could not be started or stopped."""


def create_app(view: ReceiverView, legacy_pickle_default: bool = False) -> FastAPI:
    """The API over ``view``.

    ``legacy_pickle_default`` is MAX IV drop-in mode: its live viewers ask
    ``/last_frame`` without saying which format and expect the pickle.
    Endpoints are plain ``def`` so FastAPI runs them in its threadpool: decoding
    a frame or waiting on the receiver's locks must never block the event loop.
    """
    app = FastAPI(title="stream-receiver", summary="detector-daq stream-receiver API")
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_exception_handler(RequestValidationError, _refused_request)
    _add_status_routes(app, view)
    _add_downsample_routes(app, view)
    _add_frame_routes(app, view, legacy_pickle_default)
    return app


def _add_status_routes(app: FastAPI, view: ReceiverView) -> None:
    @app.get("/status", response_model=ReceiverStatus)
    def status() -> ReceiverStatus:
        """State (idle, running, error) and what the receiver reports beside it."""
        return view.status_model()

    @app.get("/received_frames")
    def received_frames() -> dict[str, int]:
        """Frames received in the current or last series (MAX IV's form)."""
        return {"value": view.received_frames}

    @app.post("/reset", response_model=ReceiverStatus)
    def reset() -> ReceiverStatus:
        """Leave the error state; answers the new status so the caller sees it worked."""
        view.reset()
        return view.status_model()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReceiverMetrics(view))

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """Prometheus text exposition (format 0.0.4), for dashboards and alerts."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

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
        value: Annotated[
            int | None, Query(ge=1, le=MAX_DOWNSAMPLE, description="reduction factor")
        ] = None,
        body: Annotated[DownsampleBody | None, Body()] = None,
    ) -> dict[str, int]:
        """Set the factor as ``?value=4`` (MAX IV's clients) or a JSON body ``{"value": 4}``.

        1 to MAX_DOWNSAMPLE, and no more than the latest frame is wide or high
        (a larger factor would show one pixel); otherwise 422 with the reason.
        """
        factor = _one_factor(value, body)
        _check_against_frame(factor, view.last_frame(), "query" if body is None else "body")
        view.downsample = factor
        logger.info("live-view downsample factor set to %d", factor)
        return {"value": factor}


def _one_factor(query: int | None, body: DownsampleBody | None) -> int:
    """The factor given in exactly one of the two places, or a 422 that says how to give it."""
    if body is None and query is not None:
        return query
    if query is None and body is not None:
        return body.value
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


def _check_against_frame(factor: int, image: Image | None, given_in: str) -> None:
    """A 422 if ``factor`` is larger than the latest frame's largest side."""
    if image is None:
        return
    sides = _shown_shape(image)
    largest = max(sides, default=1)
    if factor <= largest:
        return
    raise RequestValidationError(
        [
            {
                "type": "less_than_equal",
                "loc": (given_in, "value"),
                "msg": f"a downsample factor of {factor} is larger than the latest frame "
                f"({' x '.join(map(str, sides))} pixels), which it would reduce to one pixel; "
                f"use at most {largest}",
                "input": factor,
                "ctx": {"le": largest},
            }
        ]
    )


def _shown_shape(image: Image) -> tuple[int, ...]:
    """The sides the live view reduces: the last two axes, the full image of a module frame."""
    if isinstance(image, ModuleImage) and image.layout is not None:
        return tuple(image.layout.full_shape)
    return tuple(image.shape[-2:])


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
        ``pickle`` (the default in MAX IV drop-in mode) is MAX IV's
        ``[header, blob, ...]`` as received, not decoded, downsampled only
        when MAX IV would (an uncompressed uint16 frame).
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
    """``image`` decoded, reduced by ``factor`` and encoded as ``frame_format``.

    ``pickle`` is MAX IV's form of the frame as received: nothing is decoded.
    """
    try:
        if frame_format is FrameFormat.PICKLE:
            payload = liveview.to_pickle(image, factor)
            return Response(payload, media_type="image/pickle", headers=NO_CACHE)
        array = liveview.downsample(liveview.decode(image), factor)
    except liveview.FrameDecodeError as exc:
        logger.warning("live view: %s", exc)
        raise HTTPException(status_code=500, detail=str(exc)) from exc
    header, raw = liveview.to_raw(array, image)
    if frame_format is FrameFormat.JSON:
        return JSONResponse(header, headers=NO_CACHE)
    if frame_format is FrameFormat.PNG:
        return Response(liveview.to_png(array), media_type="image/png", headers=NO_CACHE)
    headers = {**NO_CACHE, "X-Frame-Header": json.dumps(header, default=str)}
    return Response(raw, media_type="application/octet-stream", headers=headers)


class ReceiverMetrics(Collector):
    """The receiver's numbers as Prometheus metrics, read from the view at each scrape.

    A collector of the app's own registry, not of prometheus_client's global
    one: a process may serve several receivers (tests, an embedded one beside
    a remote one), and each ``/metrics`` must show only its own. Names get the
    ``receiver_`` prefix; names ending in ``_total`` are counters, the rest
    gauges, as Prometheus' naming convention has it; the state is a 0/1 gauge
    per state, so an alert can fire on ``receiver_state{state="error"} == 1``.
    """

    def __init__(self, view: ReceiverView) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(self._view.metrics().items()):
            full = _metric_name(name)
            family = CounterMetricFamily if full.endswith("_total") else GaugeMetricFamily
            yield family(full, f"the receiver's {name.replace('_', ' ')}", value=float(value))
        current = self._view.status_model().state
        state = GaugeMetricFamily(
            f"{METRIC_PREFIX}state",
            "1 for the receiver's state, 0 for the others",
            labels=["state"],
        )
        for each in State:
            state.add_metric([each.value], float(each is current))
        yield state


def _metric_name(name: str) -> str:
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name)
    return cleaned if cleaned.startswith(METRIC_PREFIX) else METRIC_PREFIX + cleaned


class ApiServer(ThreadedServer):
    """Serves the receiver's app from a background thread named ``receiver-api``."""

    error = ApiServerError

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, access_log: bool = False
    ) -> None:
        super().__init__(
            app,
            host,
            port,
            name="receiver-api",
            what="the HTTP API",
            busy_hint="choose another api_port or stop the process that holds it",
            access_log=access_log,
        )

    def start(self, timeout: float = 10.0) -> None:
        super().start(timeout)
        logger.info("HTTP API serving on %s", self.url)


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


def _refused_request(request: Request, exc: Exception) -> JSONResponse:
    """422 with what is wrong, in words only: FastAPI's own answer echoes the input, which
    fails to encode for a body such as ``{"value": 1e400}`` or bytes that are not UTF-8."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", ""))}
        for error in errors
    ]
    return JSONResponse(status_code=422, content={"detail": detail})

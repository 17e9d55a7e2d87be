"""The lambda-streamer's HTTP control channel (:mod:`protocols.lambda_control`).

HTTP because the backend already speaks it to the receiver, a person can
look with curl, and every refusal carries its reason in the body. The
handlers are plain ``def``: arming and stopping wait on the SDK and the
module threads, which must not block uvicorn's event loop.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException

from http_service.limits import BodySizeLimit
from protocols.lambda_control import ArmRequest, StreamerStatus
from streamers.lambda_streamer import ArmRefused, LambdaStreamer, StreamerBusy

MAX_BODY_BYTES = 1 << 20


def create_app(streamer: LambdaStreamer) -> FastAPI:
    app = FastAPI(title="lambda-streamer", summary="detector-daq Lambda DCU streamer control")
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)

    @app.get("/status", response_model=StreamerStatus)
    def status() -> StreamerStatus:
        """State (idle, armed, error), the SDK's system and every module's stream."""
        return streamer.status()

    @app.post("/arm", response_model=StreamerStatus)
    def arm(request: ArmRequest) -> StreamerStatus:
        """Configure the SDK, start it and every module's stream for one series."""
        try:
            return streamer.arm(request)
        except StreamerBusy as exc:
            raise HTTPException(409, str(exc)) from None
        except ArmRefused as exc:
            raise HTTPException(422, str(exc)) from None

    @app.post("/stop", response_model=StreamerStatus)
    def stop() -> StreamerStatus:
        """End the series; answers once every module has sent its series end."""
        return streamer.stop()

    return app

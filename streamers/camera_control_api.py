"""camera-streamer's HTTP control channel (:mod:`protocols.camera_control`).

Plain ``def`` handlers: arming and stopping wait on the SDK and the series
thread, which must not block uvicorn's event loop.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException

from http_service.limits import BodySizeLimit
from protocols.camera_control import CameraArm, CameraStatus
from streamers.camera_adapter import CameraError, CameraRefused
from streamers.camera_stream import CameraStreamer, StreamerBusy

MAX_BODY_BYTES = 1 << 20


def create_app(streamer: CameraStreamer) -> FastAPI:
    app = FastAPI(title="camera-streamer", summary="detector-daq camera streamer control")
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)

    @app.get("/status", response_model=CameraStatus)
    def status() -> CameraStatus:
        """State (idle, armed, error), the camera and its stream."""
        return streamer.status()

    @app.post("/arm", response_model=CameraStatus)
    def arm(request: CameraArm) -> CameraStatus:
        """Configure and start the camera for one series."""
        try:
            return streamer.arm(request)
        except StreamerBusy as exc:
            raise HTTPException(409, str(exc)) from None
        except CameraRefused as exc:
            raise HTTPException(422, str(exc)) from None
        except CameraError as exc:
            raise HTTPException(500, str(exc)) from None

    @app.post("/trigger", response_model=CameraStatus)
    def trigger() -> CameraStatus:
        """One software trigger."""
        try:
            return streamer.trigger()
        except StreamerBusy as exc:
            raise HTTPException(409, str(exc)) from None
        except CameraError as exc:
            raise HTTPException(500, str(exc)) from None

    @app.post("/stop", response_model=CameraStatus)
    def stop() -> CameraStatus:
        """End the series; answers once its series end is sent."""
        return streamer.stop()

    return app

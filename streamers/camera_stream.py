"""camera-streamer's one code path: a camera adapter's frames as a STINS stream.

The same object serves both deployments: inside ``camera-streamer`` behind
its HTTP control (:mod:`streamers.camera_control_api`), or inside the Tango
device server when it runs on the camera's machine (the camera backends
hold it directly, as MAX IV runs its camera streamers). Each series runs in
a thread of its own: header, the frames as the SDK delivers them (numbered
by the adapter, in the adapter's wire format: uint16 pixels or packed
12-bit), series end. ``msg_number`` runs on across series.

The series ends with its last frame number, so a frame the camera lost
(a gap in the adapter's numbering, which the receiver reports) ends it no
later. A camera that stops delivering is an error, never a silent hang: with its
own clock (INTERNAL, EXTERNAL_START once started) a frame is due every
frame time, so no frame for ``frame_time + stall_margin_s`` is a fault
named with the frame it stopped after; with triggers from outside,
silence only means no triggers. An SDK failure ends the series with the
SDK's words.
"""

from __future__ import annotations

import logging
import threading
import time

import zmq

from protocols import stins
from protocols.camera_control import CameraArm, CameraState, CameraStatus, CameraTrigger
from protocols.model import Buffer
from streamers.camera_adapter import CameraAdapter, CameraError

logger = logging.getLogger(__name__)

POLL_S = 0.1
SEND_POLL_MS = 100
CLOCKED = frozenset({CameraTrigger.INTERNAL, CameraTrigger.EXTERNAL_START})
"""Modes in which the camera's own clock paces the frames."""
JOIN_TIMEOUT_S = 10.0


class StreamerBusy(RuntimeError):
    """A series is running: stop it first."""


class CameraStreamer:
    """One camera's STINS stream; arm, trigger and stop from any thread."""

    def __init__(
        self,
        adapter: CameraAdapter,
        endpoint: str,
        stall_margin_s: float = 2.0,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self._adapter = adapter
        self._stall_margin_s = stall_margin_s
        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        self._socket = self._context.socket(zmq.PUSH)
        self._socket.linger = 0
        self._socket.sndtimeo = SEND_POLL_MS
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close()
            if self._own_context:
                self._context.term()
            raise OSError(f"cannot bind the camera's stream {endpoint}: {exc.strerror}") from None
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._lock = threading.Lock()
        self._msg_number = 0
        self._series = 0
        self._frames = 0
        self._sent = 0
        self._error = ""
        self._stop = threading.Event()
        self._shutdown = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def status(self) -> CameraStatus:
        adapter = self._adapter
        with self._lock:
            error, series, frames, sent = self._error, self._series, self._frames, self._sent
        if error:
            state = CameraState.ERROR
        elif self.running:
            state = CameraState.ARMED
        else:
            state = CameraState.IDLE
        return CameraStatus(
            sdk=adapter.sdk,
            model=adapter.model,
            serial=adapter.serial,
            sensor_shape=adapter.sensor_shape,
            image_shape=adapter.image_shape,
            wire_format=adapter.wire_format,
            triggers=sorted(adapter.triggers),
            endpoint=self.endpoint,
            state=state,
            error=error,
            series=series,
            frames=frames,
            frames_sent=sent,
        )

    def arm(self, arm: CameraArm) -> CameraStatus:
        """Configure, start and stream one series; CameraRefused/CameraError with the SDK's
        words, StreamerBusy while one runs."""
        with self._lock:
            if self.running:
                raise StreamerBusy("a series is running: stop it first")
            self._adapter.configure(arm)
            self._adapter.start()
            self._series += 1
            self._frames, self._sent, self._error = arm.frames, 0, ""
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, args=(arm,), name=f"camera-series-{self._series}"
            )
            self._thread.start()
        logger.info(
            "series %d: %d frames, exposure %g s, frame time %g s, trigger %s, file %r",
            self._series,
            arm.frames,
            arm.exposure_time,
            arm.frame_time,
            arm.trigger.value,
            arm.filename,
        )
        return self.status()

    def trigger(self) -> CameraStatus:
        if not self.running:
            raise StreamerBusy("no series is running: arm one in the SOFTWARE trigger mode first")
        self._adapter.software_trigger()
        return self.status()

    def stop(self) -> CameraStatus:
        """End the series now; returns once its series end is sent. Clears the last error."""
        self._stop.set()
        if self.running:
            self._adapter.stop()
        thread = self._thread
        if thread is not None:
            thread.join(JOIN_TIMEOUT_S)
        with self._lock:
            if thread is not None and thread.is_alive():
                self._error = (
                    f"the series did not end within {JOIN_TIMEOUT_S:g} s of stop: is the "
                    "receiver taking the camera's stream?"
                )
            else:
                self._error = ""
        return self.status()

    def close(self) -> None:
        self._shutdown.set()
        self.stop()
        self._adapter.close()
        self._socket.close()
        if self._own_context:
            self._context.term()

    def _run(self, arm: CameraArm) -> None:
        try:
            meta = {
                "camera": self._adapter.model,
                "serial": self._adapter.serial,
                "count_time": arm.exposure_time,
                "frame_time": arm.frame_time,
            }
            if self._send(stins.encode_header(self._next_number(), arm.filename, meta)):
                self._frames_of(arm)
        except CameraError as exc:
            self._fail(str(exc))
        except Exception as exc:
            logger.exception("the camera series failed")
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            if not self._stop.is_set():
                try:
                    self._adapter.stop()
                except CameraError as exc:
                    self._fail(str(exc))
            if not self._shutdown.is_set():
                self._send(stins.encode_series_end(self._next_number()))

    def _frames_of(self, arm: CameraArm) -> None:
        shape = list(self._adapter.image_shape)
        wire = self._adapter.wire_format
        sent = 0
        following = 0
        last_frame_at = time.monotonic()
        while following < arm.frames and not self._stop.is_set():
            frame = self._adapter.next_frame(POLL_S)
            if frame is None:
                self._check_stall(arm, sent, last_frame_at)
                if self._error:
                    return
                continue
            if frame.number >= arm.frames:
                return
            following = frame.number + 1
            last_frame_at = time.monotonic()
            image = stins.encode_image(
                self._next_number(), frame.number, frame.blob, shape, "uint16", wire
            )
            if not self._send(image):
                return
            sent += 1
            with self._lock:
                self._sent = sent

    def _check_stall(self, arm: CameraArm, sent: int, last_frame_at: float) -> None:
        if arm.trigger not in CLOCKED:
            return
        silent = time.monotonic() - last_frame_at
        limit = arm.frame_time + arm.exposure_time + self._stall_margin_s
        if silent > limit:
            after = f"after frame {sent - 1}" if sent else "before its first frame"
            self._fail(
                f"the camera delivered no frame for {silent:.1f} s {after} (a frame is due "
                f"every {arm.frame_time:g} s): the SDK's wait for a buffer timed out"
            )

    def _send(self, parts: list[Buffer]) -> bool:
        """Send, waiting as long as the receiver needs; False when shutting down."""
        while not self._shutdown.is_set():
            try:
                self._socket.send_multipart(parts, copy=False)
                return True
            except zmq.Again:
                continue
        return False

    def _next_number(self) -> int:
        number = self._msg_number
        self._msg_number += 1
        return number

    def _fail(self, reason: str) -> None:
        with self._lock:
            self._error = reason
        logger.error("%s", reason)

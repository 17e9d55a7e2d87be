"""One Lambda module's STINS stream: its PUSH socket, and a thread per series reading the SDK.

Each module is read by its own thread, as libxsp's receivers are meant to be
read, and sent on its own socket (MAX IV's ports 9010..9013), so that a
module the network or the receiver holds back never holds back another.
The stream is what ``receiver/module_match.py`` joins: the header's 2nd part
places the module (``x``, ``y``, ``rotation`` in degrees, ``full_shape``),
every image announces the stack ``[K, H, W]`` with ``chunks`` ``[1, H, W]``
and carries this module's plane, compressed here with bitshuffle-LZ4 so that
the network carries what the file stores. ``msg_number`` runs on across
series, one stream, one numbering.

A frame the SDK skips (``lost``) or flags (``missing``, ``corrupt``) is not
sent: the receiver then marks it missing for this module, in the file, and
the streamer lists it in its status. A module that delivers nothing while the
detector is busy is ``stalled`` after the stall timeout (see
:class:`Progress` for how external triggers are told apart from a stall).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from protocols import bslz4, stins
from protocols.lambda_control import (
    DROPPED_SHOWN,
    ArmRequest,
    DroppedFrame,
    ModuleState,
    ModuleStatus,
    SdkTrigger,
)
from protocols.model import Buffer
from streamers.lambda_sdk.binding import (
    FrameStatus,
    LambdaSdkError,
    LambdaSystem,
    ModuleInfo,
    SystemInfo,
)

logger = logging.getLogger(__name__)

POLL_S = 0.1
"""How long one SDK read waits before the thread looks at stop, stall and shutdown."""
SEND_POLL_MS = 100


@dataclass
class Progress:
    """When each module of this streamer last delivered a frame, shared by their threads.

    In SOFTWARE (internal) mode frames are due every shutter time, so silence
    longer than the stall timeout is a stall. With external triggers silence
    may only mean no triggers; a module is stalled then only if another
    module of this streamer delivered meanwhile.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    last: dict[int, float] = field(default_factory=dict)

    def delivered(self, module: int) -> None:
        with self.lock:
            self.last[module] = time.monotonic()

    def others_since(self, module: int, since: float) -> bool:
        with self.lock:
            return any(t > since for m, t in self.last.items() if m != module)


class ModuleStream:
    """The stream of module ``position`` of ``system`` (its index in the system's list)."""

    def __init__(
        self,
        system: LambdaSystem,
        position: int,
        detector: SystemInfo,
        context: zmq.Context[zmq.Socket[bytes]],
        endpoint: str,
        stall_timeout_s: float,
        on_change: Callable[[], None],
    ) -> None:
        self._system = system
        self._position = position
        self.info: ModuleInfo = system.modules[position]
        self._detector = detector
        self._stall_timeout_s = stall_timeout_s
        self._on_change = on_change
        self._socket = context.socket(zmq.PUSH)
        self._socket.linger = 0
        self._socket.sndtimeo = SEND_POLL_MS
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close()
            raise OSError(
                f"module {self.info.id}: cannot bind its stream {endpoint}: {exc.strerror}"
            ) from None
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._msg_number = 0
        self._lock = threading.Lock()
        self._state = ModuleState.IDLE
        self._error = ""
        self._sent = 0
        self._dropped: list[DroppedFrame] = []
        self._dropped_count = 0
        self._stop = threading.Event()
        self._shutdown = threading.Event()
        self._thread: threading.Thread | None = None

    def status(self) -> ModuleStatus:
        with self._lock:
            return ModuleStatus(
                id=self.info.id,
                index=self.info.index,
                endpoint=self.endpoint,
                state=self._state,
                frames_sent=self._sent,
                dropped_count=self._dropped_count,
                dropped=list(self._dropped),
                error=self._error,
            )

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self, request: ArmRequest, progress: Progress) -> None:
        """Send the series' header and stream its frames from a thread of its own."""
        with self._lock:
            self._state, self._error = ModuleState.RUNNING, ""
            self._sent, self._dropped, self._dropped_count = 0, [], 0
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(request, progress), name=f"module-{self.info.id}"
        )
        self._thread.start()

    def stop(self) -> None:
        """Read what the SDK still has (it was told to stop), then send the series end."""
        self._stop.set()

    def clear_error(self) -> None:
        """Forget the last series' failure; only between series."""
        with self._lock:
            if not self.running:
                self._state, self._error = ModuleState.IDLE, ""

    def join(self, timeout_s: float | None = None) -> bool:
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return not self.running

    def close(self) -> None:
        """Give up at once (the streamer is shutting down) and close the socket."""
        self._shutdown.set()
        self._stop.set()
        self.join()
        self._socket.close()

    def _run(self, request: ArmRequest, progress: Progress) -> None:
        try:
            header = stins.encode_header(self._next_number(), request.filename, self._meta(request))
            if self._send(header):
                self._frames(request, progress)
        except LambdaSdkError as exc:
            self._fail(f"the SDK failed: {exc}")
        except Exception as exc:
            logger.exception("module %s failed", self.info.id)
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            if not self._shutdown.is_set():
                self._send(stins.encode_series_end(self._next_number()))
            with self._lock:
                if self._state in (ModuleState.RUNNING, ModuleState.STALLED):
                    self._state = ModuleState.IDLE
            self._on_change()

    def _frames(self, request: ArmRequest, progress: Progress) -> None:
        info, position = self.info, self._position
        stacked = [self._detector.detector_modules, *info.shape]
        chunks = [1, *info.shape]
        expected = 0
        silent_since = time.monotonic()
        while expected < request.frames and not self._shutdown.is_set():
            frame = self._system.next_frame(position, POLL_S)
            if frame is None:
                if not self._system.busy():
                    break
                self._check_stall(request, progress, silent_since, expected)
                continue
            silent_since = time.monotonic()
            progress.delivered(position)
            self._recovered()
            for lost in range(expected, min(frame.number, request.frames)):
                self._drop(lost, "lost")
            expected = frame.number + 1
            if frame.status is not FrameStatus.OK:
                self._system.release(position, frame)
                self._drop(frame.number, frame.status.name.lower())
                continue
            blob = bslz4.compress(frame.pixels)
            self._system.release(position, frame)
            image = stins.encode_image(
                self._next_number(),
                frame.number,
                blob,
                stacked,
                info.dtype,
                "bslz4",
                chunks=chunks,
            )
            if not self._send(image):
                return
            with self._lock:
                self._sent += 1
        if expected < request.frames and not self._stop.is_set():
            for lost in range(expected, request.frames):
                self._drop(lost, "lost")

    def _check_stall(
        self, request: ArmRequest, progress: Progress, silent_since: float, expected: int
    ) -> None:
        silent = time.monotonic() - silent_since
        limit = self._stall_timeout_s + (request.shutter_time if expected == 0 else 0.0)
        if silent < limit or self._stop.is_set():
            return
        internal = request.trigger is SdkTrigger.SOFTWARE
        if not (internal or progress.others_since(self._position, silent_since)):
            return
        with self._lock:
            if self._state is ModuleState.STALLED:
                return
            after = f"after frame {expected - 1}" if expected else "before its first frame"
            self._state = ModuleState.STALLED
            self._error = (
                f"module {self.info.id} (index {self.info.index}) delivered no frame for "
                f"{silent:.1f} s {after} while the detector is busy: the module stalled "
                "(check its link to the DCU; Stop ends the series)"
            )
        logger.error("%s", self._error)
        self._on_change()

    def _recovered(self) -> None:
        with self._lock:
            if self._state is not ModuleState.STALLED:
                return
            self._state, self._error = ModuleState.RUNNING, ""
        logger.warning("module %s delivers frames again", self.info.id)
        self._on_change()

    def _drop(self, frame: int, reason: str) -> None:
        with self._lock:
            self._dropped_count += 1
            if len(self._dropped) < DROPPED_SHOWN:
                self._dropped.append(DroppedFrame(frame=frame, reason=reason))
        logger.warning("module %s: frame %d not streamed (%s)", self.info.id, frame, reason)

    def _send(self, parts: list[Buffer]) -> bool:
        """Send, waiting as long as the receiver needs; False when shutting down."""
        while not self._shutdown.is_set():
            try:
                self._socket.send_multipart(parts, copy=False)
                return True
            except zmq.Again:
                continue
        return False

    def _meta(self, request: ArmRequest) -> dict[str, object]:
        info = self.info
        return {
            **request.meta,
            "module": info.id,
            "x": info.x,
            "y": info.y,
            "rotation": info.rotation % 4 * 90,
            "full_shape": list(self._detector.full_shape),
        }

    def _next_number(self) -> int:
        number = self._msg_number
        self._msg_number += 1
        return number

    def _fail(self, reason: str) -> None:
        with self._lock:
            self._state, self._error = ModuleState.FAILED, f"module {self.info.id}: {reason}"
        logger.error("%s", self._error)
        self._on_change()

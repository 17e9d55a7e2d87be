"""The Andor SDK3 adapter of camera-streamer (Zyla, Balor), over ``streamers.andor_sdk``.

Andor's acquisition is a buffer queue: the client queues buffers of
ImageSizeBytes, the SDK fills them in order and ``AT_WaitBuffer`` hands
them back. The adapter keeps :data:`BUFFERS` queued, copies each filled
frame out in the wire format and queues its buffer again at once, so the
SDK always has somewhere to write. Frames carry no number of their own here
(the SDK's metadata is not enabled): they are numbered in the order the
buffers come back, which is the order they were taken.

Pixel encodings streamed: Mono16 and Mono12 (12 bits in a 16-bit word),
both as uint16 (wire ``none``), and Mono12Packed as it comes, rows without
their padding (wire ``mono12packed``, which the receiver's transform of that
name unpacks): three quarters of the bytes, and a Zyla's 100 frames/s,
which its interface carries only packed.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from protocols import mono12packed
from protocols.camera_control import CameraArm, CameraTrigger
from streamers.andor_sdk.binding import (
    AndorCamera,
    AndorError,
    AndorLibrary,
    ErrorCode,
    ImageLayout,
    LibraryNotFound,
)
from streamers.camera_adapter import CameraAdapter, CameraError, CameraFrame, CameraRefused

BUFFERS = 16
"""Buffers kept queued: at 100 frames/s, 160 ms of frames the streamer may fall behind by."""
TRIGGER_MODES = {
    CameraTrigger.INTERNAL: "Internal",
    CameraTrigger.SOFTWARE: "Software",
    CameraTrigger.EXTERNAL_START: "External Start",
    CameraTrigger.EXTERNAL: "External",
    CameraTrigger.GATE: "External Exposure",
}
"""Our trigger modes -> Andor's TriggerMode strings."""
ENCODINGS = ("Mono16", "Mono12", "Mono12Packed")


def _error(exc: AndorError) -> CameraError:
    return CameraError(f"Andor SDK3: {exc}")


class AndorAdapter(CameraAdapter):
    sdk = "andor"

    def __init__(self, library: str | None, index: int = 0, pixel_encoding: str = "Mono16") -> None:
        if pixel_encoding not in ENCODINGS:
            raise CameraRefused(
                f"PixelEncoding {pixel_encoding!r}: an Andor camera is streamed as "
                f"{' or '.join(ENCODINGS)}"
            )
        try:
            self._library = AndorLibrary(library)
            self._library.initialise()
        except LibraryNotFound as exc:
            raise CameraError(str(exc)) from None
        except AndorError as exc:
            raise _error(exc) from None
        try:
            self._camera: AndorCamera = self._library.open(index)
            camera = self._camera
            self.model = camera.get_string("CameraModel")
            self.serial = camera.get_string("SerialNumber")
            self.sensor_shape = (camera.get_int("SensorHeight"), camera.get_int("SensorWidth"))
            options = set(camera.enum_options("TriggerMode"))
            self.triggers = frozenset(t for t, name in TRIGGER_MODES.items() if name in options)
            encodings = camera.enum_options("PixelEncoding")
            if pixel_encoding not in encodings:
                raise CameraRefused(
                    f"PixelEncoding {pixel_encoding!r} is not available on this {self.model}: "
                    f"it offers {', '.join(encodings)}"
                )
            camera.set_enum("PixelEncoding", pixel_encoding)
        except AndorError as exc:
            self._library.finalise()
            raise _error(exc) from None
        except CameraError:
            self._library.finalise()
            raise
        self._packed = pixel_encoding == "Mono12Packed"
        self._layout: ImageLayout | None = None
        self._stopped = threading.Event()

    @property
    def image_shape(self) -> tuple[int, int]:
        try:
            return (self._camera.get_int("AOIHeight"), self._camera.get_int("AOIWidth"))
        except AndorError as exc:
            raise _error(exc) from None

    @property
    def wire_format(self) -> str:
        return "mono12packed" if self._packed else "none"

    def configure(self, arm: CameraArm) -> None:
        mode = TRIGGER_MODES.get(arm.trigger)
        if arm.trigger not in self.triggers or mode is None:
            raise CameraRefused(
                f"this {self.model} has no trigger mode {arm.trigger.value}: it offers "
                f"{', '.join(t.value for t in sorted(self.triggers))}"
            )
        camera = self._camera
        try:
            self._set_aoi(arm.aoi)
            camera.set_enum("TriggerMode", mode)
            camera.set_enum("CycleMode", "Fixed")
            camera.set_int("FrameCount", arm.frames)
            low, high = camera.float_range("ExposureTime")
            if not low <= arm.exposure_time <= high:
                raise CameraRefused(
                    f"ExposureTime {arm.exposure_time:g} s is outside this {self.model}'s "
                    f"{low:g} .. {high:g} s"
                )
            camera.set_float("ExposureTime", arm.exposure_time)
            if arm.trigger in (CameraTrigger.INTERNAL, CameraTrigger.EXTERNAL_START):
                self._set_frame_time(arm)
            self._layout = camera.image_layout()
        except AndorError as exc:
            raise _error(exc) from None

    def _set_aoi(self, aoi: tuple[int, int, int, int] | None) -> None:
        """The AOI, in Andor's order (width before left, height before top; left and top
        1-based); a region the sensor cannot hold is refused with the sensor's size."""
        rows, columns = self.sensor_shape
        x, y, width, height = aoi or (0, 0, columns, rows)
        if x + width > columns or y + height > rows:
            raise CameraRefused(
                f"AOI {width} x {height} at column {x}, row {y} does not fit this {self.model}'s "
                f"{columns} x {rows} sensor"
            )
        camera = self._camera
        for feature, value in (
            ("AOIWidth", width),
            ("AOILeft", x + 1),
            ("AOIHeight", height),
            ("AOITop", y + 1),
        ):
            low, high = camera.int_range(feature)
            if not low <= value <= high:
                raise CameraRefused(
                    f"{feature} {value} is outside this {self.model}'s {low} .. {high} for an "
                    f"AOI {width} x {height} at column {x}, row {y}"
                )
            camera.set_int(feature, value)

    def _set_frame_time(self, arm: CameraArm) -> None:
        camera = self._camera
        fastest = camera.float_range("FrameRate")[1]
        shortest = 1.0 / fastest
        if arm.frame_time < shortest * (1 - 1e-9):
            height, width = self.image_shape
            raise CameraRefused(
                f"FrameTime {arm.frame_time:g} s is shorter than the {shortest:.6g} s this "
                f"{self.model} needs at {width} x {height} with ExposureTime "
                f"{arm.exposure_time:g} s (at most {fastest:.6g} frames/s)"
            )
        camera.set_float("FrameRate", min(1.0 / arm.frame_time, fastest))

    def start(self) -> None:
        camera, layout = self._camera, self._layout
        if layout is None:
            raise CameraError("configure the camera before starting it")
        self._stopped.clear()
        try:
            camera.flush()
            for _ in range(BUFFERS):
                camera.queue(camera.new_buffer())
            camera.command("AcquisitionStart")
        except AndorError as exc:
            raise _error(exc) from None
        self._taken = 0

    def next_frame(self, timeout_s: float) -> CameraFrame | None:
        camera, layout = self._camera, self._layout
        if layout is None:
            raise CameraError("the camera was not configured for a series")
        try:
            buffer = camera.wait(timeout_s)
        except AndorError as exc:
            if exc.code == ErrorCode.NODATA and self._stopped.is_set():
                return None
            if exc.code == ErrorCode.NODATA:
                raise CameraError(
                    f"the camera ended its acquisition after {self._taken} frames without "
                    f"filling another buffer (Andor SDK3: {exc})"
                ) from None
            raise _error(exc) from None
        if buffer is None:
            return None
        pixels = self._wire(buffer, layout)
        try:
            if not self._stopped.is_set():
                camera.queue(buffer)
        except AndorError as exc:
            raise _error(exc) from None
        number, self._taken = self._taken, self._taken + 1
        return CameraFrame(number, pixels.data.cast("B"))

    def _wire(self, buffer: np.ndarray, layout: ImageLayout) -> np.ndarray:
        """The frame out of the SDK's buffer (a copy) in the wire format."""
        if not self._packed:
            return np.ascontiguousarray(layout.unpack(buffer))
        rows = buffer[: layout.height * layout.stride].reshape(layout.height, layout.stride)
        return np.ascontiguousarray(rows[:, : mono12packed.row_bytes(layout.width)])

    def software_trigger(self) -> None:
        try:
            self._camera.command("SoftwareTrigger")
        except AndorError as exc:
            raise _error(exc) from None

    def stop(self) -> None:
        self._stopped.set()
        try:
            if self._camera.get_bool("CameraAcquiring"):
                self._camera.command("AcquisitionStop")
            self._camera.flush()
        except AndorError as exc:
            raise _error(exc) from None

    def close(self) -> None:
        """Close the camera and the library; a camera that is gone cannot refuse."""
        with contextlib.suppress(AndorError):
            self._camera.close()
        self._library.finalise()

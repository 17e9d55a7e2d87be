"""The Hamamatsu DCAM-API adapter of camera-streamer (ORCA-Flash4.0, Fusion, Lightning), over
``streamers.dcam_sdk``.

DCAM's acquisition is a ring: ``dcambuf_alloc`` gives the SDK a ring of
buffers, ``dcamcap_start(SEQUENCE)`` fills frame k into buffer k mod n for
as long as it runs, and ``dcamcap_transferinfo`` counts the frames captured
since the start (research notes 3.7). Nothing is handed back, so nothing
stops the camera from overwriting a frame the streamer has not taken: the
adapter takes frames in order, copies each out of the ring at once (the
bytes first, any unpacking after) and checks after the copy that its buffer
was not refilled meanwhile.

Why SEQUENCE and not SNAP: a series may be longer than any ring we would
allocate, and SNAP stops when the ring is full. The camera therefore keeps
capturing until :meth:`DcamAdapter.stop`; frames past the series' count are
simply not taken.

Lost frames: :attr:`CameraFrame.number` is the frame's true number in the
capture, counted from 0 at ``dcamcap_start`` (its place in the count of
``dcamcap_transferinfo``, which the ``framestamp`` of the frame in its
buffer must match), and a frame that cannot be taken is skipped, not
raised: the streamer and the receiver see the gap in the numbers, the
series goes on, and :attr:`DcamAdapter.lost_frames` counts the gaps (each is
logged as a warning). A frame is lost when the ring overwrote it before it
was taken (the capture ran a whole ring ahead of the streamer; the adapter
then resumes half a ring behind the newest frame), or when the SDK counted
it but never wrote it (a transfer loss, DCAM_IDPROP_TRANSFERINFO_LOSTCOUNT).
Why not raise: one late frame would end a series whose other frames are
good, and the numbers already say which frames are missing.

Pixel encodings: ``Mono16`` (DCAM MONO16) and ``Mono12`` (DCAM MONO12, the
high-bits-first packing, unpacked here) go out as uint16 pixels (wire format
``none``); ``Mono12p`` (DCAM MONO12P) goes out packed (wire format
``mono12p``). DCAM's MONO12P is GenICam PFNC Mono12p byte for byte (research
notes 3.9: B0 = P0[7:0], B1 = P1[3:0] << 4 | P0[11:8], B2 = P1[11:4], which
is the little-endian 24-bit word P1 << 12 | P0), except that DCAM packs
each row on its own and pads it to IMAGE_ROWBYTES. So the rows are sent
with their padding cut off: with an even width they are whole 3-byte groups
and, put end to end, exactly the frame's PFNC bitstream that
``receiver/transforms/mono12p.py`` decodes; an odd width is repacked
(:func:`mono12p_bitstream`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from protocols.camera_control import CameraArm, CameraTrigger
from streamers.camera_adapter import CameraAdapter, CameraError, CameraFrame, CameraRefused
from streamers.dcam_sdk.binding import (
    DcamApi,
    DcamCamera,
    DcamError,
    ErrorCode,
    Frame,
    IdStr,
    LibraryNotFound,
    Mode,
    PixelType,
    Prop,
    TriggerActive,
    TriggerMode,
    TriggerSource,
    WaitEvent,
    default_library,
    unpack_mono12,
    unpack_mono12p,
)

logger = logging.getLogger(__name__)

RING_MIN = 8
RING_MAX = 64
RING_BYTES = 512 * 2**20
"""The ring is the series' frame count, at most RING_MAX frames and RING_BYTES, at least RING_MIN.

Frames in the ring are frames the streamer may fall behind by before one is
lost: 64 are 0.5 s of an ORCA-Lightning at 121 frames/s. The byte cap bounds
what a full-sensor ring takes of the host (DCAM's buffers are the frame
grabber's DMA memory at a site): 512 MiB are 64 Flash4.0 frames, 22 of the
Lightning in Mono16, 29 in Mono12p. At least 8, so that a short series still
has room while the streamer sends.
"""
FRAME_TIME_TOLERANCE = 0.01
"""A camera whose internal frame interval is read-only takes FrameTime up to 1 % above it."""
ROUNDING = 1e-5
"""Relative slack on the camera's limits, so that a limit as shown (6 digits) is accepted."""
WAIT_SLICE_S = 0.5
"""Longest single wait: a stop that neither ends the SDK's wait nor is seen before it, is."""

ENCODINGS: dict[str, PixelType] = {
    "Mono16": PixelType.MONO16,
    "Mono12": PixelType.MONO12,
    "Mono12p": PixelType.MONO12P,
}
"""Pixel encodings streamed -> the DCAM_PIXELTYPE read from the camera."""

_TRIGGER_SETTINGS: dict[CameraTrigger, tuple[tuple[Prop, int], ...]] = {
    CameraTrigger.INTERNAL: (
        (Prop.TRIGGERSOURCE, TriggerSource.INTERNAL),
        (Prop.TRIGGER_MODE, TriggerMode.NORMAL),
    ),
    CameraTrigger.SOFTWARE: (
        (Prop.TRIGGERSOURCE, TriggerSource.SOFTWARE),
        (Prop.TRIGGER_MODE, TriggerMode.NORMAL),
        (Prop.TRIGGERACTIVE, TriggerActive.EDGE),
    ),
    CameraTrigger.EXTERNAL_START: (
        (Prop.TRIGGERSOURCE, TriggerSource.EXTERNAL),
        (Prop.TRIGGER_MODE, TriggerMode.START),
        (Prop.TRIGGERACTIVE, TriggerActive.EDGE),
    ),
    CameraTrigger.EXTERNAL: (
        (Prop.TRIGGERSOURCE, TriggerSource.EXTERNAL),
        (Prop.TRIGGER_MODE, TriggerMode.NORMAL),
        (Prop.TRIGGERACTIVE, TriggerActive.EDGE),
    ),
    CameraTrigger.GATE: (
        (Prop.TRIGGERSOURCE, TriggerSource.EXTERNAL),
        (Prop.TRIGGER_MODE, TriggerMode.NORMAL),
        (Prop.TRIGGERACTIVE, TriggerActive.LEVEL),
    ),
}
"""Our trigger modes -> DCAM's trigger properties, set in this order.

TRIGGER_MODE and TRIGGERACTIVE are set back to NORMAL and EDGE where they do
not matter, so that a mode left by an earlier series (START turns SOFTWARE
into one trigger for all frames) does not carry over.
"""
_CLOCKED = (CameraTrigger.INTERNAL, CameraTrigger.EXTERNAL_START)
"""Modes whose frames follow the camera's internal frame interval."""
_REFUSALS = frozenset(
    {
        ErrorCode.INVALIDPARAM,
        ErrorCode.INVALIDVALUE,
        ErrorCode.OUTOFRANGE,
        ErrorCode.WRONGPROPERTYVALUE,
        ErrorCode.NOTSUPPORT,
        ErrorCode.NOTIMPLEMENT,
        ErrorCode.INVALIDPROPERTYID,
        ErrorCode.NOTWRITABLE,
        ErrorCode.ACCESSDENY,
    }
)
"""A camera's answers to a property or value it does not have (research notes 3.7)."""
_ABSENT = frozenset(
    {
        ErrorCode.NOTSUPPORT,
        ErrorCode.NOTIMPLEMENT,
        ErrorCode.INVALIDPROPERTYID,
        ErrorCode.NOTWRITABLE,
        ErrorCode.ACCESSDENY,
    }
)
"""A property the camera lacks, or may not be written (INTERNAL_FRAMEINTERVAL in AREA mode)."""


def ring_size(frames: int, framebytes: int) -> int:
    """Buffers to allocate for a series of ``frames`` frames of ``framebytes`` (see RING_BYTES)."""
    return max(RING_MIN, min(frames, RING_MAX, RING_BYTES // max(framebytes, 1)))


def mono12p_bitstream(rows: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint8]:
    """A DCAM MONO12P frame, (height, rowbytes) bytes, as one GenICam Mono12p bitstream (a copy).

    DCAM packs each row on its own; PFNC packs the frame as one stream. With
    an even width each row is whole 3-byte groups, so the rows without their
    padding, end to end, are the stream. With an odd width a row ends in half
    a group, and the frame is unpacked and packed again.
    """
    used = (3 * width + 1) // 2
    if width % 2 == 0:
        return rows[:, :used].copy().reshape(-1)
    pixels = unpack_mono12p(rows, rows.shape[0], width, rows.shape[1]).reshape(-1)
    count = pixels.size
    padded = np.zeros(count + count % 2, dtype=np.uint32)
    padded[:count] = pixels
    words = padded[0::2] | (padded[1::2] << 12)
    packed = np.empty((words.size, 3), dtype=np.uint8)
    packed[:, 0] = words & 0xFF
    packed[:, 1] = (words >> 8) & 0xFF
    packed[:, 2] = words >> 16
    return packed.reshape(-1)[: (12 * count + 7) // 8]


def _apply(camera: DcamCamera, settings: tuple[tuple[Prop, int], ...]) -> None:
    for prop, value in settings:
        camera.set(prop, value)


def _accepts(camera: DcamCamera, settings: tuple[tuple[Prop, int], ...]) -> bool:
    """Whether the camera takes these settings (they stay set): DCAM lists no mode values."""
    try:
        _apply(camera, settings)
    except DcamError as exc:
        if exc.code in _REFUSALS:
            return False
        raise
    return True


def _serial(camera_id: str) -> str:
    """``S/N: 301234`` (DCAM_IDSTR_CAMERAID) -> ``301234``."""
    return camera_id.removeprefix("S/N:").strip()


class DcamAdapter(CameraAdapter):
    """Camera ``index`` of the DCAM-API at ``library`` (None: $DCAM_SDK_LIBRARY or the default).

    The DCAM-API session is the process's one (DCAM allows one at a time),
    held until :meth:`close`.
    """

    sdk = "dcam"

    def __init__(self, library: str | None, index: int = 0, pixel_encoding: str = "Mono16") -> None:
        path = Path(library) if library else default_library()
        try:
            self._api = DcamApi(path)
        except LibraryNotFound as exc:
            raise CameraError(str(exc)) from None
        except DcamError as exc:
            raise CameraError(f"DCAM-API {path}: {exc}") from None
        try:
            self._camera = self._open(path, index)
            self._set_encoding(pixel_encoding)
        except DcamError as exc:
            self._end_session()
            raise CameraError(f"DCAM-API {path}: {exc}") from None
        except CameraError:
            self._end_session()
            raise
        self._events = WaitEvent.FRAMEREADY | (WaitEvent.STOPPED & self._camera.supported_events)
        self._arm: CameraArm | None = None
        self._ring = 0
        self._next = 0
        self.lost_frames = 0
        """Frames of the current (or last) capture that were skipped as lost."""
        self._stopped = threading.Event()
        self._stopped.set()
        self._closed = False

    def _open(self, path: Path, index: int) -> DcamCamera:
        count = self._api.device_count
        if not 0 <= index < count:
            raise CameraError(
                f"DCAM-API {path} found {count} camera(s): there is no camera {index}"
            )
        camera = self._api.open(index)
        try:
            self.model = camera.string(IdStr.CAMERA_SERIESNAME)
        except DcamError as exc:
            if exc.code not in _REFUSALS:
                raise
            self.model = camera.string(IdStr.MODEL)
        self.serial = _serial(camera.string(IdStr.CAMERAID))
        self.sensor_shape = (
            int(camera.get(Prop.IMAGEDETECTOR_PIXELNUMVERT)),
            int(camera.get(Prop.IMAGEDETECTOR_PIXELNUMHORZ)),
        )
        self.triggers = frozenset(
            trigger for trigger, settings in _TRIGGER_SETTINGS.items() if _accepts(camera, settings)
        )
        if CameraTrigger.INTERNAL in self.triggers:
            _apply(camera, _TRIGGER_SETTINGS[CameraTrigger.INTERNAL])
        return camera

    def _set_encoding(self, pixel_encoding: str) -> None:
        camera = self._camera
        offered = [
            name
            for name, pixeltype in ENCODINGS.items()
            if _accepts(camera, ((Prop.IMAGE_PIXELTYPE, pixeltype),))
        ]
        if pixel_encoding not in offered:
            raise CameraRefused(
                f"PixelEncoding {pixel_encoding!r} is not available on this {self.model}: "
                f"it offers {', '.join(offered)}"
            )
        camera.set(Prop.IMAGE_PIXELTYPE, ENCODINGS[pixel_encoding])
        self.pixel_encoding = pixel_encoding
        self._image_shape = (
            int(camera.get(Prop.IMAGE_HEIGHT)),
            int(camera.get(Prop.IMAGE_WIDTH)),
        )

    def _end_session(self) -> None:
        with contextlib.suppress(DcamError):
            self._api.uninit()

    @property
    def image_shape(self) -> tuple[int, int]:
        return self._image_shape

    @property
    def wire_format(self) -> str:
        return "mono12p" if self.pixel_encoding == "Mono12p" else "none"

    def configure(self, arm: CameraArm) -> None:
        """The region (a subarray, or the full sensor), the trigger, exposure and frame time
        of ``arm``, and a ring for it.

        Refused (CameraRefused, with the camera's numbers): a trigger mode the
        camera lacks; an ExposureTime outside its range; a FrameTime shorter
        than the ExposureTime or than the camera's frame interval at these
        settings (INTERNAL_FRAMEINTERVAL: the longer of exposure and readout);
        and, in INTERNAL and EXTERNAL_START, where the frames follow that
        interval, a FrameTime more than FRAME_TIME_TOLERANCE above it when the
        camera cannot be given a longer one (in AREA mode ORCAs have it
        read-only, research notes 3.6).
        """
        camera = self._camera
        try:
            self._disarm()
            if arm.trigger not in self.triggers:
                raise CameraRefused(
                    f"this {self.model} has no trigger mode {arm.trigger.value}: it offers "
                    f"{', '.join(sorted(t.value for t in self.triggers))}"
                )
            self._set_subarray(arm.aoi)
            _apply(camera, _TRIGGER_SETTINGS[arm.trigger])
            exposure = self._set_exposure(arm.exposure_time)
            self._image_shape = (
                int(camera.get(Prop.IMAGE_HEIGHT)),
                int(camera.get(Prop.IMAGE_WIDTH)),
            )
            self._set_frame_time(arm, exposure)
            ring = ring_size(arm.frames, int(camera.get(Prop.IMAGE_FRAMEBYTES)))
            camera.alloc(ring)
        except DcamError as exc:
            raise CameraError(str(exc)) from None
        self._ring = ring
        self._arm = arm

    def _set_subarray(self, aoi: tuple[int, int, int, int] | None) -> None:
        """SUBARRAY HPOS/HSIZE/VPOS/VSIZE for ``aoi`` (column, row, width, height), or the
        full sensor; a region the camera cannot read is refused with its own rule."""
        camera = self._camera
        camera.set(Prop.SUBARRAYMODE, Mode.OFF)
        if aoi is None:
            return
        x, y, width, height = aoi
        rows, columns = self.sensor_shape
        if x + width > columns or y + height > rows:
            raise CameraRefused(
                f"AOI {width} x {height} at column {x}, row {y} does not fit the {self.model}'s "
                f"{columns} x {rows} sensor"
            )
        for prop, value in (
            (Prop.SUBARRAYHSIZE, width),
            (Prop.SUBARRAYHPOS, x),
            (Prop.SUBARRAYVSIZE, height),
            (Prop.SUBARRAYVPOS, y),
        ):
            try:
                camera.set(prop, value)
            except DcamError as exc:
                if exc.code in _REFUSALS or exc.code == ErrorCode.INVALIDSUBARRAY:
                    raise CameraRefused(
                        f"AOI {width} x {height} at column {x}, row {y}: {exc}"
                    ) from None
                raise
        camera.set(Prop.SUBARRAYMODE, Mode.ON)

    def _disarm(self) -> None:
        """Back to STABLE (no capture, no buffer), where every setting may be written."""
        self._arm = None
        self._stopped.set()
        self._camera.stop()
        if self._ring:
            self._camera.release()
            self._ring = 0

    def _set_exposure(self, exposure_time: float) -> float:
        """Set EXPOSURETIME; the value the camera applied (it rounds to its step)."""
        low, high, _ = self._camera.attr(Prop.EXPOSURETIME)
        if not low * (1 - ROUNDING) <= exposure_time <= high * (1 + ROUNDING):
            raise CameraRefused(
                f"ExposureTime {exposure_time:g} s is outside the {self.model}'s "
                f"{low:g} .. {high:g} s"
            )
        try:
            return self._camera.set_get(Prop.EXPOSURETIME, min(max(exposure_time, low), high))
        except DcamError as exc:
            if exc.code in _REFUSALS:
                raise CameraRefused(str(exc)) from None
            raise

    def _shortest_frame_time(self) -> float:
        """The camera's shortest frame interval at the present settings.

        A writable INTERNAL_FRAMEINTERVAL (or INTERNALFRAMERATE) has it as its
        range's end; a read-only one (the fake's, and ORCAs' in AREA mode) is
        itself the interval the settings give.
        """
        camera = self._camera
        try:
            low, high, _ = camera.attr(Prop.INTERNAL_FRAMEINTERVAL)
            return low if 0 < low <= high else camera.get(Prop.INTERNAL_FRAMEINTERVAL)
        except DcamError as exc:
            if exc.code not in _REFUSALS:
                raise
        low, high, _ = camera.attr(Prop.INTERNALFRAMERATE)
        return 1.0 / (high if 0 < low <= high else camera.get(Prop.INTERNALFRAMERATE))

    def _set_frame_time(self, arm: CameraArm, exposure: float) -> None:
        if arm.frame_time < arm.exposure_time:
            raise CameraRefused(
                f"FrameTime {arm.frame_time:g} s is shorter than the ExposureTime "
                f"{arm.exposure_time:g} s"
            )
        shortest = self._shortest_frame_time()
        height, width = self._image_shape
        at = f"at {width} x {height} with ExposureTime {exposure:g} s"
        if arm.frame_time < shortest * (1 - ROUNDING):
            raise CameraRefused(
                f"FrameTime {arm.frame_time:g} s is shorter than the {shortest:g} s "
                f"the {self.model} needs {at}"
            )
        if arm.trigger not in _CLOCKED:
            return
        frame_time = max(arm.frame_time, shortest)
        for prop, value in (
            (Prop.INTERNAL_FRAMEINTERVAL, frame_time),
            (Prop.INTERNALFRAMERATE, 1.0 / frame_time),
        ):
            try:
                self._camera.set_get(prop, value)
                return
            except DcamError as exc:
                if exc.code not in _ABSENT:
                    raise
        if arm.frame_time > shortest * (1 + FRAME_TIME_TOLERANCE):
            raise CameraRefused(
                f"FrameTime {arm.frame_time:g} s: in {arm.trigger.value} mode the {self.model} "
                f"takes a frame every {shortest:g} s {at} and cannot be given a longer interval "
                "(its INTERNAL_FRAMEINTERVAL is read-only): ask for that FrameTime, a longer "
                "ExposureTime, or external or software triggers"
            )

    def start(self) -> None:
        """Start capturing into the ring (SEQUENCE); numbering restarts at 0."""
        if self._arm is None:
            raise CameraError("configure the camera for a series before starting it")
        self._next = 0
        self.lost_frames = 0
        self._stopped.clear()
        try:
            self._camera.start(sequence=True)
        except DcamError as exc:
            self._stopped.set()
            raise CameraError(str(exc)) from None

    def next_frame(self, timeout_s: float) -> CameraFrame | None:
        """The oldest frame not yet taken, waiting up to ``timeout_s`` (``math.inf``: no limit).

        Frames are taken in the order captured, by the capture's count
        (``dcamcap_transferinfo``), so that every frame of a wait that ended
        with several is taken, one per call. A frame that cannot be taken is
        skipped and counted in :attr:`lost_frames`: the next frame comes with
        its own number, and the gap shows. None after :meth:`stop`, and when
        no frame came in time.
        """
        deadline = time.monotonic() + timeout_s
        waited = False
        try:
            while not self._stopped.is_set():
                frame = self._take()
                if frame is not None:
                    return frame
                remaining = deadline - time.monotonic()
                if waited and remaining <= 0:
                    return None
                self._wait(min(max(remaining, 0.0), WAIT_SLICE_S))
                waited = True
        except DcamError as exc:
            raise CameraError(str(exc)) from None
        return None

    def _wait(self, timeout_s: float) -> None:
        """Wait for a frame or the end of the capture; the caller looks at what came.

        An abort (from :meth:`stop` or :meth:`close`) and DCAMERR_LOSTFRAME
        (which DCAM's clients take as a warning, research notes 3.7) end the
        wait like a frame: the count and the frames' numbers tell what happened.
        """
        try:
            self._camera.wait_event(self._events, timeout_s)
        except DcamError as exc:
            if exc.code not in (ErrorCode.ABORT, ErrorCode.LOSTFRAME):
                raise

    def _take(self) -> CameraFrame | None:
        """The oldest frame captured and not yet taken, copied; frames lost on the way skipped.

        Frame k is in buffer k mod n until the capture reaches frame k + n,
        which the camera writes into the same buffer while it is captured; so
        frame k is safe only while fewer than n frames from it on are counted,
        before and after its copy. A reader the ring has overrun resumes half
        a ring behind the newest frame: resuming at the oldest frame still
        safe would leave the copy one frame time before that frame goes too,
        and a reader that fell behind once would go on losing frames. At most
        one ring of frames is looked at per call, so that a stop is seen.
        """
        camera, ring = self._camera, self._ring
        for _ in range(ring):
            count = camera.transfer_info().frame_count
            if count - self._next >= ring:
                resume = count - ring // 2
                self._lose(self._next, resume, f"the ring of {ring} buffers was overwritten")
                self._next = resume
            if self._next >= count:
                return None
            number = self._next
            self._next += 1
            frame, reason = self._lock(number)
            if frame is None:
                self._lose(number, number + 1, reason)
                continue
            copied = self._copy(frame)
            if camera.transfer_info().frame_count - number >= ring:
                self._lose(number, number + 1, "its buffer was overwritten while it was copied")
                continue
            return CameraFrame(number, self._wire(frame, copied))
        return None

    def _lock(self, number: int) -> tuple[Frame | None, str]:
        """Frame ``number`` in its buffer, or None and why it is not there."""
        try:
            frame = self._camera.lock_frame(number % self._ring)
        except DcamError as exc:
            if exc.code != ErrorCode.BUSY:
                raise
            return None, "the camera lost it (its buffer was never filled)"
        if frame.number < number:
            return None, f"the camera lost it (its buffer still holds frame {frame.number})"
        if frame.number > number:
            return None, f"the ring of {self._ring} buffers was overwritten"
        return frame, ""

    def _lose(self, first: int, end: int, reason: str) -> None:
        self.lost_frames += end - first
        frames = f"frame {first} was" if end - first == 1 else f"frames {first}..{end - 1} were"
        logger.warning("%s %s lost: %s", self.model, frames, reason)

    @staticmethod
    def _copy(frame: Frame) -> npt.NDArray[Any]:
        """The frame out of the SDK's buffer with the least work, a copy of its bytes.

        That is the wire format itself for MONO16 and an even-width MONO12P,
        the rows for the others: unpacking MONO12 takes ten times as long as
        the copy (28 against 2 ms for a Flash4.0 frame), time in which the
        ring may catch up with the frame.
        """
        if frame.pixeltype == PixelType.MONO12P and frame.width % 2 == 0:
            return mono12p_bitstream(frame.pixels, frame.width)
        return frame.pixels.copy(order="C")

    @staticmethod
    def _wire(frame: Frame, copied: npt.NDArray[Any]) -> memoryview:
        """The copy in the wire format: MONO12 unpacked, an odd-width MONO12P repacked."""
        if frame.pixeltype == PixelType.MONO12:
            copied = unpack_mono12(copied, frame.height, frame.width, frame.rowbytes)
        elif frame.pixeltype == PixelType.MONO12P and frame.width % 2:
            copied = mono12p_bitstream(copied, frame.width)
        return copied.data.cast("B")

    def software_trigger(self) -> None:
        arm = self._arm
        if arm is None or arm.trigger != CameraTrigger.SOFTWARE:
            mode = "no series" if arm is None else f"a series in {arm.trigger.value} mode"
            raise CameraRefused(
                f"a software trigger needs a series in software mode; {mode} is armed"
            )
        try:
            self._camera.fire_trigger()
        except DcamError as exc:
            raise CameraError(str(exc)) from None

    def stop(self) -> None:
        """Stop capturing and end the reading thread's wait; its next_frame returns None."""
        self._stopped.set()
        if self._closed:
            return
        try:
            self._camera.stop()
        except DcamError as exc:
            raise CameraError(str(exc)) from None
        finally:
            with contextlib.suppress(DcamError):
                self._camera.abort_wait()

    def close(self) -> None:
        """Stop, release the ring, close the camera and end the DCAM-API session; once.

        A camera that is gone cannot refuse to stop or give its buffers back
        (closing it frees them anyway), so those failures are only logged;
        the session is ended whatever happened.
        """
        if self._closed:
            return
        self._closed = True
        self._stopped.set()
        camera = self._camera
        steps = [camera.stop, camera.release] if self._ring else [camera.stop]
        for step in [*steps, camera.close]:
            try:
                step()
            except DcamError as exc:
                logger.warning("closing the %s: %s", self.model, exc)
        self._ring = 0
        try:
            self._api.uninit()
        except DcamError as exc:
            raise CameraError(str(exc)) from None

"""The Python binding of Hamamatsu's DCAM-API 4, as declared in our ``dcam_subset.h``.

Why cffi's ABI mode (``ffi.dlopen``) and not a compiled extension: the
library is Hamamatsu's ``libdcamapi.so``, installed at a site with the
camera's driver (``/usr/local/lib/libdcamapi.so`` by default, research notes
3.1), and we may not ship or compile against Hamamatsu's headers. ABI mode
needs no compiler and no vendor header: the declarations are our own, read
from ``dcam_subset.h`` (the part between ``/* cffi-begin */`` and
``/* cffi-end */``), so the binding cannot drift from what the fake SDK of
``sim.dcam_fake`` is compiled against, and the same code loads either
library, chosen at run time by its path (the streamer's ``--library``, or
``$DCAM_SDK_LIBRARY``).

cffi releases the GIL around every call of a C function, in ABI mode as in
API mode, so a thread waiting in :meth:`DcamCamera.wait_frame` lets the rest
of the process run, and another thread can end the wait with
:meth:`DcamCamera.abort_wait` (tests/test_dcam_sdk.py checks it).

Every DCAM call that fails (a negative DCAMERR, research notes 3.1: success is
any value of 0 or more, not only DCAMERR_SUCCESS) raises :class:`DcamError`,
which carries the call, the SDK's code and its name; the one exception is
DCAMERR_TIMEOUT of a wait, which only means that nothing happened in time.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

import numpy as np
import numpy.typing as npt

from streamers.cffi_sdk import NotTheLibrary, declared, open_library

HEADER = Path(__file__).with_name("dcam_subset.h")
DEFAULT_LIBRARY = Path("/usr/local/lib/libdcamapi.so")
LIBRARY_VARIABLE = "DCAM_SDK_LIBRARY"
_INT32_MAX = 2**31 - 1
_TEXT_BYTES = 256


ffi = declared(HEADER)


def _signed(code: int) -> int:
    """A DCAMERR as the SDK documents it (0x80000106) as the int32 a call returns."""
    return code - (1 << 32) if code & 0x80000000 else code


class ErrorCode(IntEnum):
    """The ``DCAMERR_*`` values of ``dcam_subset.h``, as the signed int32 the calls return."""

    NONE = 0
    SUCCESS = 1
    BUSY = _signed(0x80000101)
    NOTREADY = _signed(0x80000103)
    NOTSTABLE = _signed(0x80000104)
    NOTBUSY = _signed(0x80000107)
    EXCLUDED = _signed(0x80000110)
    ABORT = _signed(0x80000102)
    TIMEOUT = _signed(0x80000106)
    NORESOURCE = _signed(0x80000201)
    NOMEMORY = _signed(0x80000203)
    NOMODULE = _signed(0x80000204)
    NODRIVER = _signed(0x80000205)
    NOCAMERA = _signed(0x80000206)
    INVALIDMODULE = _signed(0x80000211)
    LOSTFRAME = _signed(0x80000301)
    NOTRIGGER = _signed(0x80000303)
    TOOFREQUENTTRIGGER = _signed(0x80000305)
    INVALIDCAMERA = _signed(0x80000806)
    INVALIDHANDLE = _signed(0x80000807)
    INVALIDPARAM = _signed(0x80000808)
    INVALIDVALUE = _signed(0x80000821)
    OUTOFRANGE = _signed(0x80000822)
    NOTWRITABLE = _signed(0x80000823)
    NOTREADABLE = _signed(0x80000824)
    INVALIDPROPERTYID = _signed(0x80000825)
    INVALIDSUBARRAY = _signed(0x8000082B)
    ACCESSDENY = _signed(0x8000082C)
    WRONGPROPERTYVALUE = _signed(0x8000082E)
    INVALIDFRAMEINDEX = _signed(0x80000833)
    NODEVICEBUFFER = _signed(0x8000083B)
    UNREACH = _signed(0x80000F01)
    NOTIMPLEMENT = _signed(0x80000F02)
    NOTSUPPORT = _signed(0x80000F03)
    MISSINGFRAME_TROUBLE = _signed(0x80000F06)
    NOCONNECTION = _signed(0x80000F07)
    FAILOPEN = _signed(0x80001001)
    FAILOPENCAMERA = _signed(0x82001001)
    DEVICEPROBLEM = _signed(0x82001002)
    INVALIDWAITHANDLE = _signed(0x84002001)


class Prop(IntEnum):
    """``DCAM_IDPROP_*``: the property ids of ``dcam_subset.h``."""

    TRIGGERSOURCE = 0x00100110
    TRIGGERACTIVE = 0x00100120
    TRIGGER_MODE = 0x00100210
    EXPOSURETIME = 0x001F0110
    SUBARRAYHPOS = 0x00402110
    SUBARRAYHSIZE = 0x00402120
    SUBARRAYVPOS = 0x00402130
    SUBARRAYVSIZE = 0x00402140
    SUBARRAYMODE = 0x00402150
    TIMING_READOUTTIME = 0x00403010
    INTERNALFRAMERATE = 0x00403810
    INTERNAL_FRAMEINTERVAL = 0x00403820
    TRANSFERINFO_FRAMECOUNT = 0x00410B10
    TRANSFERINFO_LOSTCOUNT = 0x00410B11
    BITSPERCHANNEL = 0x00420130
    IMAGE_WIDTH = 0x00420210
    IMAGE_HEIGHT = 0x00420220
    IMAGE_ROWBYTES = 0x00420230
    IMAGE_FRAMEBYTES = 0x00420240
    IMAGE_PIXELTYPE = 0x00420270
    IMAGEDETECTOR_PIXELWIDTH = 0x00420810
    IMAGEDETECTOR_PIXELHEIGHT = 0x00420820
    IMAGEDETECTOR_PIXELNUMHORZ = 0x00420830
    IMAGEDETECTOR_PIXELNUMVERT = 0x00420840


class TriggerSource(IntEnum):
    """``DCAMPROP_TRIGGERSOURCE__*``."""

    INTERNAL = 1
    EXTERNAL = 2
    SOFTWARE = 3
    MASTERPULSE = 4


class TriggerActive(IntEnum):
    """``DCAMPROP_TRIGGERACTIVE__*``."""

    EDGE = 1
    LEVEL = 2
    SYNCREADOUT = 3


class TriggerMode(IntEnum):
    """``DCAMPROP_TRIGGER_MODE__*``."""

    NORMAL = 1
    START = 6


class Mode(IntEnum):
    """``DCAMPROP_MODE__*``: off and on, as SUBARRAYMODE takes them."""

    OFF = 1
    ON = 2


class PixelType(IntEnum):
    """``DCAM_PIXELTYPE_*``."""

    NONE = 0
    MONO8 = 1
    MONO16 = 2
    MONO12 = 3
    MONO12P = 5


class IdStr(IntEnum):
    """``DCAM_IDSTR_*``: the strings ``dcamdev_getstring`` gives."""

    BUS = 0x04000101
    CAMERAID = 0x04000102
    VENDOR = 0x04000103
    MODEL = 0x04000104
    CAMERAVERSION = 0x04000105
    DRIVERVERSION = 0x04000106
    MODULEVERSION = 0x04000107
    DCAMAPIVERSION = 0x04000108
    CAMERA_SERIESNAME = 0x0400012C


class CaptureStatus(IntEnum):
    """``DCAMCAP_STATUS_*``."""

    ERROR = 0
    BUSY = 1
    READY = 2
    STABLE = 3
    UNSTABLE = 4


class WaitEvent(IntFlag):
    """``DCAMWAIT_CAPEVENT_*``: events a wait ends on."""

    TRANSFERRED = 0x0001
    FRAMEREADY = 0x0002
    CYCLEEND = 0x0004
    EXPOSUREEND = 0x0008
    STOPPED = 0x0010


_PACKED = (PixelType.MONO12, PixelType.MONO12P)
_DTYPES: dict[PixelType, np.dtype[Any]] = {
    PixelType.MONO8: np.dtype(np.uint8),
    PixelType.MONO16: np.dtype(np.uint16),
}
_VALUE_REFUSALS = (
    ErrorCode.OUTOFRANGE,
    ErrorCode.INVALIDPARAM,
    ErrorCode.INVALIDVALUE,
    ErrorCode.INVALIDSUBARRAY,
)
"""Refusals of a value, after which the message gives the property's range."""


def error_hex(code: int) -> str:
    """A DCAMERR as the SDK documents it: ``0x80000822``."""
    return f"0x{code & 0xFFFFFFFF:08X}"


def error_name(code: int) -> str:
    """``DCAMERR_OUTOFRANGE`` for a code ``dcam_subset.h`` declares, else ``unknown DCAMERR``."""
    try:
        return f"DCAMERR_{ErrorCode(code).name}"
    except ValueError:
        return "unknown DCAMERR"


def _prop_label(prop: int) -> str:
    try:
        return Prop(prop).name
    except ValueError:
        return f"0x{prop & 0xFFFFFFFF:08X}"


class DcamError(RuntimeError):
    """A DCAM-API call failed.

    ``call`` is the function and what it was asked, ``code`` the DCAMERR it
    returned (an :class:`ErrorCode` when ``dcam_subset.h`` declares it, else
    the plain int; negative, as the int32 the call returned) and ``name`` the
    SDK's name of it. The message shows the code in hex, as Hamamatsu
    documents it, and ``detail`` (for a refused value, the property's range
    from ``dcamprop_getattr``), so that an operator can look it up.
    """

    def __init__(self, call: str, code: int, detail: str = "") -> None:
        super().__init__(call, code, detail)
        try:
            self.code: int = ErrorCode(code)
        except ValueError:
            self.code = code
        self.call = call
        self.name = error_name(code)
        self.detail = detail

    @property
    def hex(self) -> str:
        return error_hex(self.code)

    def __str__(self) -> str:
        text = f"{self.call}: {self.name} ({self.hex})"
        return f"{text}; {self.detail}" if self.detail else text


class LibraryNotFound(DcamError):
    """The library given as DCAM-API (``--library``, ``$DCAM_SDK_LIBRARY``) is missing or not one."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__("dlopen", ErrorCode.NODRIVER, reason)
        self.args = (path, reason)
        self.path = path

    def __str__(self) -> str:
        return (
            f"cannot load {self.path} as DCAM-API: it must be Hamamatsu's libdcamapi "
            f"(given by the streamer's --library or ${LIBRARY_VARIABLE}, default "
            f"{DEFAULT_LIBRARY}): {self.detail}"
        )


def default_library() -> Path:
    """``$DCAM_SDK_LIBRARY`` when set, else where Hamamatsu's installer puts libdcamapi.so."""
    return Path(os.environ.get(LIBRARY_VARIABLE) or DEFAULT_LIBRARY)


class PropertyRange(NamedTuple):
    """A property's ``valuemin``, ``valuemax`` and ``valuestep`` (0 when it has none)."""

    minimum: float
    maximum: float
    step: float


class TransferInfo(NamedTuple):
    """``dcamcap_transferinfo``: where the newest frame is and how many came."""

    newest_index: int
    """Buffer index of the newest frame; -1 before the first."""
    frame_count: int
    """Frames captured since ``dcamcap_start``; frame k is in buffer index k % frames."""


RawBytes = bytes | bytearray | memoryview | npt.NDArray[np.uint8]


def _packed_triples(
    raw: RawBytes, height: int, width: int, rowbytes: int
) -> npt.NDArray[np.uint16]:
    """The rows of a 12-bit packed frame as (height, pairs, 3) bytes widened to uint16."""
    if height < 0 or width < 0:
        raise ValueError(f"a frame of {height} x {width} pixels")
    used = (3 * width + 1) // 2
    if rowbytes < used:
        raise ValueError(f"rowbytes {rowbytes} is less than the {used} bytes of {width} pixels")
    data = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw
    data = data.reshape(-1)
    if data.size < height * rowbytes:
        raise ValueError(f"{data.size} bytes, less than {height} rows of {rowbytes}")
    rows = data[: height * rowbytes].reshape(height, rowbytes)
    pairs = (width + 1) // 2
    if 3 * pairs > rowbytes:
        rows = np.pad(rows, ((0, 0), (0, 3 * pairs - rowbytes)))
    return rows[:, : 3 * pairs].reshape(height, pairs, 3).astype(np.uint16)


def _interleave(
    first: npt.NDArray[np.integer[Any]], second: npt.NDArray[np.integer[Any]], width: int
) -> npt.NDArray[np.uint16]:
    pixels = np.empty((first.shape[0], 2 * first.shape[1]), dtype=np.uint16)
    pixels[:, 0::2] = first
    pixels[:, 1::2] = second
    return np.ascontiguousarray(pixels[:, :width])


def unpack_mono12p(raw: RawBytes, height: int, width: int, rowbytes: int) -> npt.NDArray[np.uint16]:
    """DCAM_PIXELTYPE_MONO12P rows to pixels: two in three bytes, low bits first.

    Research notes 3.9: B0 = P0[7:0], B1 = P1[3:0] << 4 | P0[11:8],
    B2 = P1[11:4]. Rows are ``rowbytes`` apart; the bytes after a row's
    pixels are ignored.
    """
    b = _packed_triples(raw, height, width, rowbytes)
    first = b[..., 0] | ((b[..., 1] & 0x0F) << 8)
    second = (b[..., 2] << 4) | (b[..., 1] >> 4)
    return _interleave(first, second, width)


def unpack_mono12(raw: RawBytes, height: int, width: int, rowbytes: int) -> npt.NDArray[np.uint16]:
    """DCAM_PIXELTYPE_MONO12 rows to pixels: two in three bytes, high bits first.

    Research notes 3.9: B0 = P0[11:4], B1 = P1[3:0] << 4 | P0[3:0],
    B2 = P1[11:4]. Rows are ``rowbytes`` apart.
    """
    b = _packed_triples(raw, height, width, rowbytes)
    first = (b[..., 0] << 4) | (b[..., 1] & 0x0F)
    second = (b[..., 2] << 4) | (b[..., 1] >> 4)
    return _interleave(first, second, width)


@dataclass(frozen=True, eq=False)
class Frame:
    """A frame in the SDK's buffer (``dcambuf_lockframe``).

    ``pixels`` is a read-only view of the SDK's memory, without a copy: the
    (height, width) pixels for MONO8 and MONO16, the (height, rowbytes) bytes
    for the packed MONO12 and MONO12P (:meth:`image` unpacks them). It is
    valid only until the capture writes a later frame into the same buffer
    index (frame k + frames) or the buffer is released or the camera closed;
    whoever keeps it longer copies it first.
    """

    index: int
    """Buffer index of the frame, as the SDK leaves it in ``iFrame`` (the fake resolves -1)."""
    number: int
    """The frame's number in the capture (``framestamp``), 0-based."""
    width: int
    height: int
    rowbytes: int
    pixeltype: PixelType
    timestamp: float
    """When the frame was captured, in seconds since the epoch."""
    pixels: npt.NDArray[Any]

    def image(self) -> npt.NDArray[np.uint16] | npt.NDArray[np.uint8]:
        """The (height, width) pixels: the view itself for MONO8 and MONO16, unpacked otherwise."""
        if self.pixeltype == PixelType.MONO12P:
            return unpack_mono12p(self.pixels, self.height, self.width, self.rowbytes)
        if self.pixeltype == PixelType.MONO12:
            return unpack_mono12(self.pixels, self.height, self.width, self.rowbytes)
        return self.pixels


@functools.cache
def _load(path: Path) -> Any:
    """The library at ``path``, every function of the header resolved (or LibraryNotFound)."""
    try:
        return open_library(ffi, path, "dcam")
    except NotTheLibrary as exc:
        raise LibraryNotFound(str(path), str(exc)) from None


def _sized(ctype: str, size_field: str = "size") -> Any:
    """A zeroed ``ctype`` with its size member set, as every DCAM structure argument wants."""
    value = ffi.new(f"{ctype} *")
    setattr(value, size_field, ffi.sizeof(ctype))
    return value


def _text(chars: Any) -> str:
    return str(ffi.string(chars).decode("utf-8", "replace"))


def _check(call: str, code: int) -> None:
    if code < 0:
        raise DcamError(call, code)


def _read_string(lib: Any, handle: Any, call: str, idstr: int) -> str:
    text = ffi.new("char[]", _TEXT_BYTES)
    param = _sized("DCAMDEV_STRING")
    param.iString = idstr
    param.text = text
    param.textbytes = _TEXT_BYTES
    _check(call, lib.dcamdev_getstring(handle, param))
    return _text(text)


def _idstr_label(idstr: int) -> str:
    try:
        return IdStr(idstr).name
    except ValueError:
        return error_name(idstr) if idstr < 0 else f"0x{idstr & 0xFFFFFFFF:08X}"


class DcamApi:
    """A session of DCAM-API (``dcamapi_init`` to ``dcamapi_uninit``) and its devices.

    ``library`` is Hamamatsu's libdcamapi.so (``sim.dcam_fake.library_path()``
    for the fake); without it, :func:`default_library`. DCAM allows one
    session per process at a time. :meth:`uninit` closes the cameras this
    session opened before ending it, so that no handle outlives it.
    """

    def __init__(self, library: str | Path | None = None) -> None:
        self.library = Path(library) if library is not None else default_library()
        self._lib = _load(self.library.absolute())
        self._cameras: list[DcamCamera] = []
        init = _sized("DCAMAPI_INIT")
        _check("dcamapi_init", self._lib.dcamapi_init(init))
        self._initialised = True
        self.device_count = int(init.iDeviceCount)
        """Devices DCAM found; :meth:`open` takes an index below it."""

    def _require(self, call: str) -> None:
        if not self._initialised:
            raise DcamError(call, ErrorCode.NOTREADY, "the DCAM-API session was ended (uninit)")

    def device_string(self, index: int, idstr: int) -> str:
        """A device's string before it is opened (the SDK takes the index as the handle)."""
        call = f"dcamdev_getstring(device {index}, {_idstr_label(idstr)})"
        self._require(call)
        return _read_string(self._lib, ffi.cast("HDCAM", index), call, idstr)

    def open(self, index: int = 0) -> DcamCamera:
        """Open device ``index`` (``dcamdev_open``) with a wait session on it."""
        self._require(f"dcamdev_open({index})")
        camera = DcamCamera(self, self._lib, index)
        self._cameras.append(camera)
        return camera

    def _forget(self, camera: DcamCamera) -> None:
        if camera in self._cameras:
            self._cameras.remove(camera)

    def uninit(self) -> None:
        """Close this session's cameras and end the session; doing it again does nothing."""
        if not self._initialised:
            return
        try:
            for camera in list(self._cameras):
                camera.close()
        finally:
            self._initialised = False
            _check("dcamapi_uninit", self._lib.dcamapi_uninit())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.uninit()


class DcamCamera:
    """An opened device (``dcamdev_open``) and one wait session on it (``dcamwait_open``).

    Made by :meth:`DcamApi.open`. Settings, buffer and capture calls may come
    from any thread; one thread waits (:meth:`wait_frame`, :meth:`wait_event`)
    and any other may :meth:`abort_wait` it, or :meth:`close` the camera, which
    ends that wait the same way. No other call may race with :meth:`close`.
    """

    def __init__(self, api: DcamApi, lib: Any, index: int) -> None:
        self.api = api
        self.index = index
        self._lib = lib
        self._handle: Any = None
        self._wait: Any = None
        param = _sized("DCAMDEV_OPEN")
        param.index = index
        _check(f"dcamdev_open({index})", lib.dcamdev_open(param))
        self._handle = param.hdcam
        try:
            wait = _sized("DCAMWAIT_OPEN")
            wait.hdcam = self._handle
            _check("dcamwait_open", lib.dcamwait_open(wait))
        except BaseException:
            lib.dcamdev_close(self._handle)
            raise
        self._wait = wait.hwait
        self.supported_events = WaitEvent(wait.supportevent)
        """The events the device can signal (``DCAMWAIT_OPEN.supportevent``)."""

    def _device(self, call: str) -> Any:
        if self._handle is None:
            raise DcamError(call, ErrorCode.INVALIDHANDLE, "the camera was closed")
        return self._handle

    def _range_text(self, prop: int) -> str:
        """The property's range for a message, or "" when the SDK gives none."""
        param = _sized("DCAMPROP_ATTR", "cbSize")
        param.iProp = prop
        if self._lib.dcamprop_getattr(self._handle, param) < 0:
            return ""
        if not param.attribute & self._lib.DCAMPROP_ATTR_HASRANGE:
            return ""
        text = f"{_prop_label(prop)} takes {param.valuemin:.10g} to {param.valuemax:.10g}"
        if param.attribute & self._lib.DCAMPROP_ATTR_HASSTEP:
            text += f" in steps of {param.valuestep:.10g}"
        return text

    def _check_set(self, call: str, prop: int, code: int) -> None:
        if code < 0:
            detail = self._range_text(prop) if code in _VALUE_REFUSALS else ""
            raise DcamError(call, code, detail)

    def get(self, prop: int) -> float:
        """A property's value (``dcamprop_getvalue``); modes and integers come as floats too."""
        call = f"dcamprop_getvalue({_prop_label(prop)})"
        value = ffi.new("double *")
        _check(call, self._lib.dcamprop_getvalue(self._device(call), prop, value))
        return float(value[0])

    def set(self, prop: int, value: float) -> None:
        """Set a property (``dcamprop_setvalue``)."""
        call = f"dcamprop_setvalue({_prop_label(prop)}={value:.10g})"
        self._check_set(call, prop, self._lib.dcamprop_setvalue(self._device(call), prop, value))

    def set_get(self, prop: int, value: float) -> float:
        """Set a property and return the value the camera applied (``dcamprop_setgetvalue``)."""
        call = f"dcamprop_setgetvalue({_prop_label(prop)}={value:.10g})"
        applied = ffi.new("double *", value)
        code = self._lib.dcamprop_setgetvalue(self._device(call), prop, applied, 0)
        self._check_set(call, prop, code)
        return float(applied[0])

    def attr(self, prop: int) -> PropertyRange:
        """A property's range and step (``dcamprop_getattr``)."""
        call = f"dcamprop_getattr({_prop_label(prop)})"
        param = _sized("DCAMPROP_ATTR", "cbSize")
        param.iProp = prop
        _check(call, self._lib.dcamprop_getattr(self._device(call), param))
        return PropertyRange(float(param.valuemin), float(param.valuemax), float(param.valuestep))

    def string(self, idstr: int) -> str:
        """A ``DCAM_IDSTR_*`` string of the device, or the SDK's text of a DCAMERR."""
        call = f"dcamdev_getstring({_idstr_label(idstr)})"
        return _read_string(self._lib, self._device(call), call, idstr)

    def alloc(self, frames: int) -> None:
        """Allocate the SDK's ring buffer of ``frames`` frames (``dcambuf_alloc``)."""
        call = f"dcambuf_alloc({frames})"
        _check(call, self._lib.dcambuf_alloc(self._device(call), frames))

    def release(self) -> None:
        """Release the buffer (``dcambuf_release``); frames' pixels must not be used after."""
        call = "dcambuf_release"
        kind = self._lib.DCAMBUF_ATTACHKIND_FRAME
        _check(call, self._lib.dcambuf_release(self._device(call), kind))

    def start(self, sequence: bool = True) -> None:
        """Start capturing: into the ring for ever (SEQUENCE), or until it is full (SNAP)."""
        mode = self._lib.DCAMCAP_START_SEQUENCE if sequence else self._lib.DCAMCAP_START_SNAP
        call = f"dcamcap_start({'SEQUENCE' if sequence else 'SNAP'})"
        _check(call, self._lib.dcamcap_start(self._device(call), mode))

    def stop(self) -> None:
        """Stop capturing (``dcamcap_stop``); nothing happens when not capturing."""
        call = "dcamcap_stop"
        _check(call, self._lib.dcamcap_stop(self._device(call)))

    def status(self) -> CaptureStatus:
        call = "dcamcap_status"
        status = ffi.new("int32_t *")
        _check(call, self._lib.dcamcap_status(self._device(call), status))
        return CaptureStatus(status[0])

    def fire_trigger(self) -> None:
        """One software trigger (``dcamcap_firetrigger``), with TRIGGERSOURCE SOFTWARE."""
        call = "dcamcap_firetrigger"
        _check(call, self._lib.dcamcap_firetrigger(self._device(call), 0))

    def transfer_info(self) -> TransferInfo:
        call = "dcamcap_transferinfo"
        param = _sized("DCAMCAP_TRANSFERINFO")
        param.iKind = self._lib.DCAMCAP_TRANSFERKIND_FRAME
        _check(call, self._lib.dcamcap_transferinfo(self._device(call), param))
        return TransferInfo(int(param.nNewestFrameIndex), int(param.nFrameCount))

    def _timeout_ms(self, timeout_s: float) -> int:
        if math.isnan(timeout_s) or timeout_s < 0:
            raise ValueError(f"timeout {timeout_s} s: must be a time of 0 or more")
        if math.isinf(timeout_s):
            return int(self._lib.DCAMWAIT_TIMEOUT_INFINITE)
        return min(math.ceil(timeout_s * 1000.0), _INT32_MAX)

    def wait_event(self, events: WaitEvent, timeout_s: float) -> WaitEvent | None:
        """Wait without the GIL for one of ``events``; which one came, or None on a timeout.

        ``timeout_s`` may be ``math.inf``. A wait ended by :meth:`abort_wait`
        raises DcamError with DCAMERR_ABORT.
        """
        call = f"dcamwait_start({events.name or int(events)})"
        if self._wait is None:
            raise DcamError(call, ErrorCode.INVALIDWAITHANDLE, "the camera was closed")
        param = _sized("DCAMWAIT_START")
        param.eventmask = int(events)
        param.timeout = self._timeout_ms(timeout_s)
        code = self._lib.dcamwait_start(self._wait, param)
        if code == ErrorCode.TIMEOUT:
            return None
        _check(call, code)
        return WaitEvent(param.eventhappened)

    def wait_frame(self, timeout_s: float) -> bool:
        """Wait for a new frame (DCAMWAIT_CAPEVENT_FRAMEREADY); False when none came in time."""
        return self.wait_event(WaitEvent.FRAMEREADY, timeout_s) is not None

    def abort_wait(self) -> None:
        """End the wait of another thread (``dcamwait_abort``); nothing when none waits."""
        call = "dcamwait_abort"
        if self._wait is None:
            raise DcamError(call, ErrorCode.INVALIDWAITHANDLE, "the camera was closed")
        _check(call, self._lib.dcamwait_abort(self._wait))

    def lock_frame(self, index: int = -1) -> Frame:
        """The frame at buffer ``index``, -1 for the newest (``dcambuf_lockframe``), without a copy."""
        call = f"dcambuf_lockframe({index})"
        raw = _sized("DCAMBUF_FRAME")
        raw.iFrame = index
        _check(call, self._lib.dcambuf_lockframe(self._device(call), raw))
        try:
            pixeltype = PixelType(raw.type)
        except ValueError:
            pixeltype = PixelType.NONE
        width, height, rowbytes = int(raw.width), int(raw.height), int(raw.rowbytes)
        if pixeltype in _DTYPES:
            used = width * _DTYPES[pixeltype].itemsize
        elif pixeltype in _PACKED:
            used = (3 * width + 1) // 2
        else:
            raise DcamError(
                call,
                ErrorCode.NOTSUPPORT,
                f"pixel type {raw.type}: the binding reads MONO8, MONO16, MONO12 and MONO12P",
            )
        if raw.buf == ffi.NULL or rowbytes < used or height < 0:
            raise DcamError(
                call,
                ErrorCode.INVALIDVALUE,
                f"the SDK gave a frame of {width} x {height} {pixeltype.name} pixels, "
                f"{rowbytes} bytes per row, at {raw.buf}",
            )
        memory = ffi.buffer(raw.buf, rowbytes * height)
        if pixeltype in _DTYPES:
            dtype = _DTYPES[pixeltype]
            pixels: npt.NDArray[Any] = np.ndarray(
                (height, width), dtype=dtype, buffer=memory, strides=(rowbytes, dtype.itemsize)
            )
        else:
            pixels = np.frombuffer(memory, dtype=np.uint8).reshape(height, rowbytes)
        pixels.flags.writeable = False
        return Frame(
            index=int(raw.iFrame),
            number=int(raw.framestamp),
            width=width,
            height=height,
            rowbytes=rowbytes,
            pixeltype=pixeltype,
            timestamp=int(raw.timestamp.sec) + int(raw.timestamp.microsec) / 1e6,
            pixels=pixels,
        )

    def close(self) -> None:
        """Close the wait session and the device; closing again does nothing.

        A wait in progress in another thread is aborted first (it raises
        DcamError with DCAMERR_ABORT), as H2 documents ``dcamwait_abort``.
        """
        if self._handle is None:
            return
        handle, wait = self._handle, self._wait
        self._handle = self._wait = None
        self.api._forget(self)
        try:
            _check("dcamwait_abort", self._lib.dcamwait_abort(wait))
            _check("dcamwait_close", self._lib.dcamwait_close(wait))
        finally:
            _check("dcamdev_close", self._lib.dcamdev_close(handle))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

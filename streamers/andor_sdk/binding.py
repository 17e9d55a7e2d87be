"""The Python binding of Andor's SDK3 (libatcore), as declared by our ``atcore_subset.h``.

Why cffi's ABI mode (``ffi.dlopen``) and not a compiled extension: one
binding serves both libraries that implement the declarations, Andor's
libatcore.so at a site and the fake of ``sim.andor_fake`` here, and each is
chosen at run time by its path (the streamer's ``--library``, or
``$ANDOR_SDK_LIBRARY``). Compiling against the SDK would need Andor's own
atcore.h, which is vendor-copyrighted and not ours to ship; ABI mode needs
only our declarations of the functions (the part of ``atcore_subset.h``
between ``/* cffi-begin */`` and ``/* cffi-end */``) and the library, so a
site needs neither a compiler nor Andor's headers, and the binding cannot
drift from the declarations the fake is compiled against.

cffi releases the GIL around every call of a C function, in ABI mode as in
API mode, so a thread blocked in :meth:`AndorCamera.wait` (``AT_WaitBuffer``)
lets the rest of the process run, including the thread that stops the
acquisition (tests/test_andor_sdk.py::test_stop_wakes_an_infinite_wait_which_releases_the_gil
checks it).

Every call that returns an error code raises :class:`AndorError`, which
carries the SDK's code and its ``AT_ERR_*`` name and, where the binding can
read it, what was allowed (the range of the feature for
``AT_ERR_OUTOFRANGE``, the available options of an enumeration). Andor's
API has no text of its own for a failure. The one exception is
``AT_ERR_TIMEDOUT`` from ``AT_WaitBuffer``, which only means that no buffer
was filled in time (:meth:`AndorCamera.wait` returns None).
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from protocols import mono12packed
from streamers.cffi_sdk import NotTheLibrary, declared, open_library

HEADER = Path(__file__).with_name("atcore_subset.h")
LIBRARY_ENV = "ANDOR_SDK_LIBRARY"
"""The environment variable naming Andor's libatcore.so when no path is given."""
ALIGNMENT = 8
"""Bytes a queued buffer's address must be a multiple of (AT_ERR_INVALIDALIGNMENT otherwise)."""

_ENUM_STRING_CHARACTERS = 256
"""Room for one option of an enumerated feature; the SDK has no call giving its length."""

Image = npt.NDArray[np.uint16] | npt.NDArray[np.uint32]


ffi = declared(HEADER)

AT_SUCCESS = 0
AT_HANDLE_SYSTEM = 1
AT_INFINITE = 0xFFFFFFFF


class ErrorCode(IntEnum):
    """``AT_SUCCESS`` and the ``AT_ERR_*`` codes of ``atcore_subset.h``, without the prefix."""

    SUCCESS = 0
    NOTINITIALISED = 1
    NOTIMPLEMENTED = 2
    READONLY = 3
    NOTREADABLE = 4
    NOTWRITABLE = 5
    OUTOFRANGE = 6
    INDEXNOTAVAILABLE = 7
    INDEXNOTIMPLEMENTED = 8
    EXCEEDEDMAXSTRINGLENGTH = 9
    CONNECTION = 10
    NODATA = 11
    INVALIDHANDLE = 12
    TIMEDOUT = 13
    BUFFERFULL = 14
    INVALIDSIZE = 15
    INVALIDALIGNMENT = 16
    COMM = 17
    STRINGNOTAVAILABLE = 18
    STRINGNOTIMPLEMENTED = 19
    NULL_FEATURE = 20
    NULL_HANDLE = 21
    NULL_IMPLEMENTED_VAR = 22
    NULL_READABLE_VAR = 23
    NULL_READONLY_VAR = 24
    NULL_WRITABLE_VAR = 25
    NULL_MINVALUE = 26
    NULL_MAXVALUE = 27
    NULL_VALUE = 28
    NULL_STRING = 29
    NULL_COUNT_VAR = 30
    NULL_ISAVAILABLE_VAR = 31
    NULL_MAXSTRINGLENGTH = 32
    NULL_EVCALLBACK = 33
    NULL_QUEUE_PTR = 34
    NULL_WAIT_PTR = 35
    NULL_PTRSIZE = 36
    NOMEMORY = 37
    DEVICEINUSE = 38
    DEVICENOTFOUND = 39
    HARDWARE_OVERFLOW = 100


def error_name(code: int) -> str:
    """The header's name of a return code (``AT_ERR_TIMEDOUT``), or ``unknown`` for another."""
    try:
        member = ErrorCode(code)
    except ValueError:
        return "unknown"
    return "AT_SUCCESS" if member is ErrorCode.SUCCESS else f"AT_ERR_{member.name}"


def _code(value: int) -> int:
    """The ErrorCode member for a known value, so that str() and repr() name it."""
    try:
        return ErrorCode(value)
    except ValueError:
        return value


class AndorError(RuntimeError):
    """A call of the Andor SDK returned an error code.

    ``call`` is the C function, ``feature`` the feature it was about (None for
    calls without one), ``code`` the SDK's return value (an :class:`ErrorCode`
    when the header knows it), ``name`` its ``AT_ERR_*`` name and ``detail``
    what the binding could find out about the refusal (the allowed range or
    options), or "".
    """

    def __init__(self, call: str, code: int, feature: str | None = None, detail: str = "") -> None:
        super().__init__(call, code, feature, detail)
        self.call = call
        self.code = _code(code)
        self.feature = feature
        self.name = error_name(code)
        self.detail = detail

    def __str__(self) -> str:
        where = f"{self.call}({self.feature})" if self.feature is not None else self.call
        text = f"{where}: {self.name} ({int(self.code)})"
        return f"{text}: {self.detail}" if self.detail else text


class LibraryNotFound(RuntimeError):
    """The library given as Andor's SDK3 (``--library``, ``$ANDOR_SDK_LIBRARY``) is not one.

    Not an :class:`AndorError`: the SDK was never reached, so there is no SDK code.
    """

    def __init__(self, path: str | None, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        if self.path is None:
            return (
                f"no Andor SDK3 library given: {self.reason} (the streamer's --library, or "
                f"${LIBRARY_ENV}, names Andor's libatcore.so)"
            )
        return (
            f"cannot load {self.path} as Andor's SDK3 library libatcore (the streamer's "
            f"--library, or ${LIBRARY_ENV}): {self.reason}"
        )


def _library_path(library: str | Path | None) -> Path:
    if library is None:
        named = os.environ.get(LIBRARY_ENV, "")
        if not named:
            raise LibraryNotFound(None, f"no path was passed and ${LIBRARY_ENV} is not set")
        library = named
    return Path(library).absolute()


@functools.cache
def _load(path: Path) -> Any:
    """The library at ``path``, every function of the header resolved (or LibraryNotFound)."""
    try:
        return open_library(ffi, path, "AT_")
    except NotTheLibrary as exc:
        raise LibraryNotFound(str(path), str(exc)) from None


def _milliseconds(timeout_s: float | None) -> int:
    """AT_WaitBuffer's timeout: None or infinity is AT_INFINITE, anything else whole ms."""
    if timeout_s is None or timeout_s == math.inf:
        return AT_INFINITE
    if math.isnan(timeout_s) or timeout_s < 0:
        raise ValueError(f"timeout {timeout_s} s: must be a time of 0 or more, or None")
    return min(math.ceil(timeout_s * 1000.0), AT_INFINITE - 1)


def aligned_buffer(size: int, alignment: int = ALIGNMENT) -> npt.NDArray[np.uint8]:
    """A new buffer of ``size`` bytes whose address is a multiple of ``alignment``.

    numpy's own allocations are usually aligned further than 8 bytes, but
    nothing promises it, and the SDK refuses a misaligned buffer.
    """
    if size < 0 or alignment < 1:
        raise ValueError(f"a buffer of {size} bytes aligned to {alignment}: impossible")
    raw = np.empty(size + alignment, dtype=np.uint8)
    offset = -raw.ctypes.data % alignment
    return raw[offset : offset + size]


# ---- unpacking a returned buffer into an image ----------------------------------------


def _row_bytes(encoding: str, width: int) -> int:
    if encoding == "Mono12Packed":
        return (3 * width + 1) // 2
    return width * (4 if encoding == "Mono32" else 2)


def _bytes(raw: Any, height: int, width: int, stride: int, encoding: str) -> npt.NDArray[np.uint8]:
    """The raw buffer as uint8, after checking that it holds ``height`` rows of ``stride``."""
    if height < 1 or width < 1:
        raise ValueError(f"an image of {height} x {width} pixels: both must be 1 or more")
    needed = _row_bytes(encoding, width)
    if stride < needed:
        raise ValueError(f"stride {stride}: a row of {width} {encoding} pixels has {needed} bytes")
    data = np.frombuffer(raw, dtype=np.uint8)
    if data.size < height * stride:
        raise ValueError(
            f"{data.size} bytes: {height} rows of stride {stride} need {height * stride}"
        )
    return data


def unpack_mono12packed(raw: Any, height: int, width: int, stride: int) -> npt.NDArray[np.uint16]:
    """A Mono12Packed buffer (rows ``stride`` bytes apart) as a (height, width) uint16 image
    (the layout: ``protocols.mono12packed``)."""
    data = _bytes(raw, height, width, stride, "Mono12Packed")
    return mono12packed.unpack_rows(data[: height * stride].reshape(height, stride), width)


def _words(raw: Any, height: int, width: int, stride: int, encoding: str, dtype: str) -> Any:
    data = _bytes(raw, height, width, stride, encoding)
    itemsize = np.dtype(dtype).itemsize
    view = np.ndarray((height, width), dtype=dtype, buffer=data, strides=(stride, itemsize))
    return view.astype(dtype[1:])


def unpack_mono12(raw: Any, height: int, width: int, stride: int) -> npt.NDArray[np.uint16]:
    """A Mono12 buffer (12 bits in a little-endian 16-bit word) as a (height, width) image."""
    image: npt.NDArray[np.uint16] = _words(raw, height, width, stride, "Mono12", "<u2")
    return image


def unpack_mono16(raw: Any, height: int, width: int, stride: int) -> npt.NDArray[np.uint16]:
    """A Mono16 buffer (little-endian 16-bit words) as a (height, width) uint16 image."""
    image: npt.NDArray[np.uint16] = _words(raw, height, width, stride, "Mono16", "<u2")
    return image


def unpack_mono32(raw: Any, height: int, width: int, stride: int) -> npt.NDArray[np.uint32]:
    """A Mono32 buffer (little-endian 32-bit words) as a (height, width) uint32 image."""
    image: npt.NDArray[np.uint32] = _words(raw, height, width, stride, "Mono32", "<u4")
    return image


def unpack(raw: Any, height: int, width: int, stride: int, encoding: str) -> Image:
    """A returned buffer as an image, by its PixelEncoding (uint32 for Mono32, else uint16).

    The image is a copy: the buffer may be queued again at once.
    """
    unpackers: dict[str, Callable[[Any, int, int, int], Image]] = {
        "Mono12": unpack_mono12,
        "Mono12Packed": unpack_mono12packed,
        "Mono16": unpack_mono16,
        "Mono32": unpack_mono32,
    }
    if encoding not in unpackers:
        raise ValueError(f"PixelEncoding {encoding!r}: the binding unpacks {', '.join(unpackers)}")
    return unpackers[encoding](raw, height, width, stride)


@dataclass(frozen=True)
class ImageLayout:
    """How the camera's buffers hold an image, read once per series (settings are fixed then)."""

    height: int
    width: int
    stride: int
    """AOIStride: bytes from the start of one row to the next."""
    encoding: str
    size: int
    """ImageSizeBytes: the size of every queued buffer."""

    def unpack(self, raw: Any) -> Image:
        return unpack(raw, self.height, self.width, self.stride, self.encoding)


# ---- features -------------------------------------------------------------------------


class _Features:
    """Typed access to the features of one handle (a camera's or AT_HANDLE_SYSTEM)."""

    def __init__(self, lib: Any, handle: int | None) -> None:
        self._lib = lib
        self._at: int | None = handle

    def _handle(self, call: str, feature: str | None = None) -> int:
        if self._at is None:
            raise AndorError(call, ErrorCode.INVALIDHANDLE, feature, "the camera is closed")
        return self._at

    def _check(self, call: str, code: int, feature: str | None = None, detail: str = "") -> None:
        if code != AT_SUCCESS:
            raise AndorError(call, code, feature, detail)

    def _refusal(self, call: str, code: int, feature: str, shown: str) -> AndorError:
        """The error of a set that failed, with what the SDK would have allowed if readable."""
        detail = ""
        try:
            if code == ErrorCode.OUTOFRANGE and call == "AT_SetInt":
                low, high = self.int_range(feature)
                detail = f"{shown} is outside the allowed {low} to {high}"
            elif code == ErrorCode.OUTOFRANGE and call == "AT_SetFloat":
                low_f, high_f = self.float_range(feature)
                detail = f"{shown} is outside the allowed {low_f:.10g} to {high_f:.10g}"
            elif code in (ErrorCode.STRINGNOTAVAILABLE, ErrorCode.STRINGNOTIMPLEMENTED):
                detail = f"{shown} is not one of the available {self.enum_options(feature)}"
            elif code == ErrorCode.NOTWRITABLE:
                detail = f"CameraAcquiring is {self.get_bool('CameraAcquiring')}"
        except AndorError:
            detail = ""
        return AndorError(call, code, feature, detail)

    def is_implemented(self, feature: str) -> bool:
        call = "AT_IsImplemented"
        answer = ffi.new("AT_BOOL *")
        self._check(
            call, self._lib.AT_IsImplemented(self._handle(call, feature), feature, answer), feature
        )
        return bool(answer[0])

    def is_writable(self, feature: str) -> bool:
        call = "AT_IsWritable"
        answer = ffi.new("AT_BOOL *")
        self._check(
            call, self._lib.AT_IsWritable(self._handle(call, feature), feature, answer), feature
        )
        return bool(answer[0])

    def get_int(self, feature: str) -> int:
        return self._get_int("AT_GetInt", feature)

    def _get_int(self, call: str, feature: str) -> int:
        value = ffi.new("AT_64 *")
        function = getattr(self._lib, call)
        self._check(call, function(self._handle(call, feature), feature, value), feature)
        return int(value[0])

    def int_range(self, feature: str) -> tuple[int, int]:
        """(AT_GetIntMin, AT_GetIntMax): both ends are allowed values."""
        return self._get_int("AT_GetIntMin", feature), self._get_int("AT_GetIntMax", feature)

    def set_int(self, feature: str, value: int) -> None:
        call = "AT_SetInt"
        code = self._lib.AT_SetInt(self._handle(call, feature), feature, value)
        if code != AT_SUCCESS:
            raise self._refusal(call, code, feature, str(value))

    def get_float(self, feature: str) -> float:
        return self._get_float("AT_GetFloat", feature)

    def _get_float(self, call: str, feature: str) -> float:
        value = ffi.new("double *")
        function = getattr(self._lib, call)
        self._check(call, function(self._handle(call, feature), feature, value), feature)
        return float(value[0])

    def float_range(self, feature: str) -> tuple[float, float]:
        """(AT_GetFloatMin, AT_GetFloatMax): both ends are allowed values."""
        low = self._get_float("AT_GetFloatMin", feature)
        return low, self._get_float("AT_GetFloatMax", feature)

    def set_float(self, feature: str, value: float) -> None:
        call = "AT_SetFloat"
        code = self._lib.AT_SetFloat(self._handle(call, feature), feature, value)
        if code != AT_SUCCESS:
            raise self._refusal(call, code, feature, f"{value:.10g}")

    def get_bool(self, feature: str) -> bool:
        call = "AT_GetBool"
        value = ffi.new("AT_BOOL *")
        self._check(
            call, self._lib.AT_GetBool(self._handle(call, feature), feature, value), feature
        )
        return bool(value[0])

    def set_bool(self, feature: str, value: bool) -> None:
        call = "AT_SetBool"
        code = self._lib.AT_SetBool(self._handle(call, feature), feature, int(bool(value)))
        if code != AT_SUCCESS:
            raise self._refusal(call, code, feature, str(value))

    def _enum_string(self, feature: str, index: int) -> str:
        call = "AT_GetEnumStringByIndex"
        text = ffi.new("AT_WC[]", _ENUM_STRING_CHARACTERS)
        code = self._lib.AT_GetEnumStringByIndex(
            self._handle(call, feature), feature, index, text, _ENUM_STRING_CHARACTERS
        )
        self._check(call, code, feature)
        return str(ffi.string(text))

    def get_enum(self, feature: str) -> str:
        """The option an enumerated feature is set to, by its string (indices differ by model)."""
        call = "AT_GetEnumIndex"
        index = ffi.new("int *")
        self._check(
            call, self._lib.AT_GetEnumIndex(self._handle(call, feature), feature, index), feature
        )
        return self._enum_string(feature, int(index[0]))

    def set_enum(self, feature: str, value: str) -> None:
        """Set an enumerated feature by its string (AT_SetEnumString)."""
        call = "AT_SetEnumString"
        code = self._lib.AT_SetEnumString(self._handle(call, feature), feature, value)
        if code != AT_SUCCESS:
            raise self._refusal(call, code, feature, repr(value))

    def enum_options(self, feature: str) -> list[str]:
        """The options that can be set now, in index order; implemented but unavailable
        ones (AT_IsEnumIndexAvailable false) are left out."""
        call = "AT_GetEnumCount"
        count = ffi.new("int *")
        self._check(
            call, self._lib.AT_GetEnumCount(self._handle(call, feature), feature, count), feature
        )
        options = []
        available = ffi.new("AT_BOOL *")
        for index in range(int(count[0])):
            call = "AT_IsEnumIndexAvailable"
            code = self._lib.AT_IsEnumIndexAvailable(
                self._handle(call, feature), feature, index, available
            )
            self._check(call, code, feature)
            if available[0]:
                options.append(self._enum_string(feature, index))
        return options

    def get_string(self, feature: str) -> str:
        call = "AT_GetStringMaxLength"
        length = ffi.new("int *")
        code = self._lib.AT_GetStringMaxLength(self._handle(call, feature), feature, length)
        self._check(call, code, feature)
        call = "AT_GetString"
        characters = max(int(length[0]), 1)
        text = ffi.new("AT_WC[]", characters)
        code = self._lib.AT_GetString(self._handle(call, feature), feature, text, characters)
        self._check(call, code, feature)
        return str(ffi.string(text))

    def command(self, feature: str) -> None:
        call = "AT_Command"
        code = self._lib.AT_Command(self._handle(call, feature), feature)
        if code != AT_SUCCESS:
            raise self._refusal(call, code, feature, feature)


# ---- the library and its cameras --------------------------------------------------------


class AndorLibrary:
    """Andor's SDK3 library (libatcore): initialise it, count and open its cameras.

    ``library`` is the path of libatcore.so (or of ``sim.andor_fake.library_path()``);
    None takes ``$ANDOR_SDK_LIBRARY``. Loading it does not initialise it:
    :meth:`initialise` (or ``with``) does, and :meth:`finalise` closes the
    cameras opened through this object and finalises the library. The SDK is
    one per process; so should this object be.
    """

    def __init__(self, library: str | Path | None = None) -> None:
        self.path = _library_path(library)
        self._lib = _load(self.path)
        self._system = _Features(self._lib, AT_HANDLE_SYSTEM)
        self._initialised = False
        self._cameras: list[AndorCamera] = []
        self._lock = threading.Lock()

    @property
    def initialised(self) -> bool:
        return self._initialised

    def initialise(self) -> None:
        """AT_InitialiseLibrary; nothing when this object initialised it already."""
        if not self._initialised:
            code = self._lib.AT_InitialiseLibrary()
            if code != AT_SUCCESS:
                raise AndorError("AT_InitialiseLibrary", code)
            self._initialised = True

    def finalise(self) -> None:
        """Close this object's open cameras, then AT_FinaliseLibrary.

        Every camera is closed even when one fails (a camera that is gone
        does); the first such error is raised after the library is finalised.
        """
        with self._lock:
            cameras, self._cameras = self._cameras, []
        errors: list[AndorError] = []
        for camera in cameras:
            try:
                camera.close()
            except AndorError as exc:
                errors.append(exc)
        if self._initialised:
            self._initialised = False
            code = self._lib.AT_FinaliseLibrary()
            if code != AT_SUCCESS:
                raise AndorError("AT_FinaliseLibrary", code)
        if errors:
            raise errors[0]

    def device_count(self) -> int:
        """Cameras the SDK sees (DeviceCount of AT_HANDLE_SYSTEM)."""
        return self._system.get_int("DeviceCount")

    def software_version(self) -> str:
        return self._system.get_string("SoftwareVersion")

    def open(self, index: int) -> AndorCamera:
        """AT_Open of the camera with that index (0 to device_count() - 1)."""
        handle = ffi.new("AT_H *")
        code = self._lib.AT_Open(index, handle)
        if code != AT_SUCCESS:
            raise AndorError("AT_Open", code, detail=f"camera index {index}")
        camera = AndorCamera(self, self._lib, int(handle[0]), index)
        with self._lock:
            self._cameras.append(camera)
        return camera

    def _forget(self, camera: AndorCamera) -> None:
        with self._lock:
            if camera in self._cameras:
                self._cameras.remove(camera)

    def __enter__(self) -> Self:
        self.initialise()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.finalise()


class AndorCamera(_Features):
    """An open camera (AT_Open): its features, its buffer queue, its acquisition.

    Buffers: the SDK writes frames into buffers the client queues
    (:meth:`queue`, each exactly ImageSizeBytes and 8-byte aligned:
    :meth:`new_buffer` makes one) and hands them back filled, oldest first
    (:meth:`wait`). The camera keeps every queued buffer referenced until it
    comes back or is flushed, so that the SDK never writes into freed memory.
    Calls may come from several threads (one waiting while another stops);
    :meth:`close` wakes a waiting thread, which then gets an error.
    """

    def __init__(self, library: AndorLibrary, lib: Any, handle: int, index: int) -> None:
        super().__init__(lib, handle)
        self.index = index
        self._library = library
        self._queued: dict[int, npt.NDArray[np.uint8]] = {}
        self._lock = threading.Lock()

    @property
    def handle(self) -> int | None:
        """The SDK's AT_H of the camera; None once closed."""
        return self._at

    def image_layout(self) -> ImageLayout:
        """How the buffers hold an image with the current settings."""
        return ImageLayout(
            height=self.get_int("AOIHeight"),
            width=self.get_int("AOIWidth"),
            stride=self.get_int("AOIStride"),
            encoding=self.get_enum("PixelEncoding"),
            size=self.get_int("ImageSizeBytes"),
        )

    def new_buffer(self) -> npt.NDArray[np.uint8]:
        """An aligned buffer of ImageSizeBytes, as the settings are now."""
        return aligned_buffer(self.get_int("ImageSizeBytes"))

    def queue(self, buffer: npt.NDArray[np.uint8]) -> None:
        """AT_QueueBuffer: the SDK may fill ``buffer`` from now on; do not touch it until
        :meth:`wait` returns it or :meth:`flush` drops it."""
        if (
            buffer.dtype != np.uint8
            or buffer.ndim != 1
            or not buffer.flags.c_contiguous
            or not buffer.flags.writeable
        ):
            raise ValueError(
                "a buffer is a writable, contiguous, one-dimensional uint8 array "
                f"(aligned_buffer makes one), not {buffer.dtype} of shape {buffer.shape}"
            )
        call = "AT_QueueBuffer"
        handle = self._handle(call)
        pointer = ffi.cast("AT_U8 *", ffi.from_buffer("AT_U8[]", buffer, require_writable=True))
        address = int(ffi.cast("uintptr_t", pointer))
        with self._lock:
            if address in self._queued:
                raise ValueError("this buffer is queued already")
            self._queued[address] = buffer
        code = self._lib.AT_QueueBuffer(handle, pointer, buffer.size)
        if code != AT_SUCCESS:
            with self._lock:
                del self._queued[address]
            detail = ""
            if code == ErrorCode.INVALIDALIGNMENT:
                detail = f"address {address:#x} is not a multiple of {ALIGNMENT}"
            elif code == ErrorCode.INVALIDSIZE:
                try:
                    detail = (
                        f"{buffer.size} bytes, ImageSizeBytes is {self.get_int('ImageSizeBytes')}"
                    )
                except AndorError:
                    detail = f"{buffer.size} bytes"
            raise AndorError(call, code, detail=detail)

    def wait(self, timeout_s: float | None) -> npt.NDArray[np.uint8] | None:
        """AT_WaitBuffer: the oldest filled buffer (the array given to :meth:`queue`), or None
        when none was filled within ``timeout_s`` (None: wait until one is).

        Waits without the GIL. AT_ERR_NODATA (no acquisition runs and no filled
        buffer is left) raises :class:`AndorError`, like every other failure.
        """
        call = "AT_WaitBuffer"
        milliseconds = _milliseconds(timeout_s)
        pointer = ffi.new("AT_U8 **")
        size = ffi.new("int *")
        code = self._lib.AT_WaitBuffer(self._handle(call), pointer, size, milliseconds)
        if code == ErrorCode.TIMEDOUT:
            return None
        self._check(call, code)
        address = int(ffi.cast("uintptr_t", pointer[0]))
        with self._lock:
            buffer = self._queued.pop(address, None)
        if buffer is None:
            raise RuntimeError(
                f"AT_WaitBuffer returned the buffer at {address:#x}, which this camera never "
                "queued (or flushed): the SDK and the binding disagree"
            )
        if int(size[0]) != buffer.size:
            raise RuntimeError(
                f"AT_WaitBuffer returned {int(size[0])} bytes for a buffer of {buffer.size}"
            )
        return buffer

    def flush(self) -> None:
        """AT_Flush: the SDK drops every queued buffer, filled or not; the camera forgets them."""
        call = "AT_Flush"
        self._check(call, self._lib.AT_Flush(self._handle(call)))
        with self._lock:
            self._queued.clear()

    def close(self) -> None:
        """AT_Close; closing again does nothing. The handle is given up even when the SDK
        reports an error (a camera that is gone does), which is then raised."""
        if self._at is None:
            return
        handle, self._at = self._at, None
        self._library._forget(self)
        code = self._lib.AT_Close(handle)
        with self._lock:
            self._queued.clear()
        self._check("AT_Close", code)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

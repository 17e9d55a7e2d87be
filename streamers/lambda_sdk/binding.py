"""The Python binding of ``lambda_sdk.h``, the C API of an XSpectrum Lambda system.

Why cffi's ABI mode (``ffi.dlopen``) and not a compiled extension: one
binding serves both libraries that implement the header, the site's shim
over libxsp and the fake of ``sim.lambda_fake``, and each is chosen at run
time by its path (the streamer's ``--library``). Nothing is compiled for the
binding, so a DCU needs a compiler only for the shim itself, and the binding
never has to be rebuilt when the shim is. The declarations come from the
header itself (the part between ``/* cffi-begin */`` and ``/* cffi-end */``),
so the binding cannot drift from the contract the shim is compiled against.

cffi releases the GIL around every call of a C function, in ABI mode as in
API mode, so a thread waiting in :meth:`LambdaSystem.next_frame` lets the
other modules' readers and the rest of the process run
(tests/test_lambda_sdk.py::test_next_frame_releases_the_gil checks it).

Every call that returns an error code raises :class:`LambdaSdkError` with
the library's own text (``lsdk_last_error``, read in the same thread right
after the call), except ``LSDK_ERR_TIMEOUT`` of ``lsdk_next_frame``, which
only means that no frame came in time (``None``).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from streamers.cffi_sdk import NotTheLibrary, declared, open_library

HEADER = Path(__file__).with_name("lambda_sdk.h")
_INT32_MAX = 2**31 - 1
_DTYPES = {1: "uint8", 2: "uint16", 4: "uint32"}


ffi = declared(HEADER)


class ErrorCode(IntEnum):
    """``LSDK_OK`` and ``LSDK_ERR_*`` of the header."""

    OK = 0
    TIMEOUT = -1
    ARGUMENT = -2
    STATE = -3
    HARDWARE = -4
    RESOURCE = -5


class TriggerMode(IntEnum):
    """``LSDK_TRIGGER_*`` (libxsp's ``xsp::lambda::TrigMode``)."""

    SOFTWARE = 0
    EXT_SEQUENCE = 1
    EXT_FRAMES = 2


class FrameStatus(IntEnum):
    """``LSDK_FRAME_*`` (libxsp's ``xsp::FrameStatusCode``)."""

    OK = 0
    MISSING = 1
    CORRUPT = 2


def _code(value: int) -> int:
    """The ErrorCode member for a known value, so that str() and repr() name it."""
    try:
        return ErrorCode(value)
    except ValueError:
        return value


class LambdaSdkError(RuntimeError):
    """A call of the Lambda SDK failed.

    ``call`` is the C function, ``code`` its return value (an :class:`ErrorCode`
    when the header knows it) and ``text`` the library's own reason, which is
    what the message shows: an operator reads the vendor's words.
    """

    def __init__(self, call: str, code: int, text: str) -> None:
        super().__init__(call, code, text)
        self.call = call
        self.code = _code(code)
        self.text = text

    def __str__(self) -> str:
        if self.text:
            return f"{self.call}: {self.text}"
        return f"{self.call} failed with code {self.code!r} and gave no reason"


class LibraryNotFound(LambdaSdkError):
    """The library given as the Lambda SDK (``--library``) is missing or is not one."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            "dlopen",
            ErrorCode.RESOURCE,
            f"cannot load {path} as the Lambda SDK shim (--library, the library that "
            f"implements streamers/lambda_sdk/lambda_sdk.h): {reason}",
        )
        self.args = (path, reason)
        self.path = path


@dataclass(frozen=True)
class SystemInfo:
    """The detector as one system (one DCU) sees it."""

    id: str
    module_count: int
    """Modules this system serves."""
    detector_modules: int
    """Modules of the whole detector, over all its systems."""
    full_shape: tuple[int, int]
    """Rows and columns of the whole detector's assembled image."""


@dataclass(frozen=True)
class ModuleInfo:
    """One module of the system and where its frames go in the full image."""

    id: str
    index: int
    """Position of the module in the whole detector, 0-based."""
    shape: tuple[int, int]
    depth: int
    """Bits per pixel counted (12 or 24 on a Lambda)."""
    dtype: str
    """numpy dtype name of the pixels as stored: ``uint8``, ``uint16`` or ``uint32``."""
    x: int
    y: int
    rotation: int
    """Quarter turns counter-clockwise, as ``numpy.rot90``."""


@dataclass(frozen=True, eq=False)
class Frame:
    """A frame of one module, as the SDK holds it.

    ``pixels`` is a read-only view of the SDK's own buffer, without a copy:
    it is valid only until the frame is released (:meth:`LambdaSystem.release`)
    or the system closed. Whoever keeps pixels longer copies them first. The
    SDK has a limited number of buffers per module, so every frame must be
    released, whatever its status.
    """

    number: int
    status: FrameStatus
    pixels: np.ndarray
    _raw: Any = field(repr=False)


@functools.cache
def _load(path: Path) -> Any:
    """The library at ``path``, every function of the header resolved (or LibraryNotFound)."""
    try:
        return open_library(ffi, path, "lsdk_")
    except NotTheLibrary as exc:
        raise LibraryNotFound(str(path), str(exc)) from None


def _milliseconds(timeout_s: float) -> int:
    if math.isnan(timeout_s) or timeout_s < 0:
        raise ValueError(f"timeout {timeout_s} s: must be a time of 0 or more")
    if math.isinf(timeout_s):
        return _INT32_MAX
    return min(math.ceil(timeout_s * 1000.0), _INT32_MAX)


def _text(chars: Any) -> str:
    return str(ffi.string(chars).decode("utf-8", "replace"))


class LambdaSystem:
    """An opened Lambda system (``lsdk_open``): its modules, settings, series and frames.

    ``library`` is the shared library implementing ``lambda_sdk.h`` (the
    site's shim, or ``sim.lambda_fake.library_path()``); ``config`` is the
    system file the library reads. Settings and start/stop may come from any
    thread; each module is read (:meth:`next_frame`, :meth:`release`) by one
    thread at a time. :meth:`close` must not race with those calls.
    """

    def __init__(self, library: str | Path, config: str | Path) -> None:
        self.library = Path(library)
        self._lib = _load(self.library.absolute())
        self._system: Any = None
        handle = ffi.new("lsdk_system **")
        self._check("lsdk_open", self._lib.lsdk_open(os.fsencode(config), handle))
        self._system = handle[0]
        try:
            self._info = self._read_info()
            self._modules = [self._read_module(k) for k in range(self._info.module_count)]
        except BaseException:
            self.close()
            raise

    def _check(self, call: str, code: int) -> None:
        if code != ErrorCode.OK:
            raise LambdaSdkError(call, code, _text(self._lib.lsdk_last_error()))

    def _handle(self, call: str) -> Any:
        if self._system is None:
            raise LambdaSdkError(call, ErrorCode.STATE, "the Lambda system is closed")
        return self._system

    def _read_info(self) -> SystemInfo:
        raw = ffi.new("lsdk_system_info *")
        self._check("lsdk_system_info_get", self._lib.lsdk_system_info_get(self._system, raw))
        return SystemInfo(
            id=_text(raw.id),
            module_count=int(raw.module_count),
            detector_modules=int(raw.detector_modules),
            full_shape=(int(raw.full_height), int(raw.full_width)),
        )

    def _read_module(self, position: int) -> ModuleInfo:
        raw = ffi.new("lsdk_module_info *")
        self._check(
            "lsdk_module_info_get", self._lib.lsdk_module_info_get(self._system, position, raw)
        )
        bytes_per_pixel = int(raw.bytes_per_pixel)
        if bytes_per_pixel not in _DTYPES:
            raise LambdaSdkError(
                "lsdk_module_info_get",
                ErrorCode.HARDWARE,
                f"module {_text(raw.id)} stores {bytes_per_pixel} bytes per pixel; "
                "1, 2 or 4 are known",
            )
        return ModuleInfo(
            id=_text(raw.id),
            index=int(raw.index),
            shape=(int(raw.height), int(raw.width)),
            depth=int(raw.depth),
            dtype=_DTYPES[bytes_per_pixel],
            x=int(raw.x),
            y=int(raw.y),
            rotation=int(raw.rotation),
        )

    @property
    def info(self) -> SystemInfo:
        return self._info

    @property
    def modules(self) -> list[ModuleInfo]:
        """This system's modules; a module's position here is the ``module`` of the calls."""
        return list(self._modules)

    @property
    def version(self) -> str:
        return _text(self._lib.lsdk_version())

    def set_frame_count(self, frames: int) -> None:
        call = "lsdk_set_frame_count"
        self._check(call, self._lib.lsdk_set_frame_count(self._handle(call), frames))

    def set_shutter_time(self, seconds: float) -> None:
        """The time of one frame; the C API takes milliseconds."""
        call = "lsdk_set_shutter_time"
        self._check(call, self._lib.lsdk_set_shutter_time(self._handle(call), seconds * 1000.0))

    def set_trigger_mode(self, mode: TriggerMode) -> None:
        call = "lsdk_set_trigger_mode"
        self._check(call, self._lib.lsdk_set_trigger_mode(self._handle(call), int(mode)))

    def start(self) -> None:
        call = "lsdk_start"
        self._check(call, self._lib.lsdk_start(self._handle(call)))

    def stop(self) -> None:
        call = "lsdk_stop"
        self._check(call, self._lib.lsdk_stop(self._handle(call)))

    def busy(self) -> bool:
        call = "lsdk_is_busy"
        busy = ffi.new("int32_t *")
        self._check(call, self._lib.lsdk_is_busy(self._handle(call), busy))
        return bool(busy[0])

    def next_frame(self, module: int, timeout_s: float) -> Frame | None:
        """The module's next frame, or None when none came within ``timeout_s``.

        Waits without the GIL. The frame holds one of the module's buffers
        until :meth:`release`.
        """
        call = "lsdk_next_frame"
        handle = self._handle(call)
        raw = ffi.new("lsdk_frame *")
        code = self._lib.lsdk_next_frame(handle, module, _milliseconds(timeout_s), raw)
        if code == ErrorCode.TIMEOUT:
            return None
        self._check(call, code)
        info = self._modules[module]
        dtype = np.dtype(info.dtype)
        expected = info.shape[0] * info.shape[1] * dtype.itemsize
        statuses = {status.value for status in FrameStatus}
        problem = ""
        if raw.size != expected:
            problem = f"{raw.size} bytes, expected {expected} ({info.shape} {info.dtype})"
        elif raw.status not in statuses:
            problem = f"status {raw.status}, which the header does not know"
        if problem:
            self._check("lsdk_release_frame", self._lib.lsdk_release_frame(handle, module, raw))
            raise LambdaSdkError(
                call, ErrorCode.HARDWARE, f"module {info.id}: frame {raw.number} has {problem}"
            )
        pixels = np.frombuffer(ffi.buffer(raw.data, raw.size), dtype=dtype).reshape(info.shape)
        pixels.flags.writeable = False
        return Frame(
            number=int(raw.number), status=FrameStatus(raw.status), pixels=pixels, _raw=raw
        )

    def release(self, module: int, frame: Frame) -> None:
        """Give the frame's buffer back to the SDK; its ``pixels`` must not be used after."""
        call = "lsdk_release_frame"
        self._check(call, self._lib.lsdk_release_frame(self._handle(call), module, frame._raw))

    def close(self) -> None:
        """Close the system (``lsdk_close``); closing again does nothing."""
        if self._system is not None:
            system, self._system = self._system, None
            self._lib.lsdk_close(system)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

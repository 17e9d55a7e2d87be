"""A fake Andor SDK3: ``streamers/andor_sdk/atcore_subset.h`` implemented in C.

Why a fake in C behind the same declarations, rather than a Python double:
the streamer, the binding and their tests then run exactly the code path of
a site, where Andor's libatcore.so is loaded by path
(``streamers.andor_sdk.binding``); only the library path differs. The fake
is compiled by the project build (``_fake_atcore_build.py``) and found with
:func:`library_path`.

What it does (``fake_atcore.c`` has the details and the sources):

- ``AT_InitialiseLibrary`` reads the configuration named by
  ``ANDOR_FAKE_CONFIG`` (:mod:`sim.andor_fake.config_file` writes it): the
  model (Zyla 5.5, Zyla 4.2 or Balor, with their sensor sizes and row
  times), serial number, number of cameras, the pulse generator wired to
  the external trigger input and encodings to make unavailable.
- Features as Andor documents them: ExposureTime, FrameRate (its maximum is
  1 / max(exposure, readout) with Overlap on, 1 / (exposure + readout) with
  it off, where the readout is the longer part of the AOI either side of
  the sensor's centre times the row time, and capped by the interface's
  bytes per second), CycleMode, FrameCount, TriggerMode, PixelEncoding,
  the AOI (1-based left and top), AOIStride (rows padded to 8 bytes),
  ImageSizeBytes, ReadoutTime, CameraAcquiring and the commands.
- There is no producer thread: frame k of a series is due at a time the
  trigger mode gives (internal: start + k / FrameRate + exposure + readout;
  software: its trigger + exposure + readout; external: the pulse
  generator's pulses), and it goes into the oldest buffer queued before
  then; with none queued, it is lost and the numbering jumps, as on a real
  camera. ``AT_WaitBuffer`` waits until then and writes the pixels in the
  caller's thread.
- Pixel (r, c) of the AOI, at sensor row R = AOITop - 1 + r and column
  C = AOILeft - 1 + c, of frame n is ``(n*7 + R*3 + C)`` masked to 12 bits
  (Mono12, Mono12Packed) or 16 (Mono16), and the 16-bit value in both
  halves for Mono32 (:func:`expected_frame`), written in the encoding's
  layout, so a test can check every pixel.
- Faults, in ``ANDOR_FAKE_FAULTS`` (``key=value;key=value``, read by each
  ``AT_Open``): ``drop_buffer=N[,M...]`` (those frames never fill a buffer),
  ``timeout_after=N`` (from frame N on no buffer fills; waits time out),
  ``vanish_after=N`` (when frame N is due the camera is gone: the buffers
  filled before still come from ``AT_WaitBuffer``, then every call of its
  handle returns AT_ERR_CONNECTION; ``AT_Close`` too, though it releases
  the handle), ``open_error=CODE`` (``AT_Open`` returns CODE). Frame
  numbers count from 0 in every series.
- Why a call failed is kept per thread (:func:`last_error`), which Andor's
  API has no call for; a refused configuration is also printed on stderr.
"""

from __future__ import annotations

import functools
from typing import Any

import cffi
import numpy as np
import numpy.typing as npt

from sim.andor_fake.config_file import ENCODINGS, MODELS, ConfigFile, Encoding, SensorModel
from sim.fake_library import compiled_library

EXTENSION = "sim.andor_fake._fake_atcore"
CONFIG_ENV = "ANDOR_FAKE_CONFIG"
FAULTS_ENV = "ANDOR_FAKE_FAULTS"

__all__ = [
    "CONFIG_ENV",
    "ENCODINGS",
    "FAULTS_ENV",
    "MODELS",
    "ConfigFile",
    "Encoding",
    "SensorModel",
    "expected_frame",
    "last_error",
    "library_path",
]


def library_path() -> str:
    """The compiled fake SDK, to be given to the binding as Andor's library.

    It is the cffi extension ``sim.andor_fake._fake_atcore``; its ``AT_*``
    functions are exported, so it is loaded by path as a plain library.
    """
    return compiled_library(EXTENSION, "the fake Andor SDK", "sim/andor_fake/fake_atcore.c")


_ffi = cffi.FFI()
_ffi.cdef("const char *fake_atcore_last_error(void);")


@functools.cache
def _fake() -> Any:
    return _ffi.dlopen(library_path())


def last_error() -> str:
    """The fake's reason for the last call that failed in this thread ("" if none did)."""
    return str(_ffi.string(_fake().fake_atcore_last_error()).decode("utf-8", "replace"))


def expected_frame(
    frame: int,
    height: int,
    width: int,
    encoding: Encoding = "Mono16",
    *,
    left: int = 1,
    top: int = 1,
) -> npt.NDArray[np.uint16] | npt.NDArray[np.uint32]:
    """The image the fake delivers as frame ``frame`` of a series, for an AOI of
    ``height`` x ``width`` at 1-based ``left`` and ``top``: uint32 for Mono32, else uint16."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding {encoding!r}: the fake has {', '.join(ENCODINGS)}")
    rows = np.arange(top - 1, top - 1 + height, dtype=np.int64)[:, np.newaxis] * 3
    columns = np.arange(left - 1, left - 1 + width, dtype=np.int64)[np.newaxis, :]
    values = frame * 7 + rows + columns
    if encoding == "Mono32":
        return ((values & 0xFFFF) * 0x10001).astype(np.uint32)
    mask = 0xFFFF if encoding == "Mono16" else 0xFFF
    return (values & mask).astype(np.uint16)

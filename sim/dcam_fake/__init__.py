"""A fake Hamamatsu DCAM-API for tests: one simulated ORCA camera behind ``dcam_subset.h``.

This is a test double, not a DCAM implementation: ``fake_dcam.c``
implements, in C and in our own code, only the calls declared in
``streamers/dcam_sdk/dcam_subset.h``, following the public facts of
``docs/camera-sdk-facts.md`` (section 3). Why C behind the same
declarations rather than a Python double: the binding
(``streamers.dcam_sdk.binding``) and whatever uses it then run exactly the
code path they run over a site's libdcamapi.so, loaded by path in cffi's ABI
mode; only the library path differs. The fake is compiled by the project
build (``_fake_dcam_build.py``) and found with :func:`library_path`.

What it does (``fake_dcam.c`` has the details):

- ``dcamapi_init`` finds one device: the camera the file in
  ``DCAM_FAKE_CONFIG`` describes (:class:`ConfigFile` writes it), an
  ORCA-Flash4.0 V3 (2048 x 2048, MONO16) without one; also an ORCA-Fusion
  (2304 x 2304, MONO12P as over CoaXPress) and an ORCA-Lightning
  (4608 x 2592, 12 bits, MONO12P). Properties have their attributes (range,
  step, the states they may be written in) and the SDK's refusals.
- Timing: readout = subarray rows x the model's row time, and a frame takes
  the longer of readout and exposure (``INTERNAL_FRAMEINTERVAL``). Frames are
  due at times the trigger source gives: INTERNAL at that interval, SOFTWARE
  one per ``dcamcap_firetrigger``, EXTERNAL from the fake's own pulse
  generator (``trigger_period_ms``, ``trigger_delay_ms``,
  ``trigger_width_ms``; TRIGGER_MODE START, TRIGGERACTIVE EDGE, LEVEL and
  SYNCREADOUT). There is no producer thread: each call catches up with the
  frames due by then and writes them into the ring buffer (frame k in slot
  k mod n).
- Pixel (r, c) of frame k, counted on the sensor, is
  ``(k*7 + r*3 + c) & (2**bits - 1)`` (:func:`expected_frame`), in the pixel
  type's layout, each row padded with zeros to ``IMAGE_ROWBYTES`` (a
  multiple of 8 bytes).
- Faults, in the environment variable ``DCAM_FAKE_FAULTS``
  (``key=value;key=value``), read by ``dcamapi_init``: ``drop_frame=N[,M...]``
  (frame N is counted but never written to the buffer, and
  ``TRANSFERINFO_LOSTCOUNT`` counts it), ``timeout_after=N`` (nothing arrives
  after N frames: waits time out), ``vanish_after=N`` (after N frames the
  device is gone: its calls return ``DCAMERR_NOCAMERA``) and
  ``open_error=CODE`` (``dcamdev_open`` fails with that DCAMERR, a name such
  as ``DCAMERR_NOCONNECTION`` or a code such as ``0x80000f07``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sim.dcam_fake.config_file import ConfigFile, Model
from sim.fake_library import compiled_library

EXTENSION = "sim.dcam_fake._fake_dcam"
CONFIG_VARIABLE = "DCAM_FAKE_CONFIG"
FAULTS_VARIABLE = "DCAM_FAKE_FAULTS"

_BITS = {1: 8, 2: 16, 3: 12, 5: 12}
"""Bits per channel of DCAM_PIXELTYPE MONO8, MONO16, MONO12 and MONO12P by default."""

__all__ = [
    "CONFIG_VARIABLE",
    "FAULTS_VARIABLE",
    "ConfigFile",
    "Model",
    "expected_frame",
    "library_path",
]


def library_path() -> str:
    """The compiled fake SDK, to be given to the binding as the DCAM library.

    It is the cffi extension ``sim.dcam_fake._fake_dcam``; its ``dcam*``
    functions are exported, so it is loaded by path as a plain library.
    """
    return compiled_library(EXTENSION, "the fake DCAM SDK", "sim/dcam_fake/fake_dcam.c")


def expected_frame(
    frame: int,
    height: int,
    width: int,
    pixeltype: int,
    *,
    top: int = 0,
    left: int = 0,
    bits: int | None = None,
) -> npt.NDArray[np.uint8] | npt.NDArray[np.uint16]:
    """The pixel values of frame ``frame`` as the fake makes it, unpacked.

    ``pixeltype`` is a DCAM_PIXELTYPE value; ``top`` and ``left`` are where
    the image starts on the sensor (SUBARRAYVPOS, SUBARRAYHPOS with the
    subarray on); ``bits`` is BITSPERCHANNEL when it is not the pixel type's
    own (12 in MONO16 on an ORCA-Lightning). MONO8 gives uint8, the others
    uint16.
    """
    if pixeltype not in _BITS:
        raise ValueError(f"pixel type {pixeltype}: the fake makes MONO8, MONO16, MONO12, MONO12P")
    mask = (1 << (_BITS[pixeltype] if bits is None else bits)) - 1
    rows = (np.arange(height, dtype=np.int64)[:, np.newaxis] + top) * 3
    columns = np.arange(width, dtype=np.int64)[np.newaxis, :] + left
    values = (frame * 7 + rows + columns) & mask
    return values.astype(np.uint8) if pixeltype == 1 else values.astype(np.uint16)

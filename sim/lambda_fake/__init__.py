"""A fake XSpectrum Lambda SDK: ``streamers/lambda_sdk/lambda_sdk.h`` implemented in C.

Why a fake in C behind the same header, rather than a Python double: the
streamer, its binding and its tests then run exactly the code path of a DCU,
where a site's shim over libxsp is loaded by path
(``streamers.lambda_sdk.binding``); only the library path differs. The fake
is compiled by the project build (``_fake_xsp_build.py``) and found with
:func:`library_path`.

What it does (``fake_xsp.c`` has the details):

- ``lsdk_open`` reads a system file (:mod:`sim.lambda_fake.system_file`
  writes them): the modules this system serves, their placement in the
  whole detector, depth (12 or 24 bits), buffers, the fake's own pulse
  generator wired to the trigger input, and faults.
- There is no producer thread: frame k of a series is due at a time the
  trigger mode gives (internal: start + (k+1) * shutter; one external
  trigger: start + delay + (k+1) * shutter; one trigger per frame:
  start + delay + k * period + shutter), and ``lsdk_next_frame`` waits
  until then and makes the frame in the caller's thread. After
  ``lsdk_stop`` frames due before the stop still come, later ones never.
- Pixel (r, c) of frame n of the module with index m is
  ``(n*7 + m*1021 + r*3 + c) & (2**depth - 1)`` (:func:`expected_frame`),
  so a test can check every pixel that went through the pipeline.
- Faults, in the file or in the environment variable ``LAMBDA_FAKE_FAULTS``
  (``key=value;key=value``, the same keys, added to the file's):
  ``lose_frame`` (never delivered), ``missing_frame`` and ``corrupt_frame``
  (delivered with that status), ``stall_module`` (nothing from that frame
  on), each a list of ``module:frame``; and ``open_error`` (``lsdk_open``
  fails as if a module were unreachable, with that text). Faults of modules
  another system serves are ignored, so one variable can serve both DCUs.
"""

from __future__ import annotations

import numpy as np

from sim.fake_library import compiled_library
from sim.lambda_fake.system_file import ModuleLine, SystemFile, windmill_systems

EXTENSION = "sim.lambda_fake._fake_xsp"
_DTYPES = {12: np.uint16, 24: np.uint32}

__all__ = [
    "ModuleLine",
    "SystemFile",
    "expected_frame",
    "library_path",
    "windmill_systems",
]


def library_path() -> str:
    """The compiled fake SDK, to be given to the binding as the Lambda library.

    It is the cffi extension ``sim.lambda_fake._fake_xsp``; its ``lsdk_*``
    functions are exported, so it is loaded by path as a plain library.
    """
    return compiled_library(EXTENSION, "the fake Lambda SDK", "sim/lambda_fake/fake_xsp.c")


def expected_frame(
    module_index: int, frame: int, height: int, width: int, depth: int = 12
) -> np.ndarray:
    """What the fake delivers as frame ``frame`` of the module with index ``module_index``."""
    if depth not in _DTYPES:
        raise ValueError(f"depth {depth}: the fake Lambda supports 12 and 24")
    mask = (1 << depth) - 1
    offset = (frame * 7 + module_index * 1021) & mask
    rows = np.arange(height, dtype=np.int64)[:, np.newaxis] * 3
    columns = np.arange(width, dtype=np.int64)[np.newaxis, :]
    return ((offset + rows + columns) & mask).astype(_DTYPES[depth])

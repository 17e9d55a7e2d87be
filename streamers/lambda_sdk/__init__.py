"""The XSpectrum Lambda SDK as the streamer uses it: ``lambda_sdk.h`` and its Python binding.

``lambda_sdk.h`` is the contract: a small C API a site implements over
XSpectrum's C++ libxsp (the shim) and ``sim.lambda_fake`` implements for
tests. ``binding`` loads either one by path; the header is package data
next to it, read when the binding is imported.
"""

from streamers.lambda_sdk.binding import (
    ErrorCode,
    Frame,
    FrameStatus,
    LambdaSdkError,
    LambdaSystem,
    LibraryNotFound,
    ModuleInfo,
    SystemInfo,
    TriggerMode,
)

__all__ = [
    "ErrorCode",
    "Frame",
    "FrameStatus",
    "LambdaSdkError",
    "LambdaSystem",
    "LibraryNotFound",
    "ModuleInfo",
    "SystemInfo",
    "TriggerMode",
]

"""Hamamatsu DCAM-API 4 as the ORCA streamer uses it: ``dcam_subset.h`` and its Python binding.

``dcam_subset.h`` is our own declaration of the few DCAM-API calls,
structures and constants acquisition needs (Hamamatsu's headers may not be
shipped); ``binding`` loads Hamamatsu's libdcamapi.so at a site, or the fake
of ``sim.dcam_fake`` in tests, by path. The header is package data next to
it, read when the binding is imported.
"""

from streamers.dcam_sdk.binding import (
    CaptureStatus,
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
    PropertyRange,
    TransferInfo,
    TriggerActive,
    TriggerMode,
    TriggerSource,
    WaitEvent,
    default_library,
    error_hex,
    error_name,
    unpack_mono12,
    unpack_mono12p,
)

__all__ = [
    "CaptureStatus",
    "DcamApi",
    "DcamCamera",
    "DcamError",
    "ErrorCode",
    "Frame",
    "IdStr",
    "LibraryNotFound",
    "Mode",
    "PixelType",
    "Prop",
    "PropertyRange",
    "TransferInfo",
    "TriggerActive",
    "TriggerMode",
    "TriggerSource",
    "WaitEvent",
    "default_library",
    "error_hex",
    "error_name",
    "unpack_mono12",
    "unpack_mono12p",
]

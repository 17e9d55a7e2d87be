"""Andor's SDK3 (libatcore) as the streamer uses it: ``atcore_subset.h`` and its binding.

``atcore_subset.h`` is our own declaration of the part of Andor's C API we
call (Andor's atcore.h is vendor-copyrighted and not shipped); Andor's
libatcore.so implements it at a site and ``sim.andor_fake`` for tests.
``binding`` loads either one by path; the header is package data next to
it, read when the binding is imported.
"""

from streamers.andor_sdk.binding import (
    ALIGNMENT,
    AndorCamera,
    AndorError,
    AndorLibrary,
    ErrorCode,
    ImageLayout,
    LibraryNotFound,
    aligned_buffer,
    error_name,
    unpack,
    unpack_mono12,
    unpack_mono12packed,
    unpack_mono16,
    unpack_mono32,
)

__all__ = [
    "ALIGNMENT",
    "AndorCamera",
    "AndorError",
    "AndorLibrary",
    "ErrorCode",
    "ImageLayout",
    "LibraryNotFound",
    "aligned_buffer",
    "error_name",
    "unpack",
    "unpack_mono12",
    "unpack_mono12packed",
    "unpack_mono16",
    "unpack_mono32",
]

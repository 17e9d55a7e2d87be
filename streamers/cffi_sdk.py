"""What the three vendor-SDK bindings share: declarations from a header, a library by path.

Each binding (``lambda_sdk``, ``andor_sdk``, ``dcam_sdk``) declares its C
API once, in a header kept in the repository, between ``/* cffi-begin */``
and ``/* cffi-end */`` (the part free of preprocessor lines that cffi
reads), and loads the vendor's library or our fake by path in ABI mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cffi

BEGIN, END = "/* cffi-begin */", "/* cffi-end */"


class NotTheLibrary(ValueError):
    """The file is missing, does not load, or lacks a declared function; the text says which."""


def declared(header: Path) -> cffi.FFI:
    """An FFI holding the header's declarations; ImportError when it has none."""
    text = header.read_text()
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise ImportError(f"{header} has no {BEGIN} ... {END} block of declarations")
    ffi = cffi.FFI()
    ffi.cdef(text[begin + len(BEGIN) : end])
    return ffi


def open_library(ffi: cffi.FFI, path: Path, prefix: str) -> Any:
    """The library at ``path`` with every declared function named ``prefix...`` resolved."""
    if not path.is_file():
        raise NotTheLibrary("no such file")
    try:
        lib = ffi.dlopen(str(path))
    except OSError as exc:
        raise NotTheLibrary(str(exc)) from None
    for name in dir(lib):
        if name.startswith(prefix):
            try:
                getattr(lib, name)
            except AttributeError:
                raise NotTheLibrary(f"it has no function {name}") from None
    return lib

"""Types of the compiled ``protocols._bslz4`` (built from ``_bslz4_build.py``)."""

import cffi

ffi: cffi.FFI

class _Lib:
    def bslz4_blocks_end(self, chunk: cffi.FFI.CData, length: int, blocks: int, /) -> int: ...

lib: _Lib

"""Types of the compiled ``receiver._chunks`` (built from ``_chunks_build.py``)."""

import cffi

ffi: cffi.FFI

class _Lib:
    def write_chunks(
        self,
        write_chunk: cffi.FFI.CData,
        dataset: int,
        filter_mask: int,
        rank: int,
        count: int,
        offsets: cffi.FFI.CData,
        sizes: cffi.FFI.CData,
        buffers: cffi.FFI.CData,
        /,
    ) -> int: ...

lib: _Lib

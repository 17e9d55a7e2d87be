"""Types of the compiled ``receiver._zmqbatch`` (built from ``_zmqbatch_build.py``)."""

import cffi

ffi: cffi.FFI

class _Lib:
    def batch_new(self, api: cffi.FFI.CData, capacity: int, /) -> cffi.FFI.CData: ...
    def batch_recv(
        self,
        batch: cffi.FFI.CData,
        socket: cffi.FFI.CData,
        max_messages: int,
        max_bytes: int,
        max_parts: int,
        message_parts: cffi.FFI.CData,
        data: cffi.FFI.CData,
        sizes: cffi.FFI.CData,
        /,
    ) -> int: ...
    def batch_free(self, batch: cffi.FFI.CData, /) -> None: ...

lib: _Lib

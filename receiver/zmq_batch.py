"""Receiving a batch of ZeroMQ messages in one C call (``receiver._zmqbatch``).

A worker asks for up to ``max_messages`` messages; the call waits for the
first one up to the socket's receive timeout and takes the others only while
ZeroMQ already holds them, with the GIL released the whole time. The first
part of each message comes back as ``bytes`` (a small header to parse), the
others as memoryviews of ZeroMQ's own buffers, which live until the last
memoryview of their batch is gone.

``PyzmqBatchReceiver`` does the same with pyzmq's ``recv_multipart``: it is
the reference the C loop must agree with (tests/test_zmq_batch.py), and what
``batch_receiver`` gives where pyzmq's libzmq cannot be reached (another pyzmq
backend).
"""

from __future__ import annotations

import ctypes
import errno
from functools import cache, partial

import zmq

from receiver._zmqbatch import ffi, lib

MAX_PARTS = 16

Parts = list[bytes | memoryview]


class TooManyParts(ValueError):
    """A message had more than MAX_PARTS parts; the rest of it was dropped."""

    def __init__(self) -> None:
        super().__init__(f"a message of more than {MAX_PARTS} parts")


@cache
def _api() -> object:
    """The addresses of the libzmq functions pyzmq's own extension is linked with."""
    from zmq.backend.cython import _zmq

    libzmq = ctypes.CDLL(_zmq.__file__)
    api = ffi.new("zmq_api *")
    for field, symbol in (
        ("msg_init", "zmq_msg_init"),
        ("msg_recv", "zmq_msg_recv"),
        ("msg_close", "zmq_msg_close"),
        ("msg_data", "zmq_msg_data"),
        ("msg_size", "zmq_msg_size"),
        ("msg_more", "zmq_msg_more"),
        ("errno_of", "zmq_errno"),
    ):
        address = ctypes.cast(getattr(libzmq, symbol), ctypes.c_void_p).value
        setattr(api, field, ffi.cast("void *", address))
    return api


def available() -> bool:
    """Whether libzmq's functions can be found in the pyzmq that is loaded."""
    try:
        _api()
    except (ImportError, AttributeError, OSError):
        return False
    return True


def batch_receiver(
    socket: zmq.Socket[bytes], max_messages: int
) -> BatchReceiver | PyzmqBatchReceiver:
    """The C loop where it can run, pyzmq otherwise."""
    if available():
        return BatchReceiver(socket, max_messages)
    return PyzmqBatchReceiver(socket, max_messages)


def _keep(owner: object, part: object) -> None:
    """A part's finalizer: it does nothing, holding ``owner`` until then is its purpose."""


class BatchReceiver:
    """Receives batches from one socket; use it from the socket's own thread only."""

    def __init__(self, socket: zmq.Socket[bytes], max_messages: int) -> None:
        self._socket = socket
        self._handle = ffi.cast("void *", socket.underlying)
        self._max_messages = max_messages
        self._capacity = max_messages * 2 + MAX_PARTS
        self._message_parts = ffi.new("int[]", max_messages)
        self._data = ffi.new("char *[]", self._capacity)
        self._sizes = ffi.new("size_t[]", self._capacity)

    def recv(self, max_bytes: int) -> list[Parts | TooManyParts]:
        """The messages that came (none after the receive timeout), in order.

        A message with too many parts is a ``TooManyParts`` in its place, so
        the caller can report it where it was.
        """
        batch = lib.batch_new(_api(), self._capacity)
        if batch == ffi.NULL:
            raise MemoryError("no memory for a batch of ZeroMQ messages")
        count = lib.batch_recv(
            batch,
            self._handle,
            self._max_messages,
            max_bytes,
            MAX_PARTS,
            self._message_parts,
            self._data,
            self._sizes,
        )
        owner = ffi.gc(batch, lib.batch_free)
        if count < 0:
            if -count in (errno.EAGAIN, errno.EINTR):
                return []
            raise zmq.ZMQError(-count)
        keep = partial(_keep, owner)
        data, sizes = self._data, self._sizes
        messages: list[Parts | TooManyParts] = []
        index = 0
        for number in self._message_parts[0:count]:
            parts = abs(number)
            if number < 0:
                messages.append(TooManyParts())
            else:
                message: Parts = [ffi.unpack(data[index], sizes[index])]
                for i in range(index + 1, index + parts):
                    message.append(memoryview(ffi.buffer(ffi.gc(data[i], keep), sizes[i])))
                messages.append(message)
            index += parts
        return messages


class PyzmqBatchReceiver:
    """The same batches through pyzmq, one call and one GIL hand-over per part."""

    def __init__(self, socket: zmq.Socket[bytes], max_messages: int) -> None:
        self._socket = socket
        self._max_messages = max_messages

    def recv(self, max_bytes: int) -> list[Parts | TooManyParts]:
        messages: list[Parts | TooManyParts] = []
        nbytes = 0
        flags = 0
        while len(messages) < self._max_messages and nbytes < max_bytes:
            try:
                frames = self._socket.recv_multipart(flags, copy=False)
            except zmq.Again:
                break
            flags = zmq.NOBLOCK
            nbytes += sum(len(frame) for frame in frames)
            if len(frames) > MAX_PARTS:
                messages.append(TooManyParts())
            else:
                messages.append([frames[0].bytes, *(frame.buffer for frame in frames[1:])])
        return messages

"""Republishes the ordered stream in STINS on a ZeroMQ PUSH socket for online processing.

A slow or absent consumer must never stall file writing, so the collector
hands messages over without waiting: they queue in a buffer bounded in bytes
(a frame count alone would allow gigabytes at 20 MB frames), and a message
that does not fit is counted as missed. A thread of its own sends them.
Messages are numbered for every message, sent or missed, so a consumer sees a
gap in ``msg_number`` where it missed something. Messages are encoded in the
forwarder's thread, so the collector only hands references over: the frames
of a multi-module detector are assembled into the full image there
(``receiver/assembly.py``), at the cost of a decode (and for bslz4 an encode)
per frame that only this thread pays; what it cannot keep up with is missed.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

import zmq

from protocols import stins
from protocols.model import Buffer, Image, Message
from receiver import assembly
from receiver.stream_items import ModuleImage
from receiver.threads import ReportedThread

logger = logging.getLogger(__name__)

SEND_TIMEOUT_MS = 200


class Forwarder(ReportedThread):
    """Owns the PUSH socket; :meth:`forward` may be called from one other thread."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        endpoint: str,
        hwm: int,
        buffer_bytes: int,
        on_error: Callable[[str], None],
        on_failure: Callable[[str], None],
    ) -> None:
        """``on_error`` hears of a frame that could not be sent (it is counted as missed),
        ``on_failure`` of the thread's end if it fails."""
        super().__init__("forwarder", on_failure)
        self._socket = context.socket(zmq.PUSH)
        self._socket.sndhwm = hwm
        self._socket.sndtimeo = SEND_TIMEOUT_MS
        self._socket.linger = 0
        self._socket.bind(endpoint)
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._budget = buffer_bytes
        self._buffered = 0
        self._on_error = on_error
        self._queue: collections.deque[tuple[Message, int, int]] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._next = 0
        self.sent = 0
        self.missed = 0

    def forward(self, message: Message) -> None:
        """Queue ``message`` for sending, or count it as missed when the buffer is full."""
        size = len(message.data) if isinstance(message, Image) else 0
        number = self._next
        self._next += 1
        with self._cond:
            if size and self._buffered + size > self._budget:
                self.missed += 1
                return
            self._queue.append((message, number, size))
            self._buffered += size
            self._cond.notify()

    def skip(self) -> None:
        """Count a frame that cannot be forwarded in its place (it went to the file ahead of
        its turn); its number is left out, so the consumer sees the gap."""
        self._next += 1
        self.count_missed()

    def count_missed(self) -> None:
        """Count a frame that came too late for its place in the forwarded stream."""
        with self._cond:
            self.missed += 1

    def work(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        return
                    message, number, size = self._queue[0]
                parts = self._encode(message, number)
                if parts is not None:
                    self._send(parts)
                with self._cond:
                    self._queue.popleft()
                    self._buffered -= size
        finally:
            self._socket.close()

    def _encode(self, message: Message, number: int) -> list[Buffer] | None:
        """The STINS parts of ``message``; a module frame as the assembled full image."""
        if not isinstance(message, ModuleImage):
            return stins.encode(message, number)
        try:
            return stins.encode(assembly.assembled(message), number)
        except ValueError as exc:
            self.missed += 1
            reason = f"frame {message.frame} was not forwarded: {exc}"
            logger.warning("%s", reason)
            self._on_error(reason)
            return None

    def _send(self, parts: list[Buffer]) -> None:
        while not self._stopping:
            try:
                self._socket.send_multipart(parts, copy=False)
            except zmq.Again:
                continue
            self.sent += 1
            return

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self.join()

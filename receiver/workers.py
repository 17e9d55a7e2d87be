"""Receiving workers: each owns a ZeroMQ PULL socket, parses messages and hands them on.

Parsing runs here, in parallel, so the ordered part of the pipeline only moves
references. ZeroMQ delivers the parts without copying; blobs stay in the
ZeroMQ frames until the writer stores them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import zmq

from receiver.model import Malformed, Message, SeriesStart
from receiver.protocols import Parser
from receiver.protocols.errors import MalformedMessage
from receiver.reorder import Reorderer

logger = logging.getLogger(__name__)

POLL_MS = 200


class Worker(threading.Thread):
    """One PULL socket connected to every stream endpoint."""

    def __init__(
        self,
        index: int,
        context: zmq.Context,
        endpoints: list[str],
        rcvhwm: int,
        parse: Parser,
        reorderer: Reorderer[Message | Malformed],
        on_unreadable: Callable[[str], None],
    ) -> None:
        super().__init__(name=f"worker-{index}", daemon=True)
        self._socket = context.socket(zmq.PULL)
        self._socket.rcvhwm = rcvhwm
        self._socket.rcvtimeo = POLL_MS
        self._socket.linger = 0
        for endpoint in endpoints:
            self._socket.connect(endpoint)
        self._parse = parse
        self._reorderer = reorderer
        self._on_unreadable = on_unreadable
        self._stopping = threading.Event()
        self.unreadable_count = 0

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    frames = self._socket.recv_multipart(copy=False)
                except zmq.Again:
                    continue
                self._handle([frames[0].bytes, *(f.buffer for f in frames[1:])])
        finally:
            self._socket.close()

    def _handle(self, parts: list) -> None:
        try:
            message = self._parse(parts)
        except MalformedMessage as exc:
            if exc.seq is None:
                self.unreadable_count += 1
                logger.warning("unreadable message skipped: %s", exc.reason)
                self._on_unreadable(exc.reason)
                return
            self._reorderer.put(exc.seq, Malformed(exc.seq, exc.reason))
            return
        self._reorderer.put(message.seq, message, isinstance(message, SeriesStart))

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

from receiver.model import Image, Malformed, Message, SeriesStart
from receiver.protocols import Parser
from receiver.protocols.errors import MalformedMessage
from receiver.reorder import Reorderer

logger = logging.getLogger(__name__)

Entry = tuple[int, Message | Malformed, bool, int]

POLL_MS = 200
BATCH = 256


class Worker(threading.Thread):
    """One PULL (or, for a PUB stream, SUB) socket connected to every stream endpoint."""

    def __init__(
        self,
        index: int | str,
        context: zmq.Context,
        endpoints: list[str],
        rcvhwm: int,
        batch_bytes: int,
        parse: Parser,
        reorderer: Reorderer[Message | Malformed],
        on_unreadable: Callable[[str], None],
        subscribe: bool = False,
    ) -> None:
        super().__init__(name=f"worker-{index}", daemon=True)
        self._socket = context.socket(zmq.SUB if subscribe else zmq.PULL)
        if subscribe:
            self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.rcvhwm = rcvhwm
        self._socket.rcvtimeo = POLL_MS
        self._socket.linger = 0
        for endpoint in endpoints:
            self._socket.connect(endpoint)
        self._parse = parse
        self._batch_bytes = batch_bytes
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
                self._reorderer.put_many(self._drain(frames))
        finally:
            self._socket.close()

    def _drain(self, first: list[zmq.Frame]) -> list[Entry]:
        """Parse ``first`` and whatever else is already waiting, up to BATCH messages or bytes.

        Handing a batch to the reorderer costs one lock and one wake-up for all
        of them; when messages come slowly the batch is just ``first``.
        """
        entries = []
        nbytes = 0
        frames: list[zmq.Frame] | None = first
        while frames is not None:
            entry = self._entry(frames)
            if entry is not None:
                entries.append(entry)
                nbytes += entry[3]
            if len(entries) >= BATCH or nbytes >= self._batch_bytes:
                break
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                frames = None
        return entries

    def _entry(self, frames: list[zmq.Frame]) -> Entry | None:
        parts = [frames[0].bytes, *(f.buffer for f in frames[1:])]
        try:
            message = self._parse(parts)
        except MalformedMessage as exc:
            if exc.seq is None:
                self.unreadable_count += 1
                logger.warning("unreadable message skipped: %s", exc.reason)
                self._on_unreadable(exc.reason)
                return None
            return exc.seq, Malformed(exc.seq, exc.reason, exc.series), False, 0
        nbytes = len(message.data) if isinstance(message, Image) else 0
        return message.seq, message, isinstance(message, SeriesStart), nbytes

"""Receiving workers: each owns a ZeroMQ PULL socket, parses messages and hands them on.

Parsing runs here, in parallel, so the ordered part of the pipeline only moves
references. A worker takes whatever ZeroMQ holds in one call
(``receiver.zmq_batch``), without copying: blobs stay in ZeroMQ's buffers
until the writer has stored them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import zmq

from protocols.errors import MalformedMessage
from protocols.model import Image, Message, SeriesStart
from receiver.readers import Parser
from receiver.reorder import Reorderer
from receiver.stream_items import Malformed
from receiver.threads import ReportedThread
from receiver.zmq_batch import Parts, TooManyParts, batch_receiver

logger = logging.getLogger(__name__)

Entry = tuple[int, Message | Malformed, bool, int]

POLL_MS = 200
BATCH = 256


class Worker(ReportedThread):
    """One PULL (or, for a PUB stream, SUB) socket connected to every stream endpoint."""

    def __init__(
        self,
        index: int | str,
        context: zmq.Context[zmq.Socket[bytes]],
        endpoints: list[str],
        rcvhwm: int,
        batch_bytes: int,
        parse: Parser,
        reorderer: Reorderer[Message | Malformed],
        on_unreadable: Callable[[str], None],
        on_failure: Callable[[str], None],
        subscribe: bool = False,
    ) -> None:
        """``on_failure`` hears of a message that failed in a way no reader foresaw (the
        worker goes on with the next), and of the thread's end if it fails."""
        super().__init__(f"worker-{index}", on_failure)
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

    def work(self) -> None:
        """Hands on batches: one lock and one wake-up of the reorderer for all of them."""
        receiver = batch_receiver(self._socket, BATCH)
        try:
            while not self._stopping.is_set():
                messages = receiver.recv(self._batch_bytes)
                entries = [entry for parts in messages if (entry := self._entry(parts)) is not None]
                if entries:
                    self._reorderer.put_many(entries)
        finally:
            self._socket.close()

    def _entry(self, parts: Parts | TooManyParts) -> Entry | None:
        try:
            if isinstance(parts, TooManyParts):
                raise MalformedMessage(str(parts))
            message = self._parse(parts)
        except MalformedMessage as exc:
            if exc.seq is None:
                self.unreadable_count += 1
                logger.warning("unreadable message skipped: %s", exc.reason)
                self._on_unreadable(exc.reason)
                return None
            return exc.seq, Malformed(exc.seq, exc.reason, exc.series), False, 0
        except Exception as exc:  # a reader's or transform's bug: this message, not the worker
            self.unreadable_count += 1
            logger.exception("a message failed in %s", self.name)
            self._on_failure(
                f"internal error reading a message in {self.name} ({type(exc).__name__}: "
                f"{exc}); the message was skipped, the stream goes on: report this"
            )
            return None
        nbytes = len(message.data) if isinstance(message, Image) else 0
        return message.seq, message, isinstance(message, SeriesStart), nbytes

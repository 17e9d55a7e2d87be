"""The collector: takes messages in stream order and hands them to the writer and forwarder.

It runs in its own thread so that the writer's queue, not the workers, absorbs
the time the disk takes, and keeps the latest frame for the live view by
reference only (decoding happens when a client asks).
"""

from __future__ import annotations

import threading

from receiver.forwarder import Forwarder
from receiver.model import Image, Malformed, Message, SeriesStart
from receiver.reorder import Gap, Reorderer, Stale
from receiver.state import RateMeter
from receiver.writer import SeriesWriter

POLL_S = 0.2


class Collector(threading.Thread):
    """Single consumer of the reorderer."""

    def __init__(
        self,
        reorderer: Reorderer[Message | Malformed],
        writer: SeriesWriter,
        forwarder: Forwarder | None,
    ) -> None:
        super().__init__(name="collector", daemon=True)
        self._reorderer = reorderer
        self._writer = writer
        self._forwarder = forwarder
        self._stopping = threading.Event()
        self.received_frames = 0
        self.total_frames = 0
        self.last_frame: Image | None = None
        self.rate = RateMeter()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            item = self._reorderer.get(POLL_S)
            if item is not None:
                self._dispatch(item)

    def _dispatch(self, item: Message | Malformed | Gap | Stale) -> None:
        if isinstance(item, Image):
            self.received_frames += 1
            self.total_frames += 1
            self.last_frame = item
            self.rate.add(len(item.data))
        elif isinstance(item, SeriesStart):
            self.received_frames = 0
        self._writer.submit(item)
        if self._forwarder is not None and not isinstance(item, Malformed | Gap | Stale):
            self._forwarder.forward(item)

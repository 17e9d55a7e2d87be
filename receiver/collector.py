"""The collector: takes messages in stream order and hands them to the writer and forwarder.

It runs in its own thread so that the writer's queue, not the workers, absorbs
the time the disk takes, and keeps the latest frame for the live view by
reference only (decoding happens when a client asks). The forwarder gets a
batch at a time, and only a count while no consumer is connected to it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from protocols.model import Image, Message, SeriesStart
from receiver.forwarder import Forwarder
from receiver.reorder import Gap, OutOfTurn, Placed, Stale
from receiver.state import RateMeter
from receiver.stream_items import Malformed, Problem
from receiver.threads import ReportedThread
from receiver.writer import SeriesWriter, WriterItem

POLL_S = 0.2
MAX_BATCH = 256

Ordered = Message | Malformed | Gap | Stale | Problem | Placed | OutOfTurn[Message | Malformed]


class OrderedSource(Protocol):
    """Where ordered messages come from: a reorderer, or the module matcher."""

    def get_batch(self, timeout: float, limit: int) -> Sequence[Ordered]: ...


class Collector(ReportedThread):
    """Single consumer of the reorderer."""

    def __init__(
        self,
        reorderer: OrderedSource,
        writer: SeriesWriter,
        forwarder: Forwarder | None,
        batch_bytes: int,
        on_failure: Callable[[str], None],
    ) -> None:
        super().__init__("collector", on_failure)
        self._reorderer = reorderer
        self._writer = writer
        self._forwarder = forwarder
        self._batch_bytes = batch_bytes
        self._stopping = threading.Event()
        self.received_frames = 0
        self.total_frames = 0
        self.last_frame: Image | None = None
        self.rate = RateMeter()

    def stop(self) -> None:
        self._stopping.set()

    def work(self) -> None:
        limit = MAX_BATCH
        while not self._stopping.is_set():
            batch = self._reorderer.get_batch(POLL_S, limit)
            if batch:
                limit = self._dispatch(batch)

    def _dispatch(self, batch: Sequence[Ordered]) -> int:
        """Count, hand the batch on, and return the size of the next batch.

        Batches are sized so that one holds about ``batch_bytes`` of frames: many
        small frames per hand-over, few large ones, memory bounded either way.
        """
        received, frames, nbytes, last = self.received_frames, 0, 0, None
        for entry in batch:
            item = entry.item if isinstance(entry, OutOfTurn) else entry
            if isinstance(item, Image):
                received += 1
                frames += 1
                nbytes += len(item.data)
                last = item
            elif isinstance(item, SeriesStart):
                received = 0
        self.received_frames = received
        self.total_frames += frames
        if last is not None:
            self.last_frame = last
            self.rate.add(frames, nbytes)
        self._writer.submit(_for_the_writer(batch))
        if self._forwarder is not None:
            self._forward(self._forwarder, batch)
        if last is None:
            return MAX_BATCH
        return max(1, min(MAX_BATCH, self._batch_bytes // max(1, len(last.data))))

    @staticmethod
    def _forward(forwarder: Forwarder, batch: Sequence[Ordered]) -> None:
        """Hand the batch to the forwarder in one go, or only its count with no consumer.

        Each message and each frame's place (a frame that went to the file
        ahead of its turn: None) takes a number of the forwarded stream. With
        nobody connected the numbers are left out and nothing is handed over:
        nothing is encoded or buffered, and the frames' buffers are freed as
        soon as the writer is done with them.
        """
        numbered: list[Message | None] = []
        late = 0
        for ordered in batch:
            if isinstance(ordered, Placed):
                numbered.append(None)
            elif isinstance(ordered, OutOfTurn):
                if ordered.late:  # one ahead of its turn is counted at its mark
                    late += 1
            elif not isinstance(ordered, Malformed | Gap | Stale | Problem):
                numbered.append(ordered)
        if forwarder.connected:
            forwarder.forward_batch(numbered, late)
        else:
            forwarder.pass_over(len(numbered))


def _for_the_writer(batch: Sequence[Ordered]) -> list[WriterItem]:
    """The batch as the file takes it: every frame, in or out of turn, and no marks."""
    return [
        item.item if isinstance(item, OutOfTurn) else item
        for item in batch
        if not isinstance(item, Placed)
    ]

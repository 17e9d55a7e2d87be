"""The stream-receiver assembled: workers -> reorderer -> collector -> writer and forwarder.

Used as a process (``stream-receiver``) or embedded in the Tango device server;
it is also what the HTTP API views.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from protocols import stins
from protocols.model import Image, Message, ModuleLayout, ModulePlacement, SeriesEnd
from receiver.collector import Collector
from receiver.config import ReceiverConfig
from receiver.forwarder import Forwarder
from receiver.malloc_tuning import keep_freed_memory
from receiver.module_match import ModuleMatcher
from receiver.readers import PROTOCOLS, Parser
from receiver.reorder import Reorderer
from receiver.series_reorder import SeriesReorderer
from receiver.series_rotation import SeriesRotation
from receiver.state import StatusBoard
from receiver.status import (
    ConfigSummary,
    ForwarderStatus,
    ModuleStatus,
    Rates,
    ReceiverStatus,
)
from receiver.stream_items import Malformed
from receiver.transforms import build_pipeline, with_transforms
from receiver.workers import Worker
from receiver.writer import SeriesWriter

logger = logging.getLogger(__name__)

UNREADABLE_KEPT = 16


class Receiver:
    """Start with :meth:`start`, end with :meth:`stop` (an open file is closed cleanly)."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.board = StatusBoard()
        self._unreadable: deque[str] = deque(maxlen=UNREADABLE_KEPT)
        self._downsample = 1
        self._context = zmq.Context(io_threads=config.io_threads)
        protocol = PROTOCOLS[config.protocol]
        self._matcher: ModuleMatcher | None = None
        reorderer: Reorderer[Message | Malformed] | None = None
        self._source: Reorderer[Message | Malformed] | ModuleMatcher
        if config.modules:
            self._source = self._matcher = ModuleMatcher(
                _module_layout(config),
                config.reorder_window,
                config.gap_timeout,
                config.reorder_bytes,
            )
        elif protocol.series is None:
            self._source = reorderer = Reorderer(
                config.reorder_window,
                config.gap_timeout,
                config.reorder_bytes,
                frame_of=_storable_frame,
                ends_series=_is_series_end,
            )
        else:
            self._source = reorderer = SeriesReorderer(
                config.reorder_window,
                config.gap_timeout,
                config.reorder_bytes,
                protocol.series,
                frame_of=_storable_frame,
            )
        self._failures: deque[str] = deque(maxlen=UNREADABLE_KEPT)
        self._writer = SeriesWriter(config, self.board, self._unreadable, self._failures)
        self._forwarder = (
            Forwarder(
                self._context,
                config.forward,
                config.forward_hwm,
                config.forward_buffer_bytes,
                self._report,
                self.board.break_down,
                assemble_modules=config.forward_modules == "assembled",
            )
            if config.forward
            else None
        )
        self._collector = Collector(
            self._source, self._writer, self._forwarder, config.batch_bytes, self.board.break_down
        )
        transforms = build_pipeline(config.transforms)
        if reorderer is not None:
            parse = with_transforms(protocol.parse, transforms)
            if protocol.series is not None and protocol.series.opener is None:
                # Dectris headers may ask for a rotation; SLS streams send no header.
                parse = SeriesRotation(config.gap_timeout).wrap(parse)
            self._workers = [
                self._worker(i, config.connect, parse, reorderer, self._report_unreadable)
                for i in range(config.workers)
            ]
        elif self._matcher is not None:
            parse = with_transforms(stins.parse_module, transforms)
            self._workers = [
                self._worker(
                    f"{module.name}-{i}",
                    [module.connect],
                    parse,
                    reorderer,
                    functools.partial(self._report_module_unreadable, module.name, module.connect),
                )
                for module, reorderer in zip(config.modules, self._matcher.inputs, strict=True)
                for i in range(config.workers)
            ]

    def _worker(
        self,
        name: int | str,
        endpoints: list[str],
        parse: Parser,
        reorderer: Reorderer[Message | Malformed],
        on_unreadable: Callable[[str], None],
    ) -> Worker:
        return Worker(
            name,
            self._context,
            endpoints,
            self.config.worker_rcvhwm,
            self.config.batch_bytes,
            parse,
            reorderer,
            on_unreadable,
            self._report,
            subscribe=self.config.socket == "sub",
        )

    @property
    def forward_endpoint(self) -> str | None:
        return self._forwarder.endpoint if self._forwarder else None

    def start(self) -> None:
        sys.setswitchinterval(self.config.switch_interval_s)
        if self.config.malloc_keep_bytes and not keep_freed_memory(self.config.malloc_keep_bytes):
            logger.info("malloc_keep_bytes has no effect here: the C library is not glibc")
        self._writer.start()
        if self._forwarder is not None:
            self._forwarder.start()
        self._collector.start()
        for worker in self._workers:
            worker.start()
        logger.info(
            "receiving %s from %s with %d workers",
            self.config.protocol,
            ", ".join(self.config.endpoints),
            len(self._workers),
        )

    def stop(self) -> None:
        """Stop receiving, deliver what is already ordered, close the file, free the sockets."""
        for worker in self._workers:
            worker.stop()
        for worker in self._workers:
            worker.join()
        self._collector.stop()
        self._collector.join()
        self._source.close()
        self._writer.stop()
        if self._forwarder is not None:
            self._forwarder.stop()
        self._context.term()

    def _report(self, reason: str) -> None:
        """What went wrong in a worker or the forwarder: in the state at once, and told again
        by the writer after its next batch, in case the header of the series it belongs to
        was still on its way and cleared it."""
        self.board.fail(reason)
        self._failures.append(reason)

    def _report_unreadable(self, reason: str) -> None:
        self._unreadable.append(reason)
        self._report(f"an unreadable message was skipped: {reason}")

    def _report_module_unreadable(self, name: str, endpoint: str, reason: str) -> None:
        self._report(f"module {name!r} ({endpoint}): an unreadable message was skipped: {reason}")

    # The view the HTTP API serves.

    def status_model(self) -> ReceiverStatus:
        """The ``/status`` document, typed: what the API serves and an embedded device reads."""
        received = self._collector.received_frames
        board = self.board.snapshot(received)
        received_fps, received_bps = self._collector.rate.current()
        written_fps, written_bps = self._writer.rate.current()
        return ReceiverStatus(
            state=board.state,
            error=board.error,
            series_open=board.series_open,
            series_count=board.series_count,
            series=board.series,
            last_series=board.last_series,
            filename=board.series.path or board.series.filename,
            frames_received=received,
            frames_written=board.series.frames_written,
            frames_missing=board.series.missing_count,
            rates=Rates(
                received_frames_per_s=round(received_fps, 1),
                received_mb_per_s=round(received_bps / 1e6, 2),
                written_frames_per_s=round(written_fps, 1),
                written_mb_per_s=round(written_bps / 1e6, 2),
            ),
            forwarder=self._forwarder_status(),
            unreadable_messages=sum(w.unreadable_count for w in self._workers),
            modules=(
                [ModuleStatus.model_validate(m) for m in self._matcher.snapshot()]
                if self._matcher is not None
                else None
            ),
            config=ConfigSummary(
                connect=self.config.endpoints,
                protocol=self.config.protocol,
                workers=self.config.workers,
                data_root=str(self.config.data_root.resolve()),
                write=self.config.write,
            ),
        )

    def status(self) -> dict[str, Any]:
        """The ``/status`` document as JSON-ready data, for in-process callers that index it."""
        return self.status_model().model_dump(mode="json")

    def _forwarder_status(self) -> ForwarderStatus | None:
        if self._forwarder is None:
            return None
        return ForwarderStatus(
            endpoint=self._forwarder.endpoint,
            sent=self._forwarder.sent,
            missed=self._forwarder.missed,
            unconnected=self._forwarder.unconnected,
            consumers=self._forwarder.consumers,
        )

    @property
    def received_frames(self) -> int:
        return self._collector.received_frames

    @property
    def downsample(self) -> int:
        return self._downsample

    @downsample.setter
    def downsample(self, value: int) -> None:
        if value < 1:
            raise ValueError("downsample factor must be an integer >= 1")
        self._downsample = value

    def last_frame(self) -> Image | None:
        return self._collector.last_frame

    def reset(self) -> None:
        self.board.reset()

    def metrics(self) -> dict[str, float]:
        received_fps, received_bps = self._collector.rate.current()
        written_fps, written_bps = self._writer.rate.current()
        series = self.board.series
        return {
            "frames_received_total": self._collector.total_frames,
            "series_total": self.board.series_count,
            "frames_written": series.frames_written,
            "frames_missing": len(series.missing_frames),
            "frames_rejected": series.frames_rejected,
            "received_frames_per_second": received_fps,
            "received_bytes_per_second": received_bps,
            "written_frames_per_second": written_fps,
            "written_bytes_per_second": written_bps,
            "forward_missed_total": self._forwarder.missed if self._forwarder else 0,
            "error": float(self.board.state == "error"),
        }


def _storable_frame(item: Message | Malformed) -> int | None:
    """The frame number of a frame the file can store ahead of its turn; None: keep its place.

    A frame flagged discard takes no place in the file, so the places of the
    frames after it depend on it: it keeps its turn.
    """
    if isinstance(item, Image) and not item.discard:
        return item.frame
    return None


def _is_series_end(item: Message | Malformed) -> bool:
    return isinstance(item, SeriesEnd)


def _module_layout(config: ReceiverConfig) -> ModuleLayout:
    """The modules' placement as the matcher, the file and the assembly use it.

    Modules the configuration does not place (a MAX IV Lambda entry) are
    placed by their headers at each series: a HeaderPlacedLayout.
    """
    from receiver.module_placement import HeaderPlacedLayout

    if not all(m.placed for m in config.modules):
        return HeaderPlacedLayout(
            modules=tuple(ModulePlacement(m.name, m.connect, 0, 0, 0) for m in config.modules),
            full_shape=config.full_shape or (0, 0),
            fill_value=config.fill_value,
            shape_given=config.full_shape is not None,
        )
    if config.full_shape is None:
        raise ValueError("modules need full_shape")
    return ModuleLayout(
        modules=tuple(
            ModulePlacement(m.name, m.connect, m.x or 0, m.y or 0, (m.rotation or 0) % 4)
            for m in config.modules
        ),
        full_shape=config.full_shape,
        fill_value=config.fill_value,
    )

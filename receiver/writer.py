"""The writer thread: drives the series state machine and the HDF5 file in stream order.

It is the only thread that moves the receiver's state, so every transition
happens in the order of the stream. Errors never end the thread: they put the
receiver in error with a reason and the next series is served as usual.
"""

from __future__ import annotations

import logging
import queue
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from protocols.model import Image, SeriesEnd, SeriesStart
from receiver.config import ReceiverConfig
from receiver.nexus import FrameRejectedError, NexusFile
from receiver.paths import PathRefusedError, create_destination
from receiver.reorder import Gap, Stale
from receiver.state import RateMeter, StatusBoard
from receiver.stream_items import Malformed, Problem
from receiver.threads import ReportedThread

logger = logging.getLogger(__name__)

T = TypeVar("T")
WriterItem = SeriesStart | Image | SeriesEnd | Malformed | Gap | Stale | Problem
_STOP: Sequence[WriterItem] = []
"""Queued after the last batch: the thread ends once it comes out (by identity, not content)."""
QUEUE_POLL_S = 0.2
"""How often a full writer queue looks whether its writer still runs."""
SPACE_CHECK_BYTES = 64 * 1024**2
"""Free space is looked up again after this much was written, or sooner near the end."""
CLOSE_HEADROOM_BYTES = 8 * 1024**2
"""Room always kept for closing a file (its metadata), whatever ``min_free_bytes`` says:
HDF5 that meets a full disk in the middle of a write or a close leaves a file nothing
opens, and h5py may crash the process on it."""


class SeriesWriter:
    """Consumes ordered messages from a bounded queue; a full queue pushes back on the stream."""

    def __init__(
        self,
        config: ReceiverConfig,
        board: StatusBoard,
        unreadable: deque[str],
        failures: deque[str],
    ) -> None:
        """``failures``: what went wrong in other threads, told in stream order from here (a
        failure told directly could come before the header of its series, which clears it)."""
        self._config = config
        self._board = board
        self._unreadable = unreadable
        self._failures = failures
        self._queue: queue.Queue[Sequence[WriterItem]] = queue.Queue(maxsize=config.writer_queue)
        self._file: NexusFile | None = None
        self._series_open = False
        self._bytes_since_check = 0
        self._free_estimate = 0
        self._gaps: list[tuple[int, str]] = []
        self._flushed_at = 0.0
        self.rate = RateMeter()
        self._thread = ReportedThread("writer", board.break_down, self._run)

    def start(self) -> None:
        self._thread.start()

    def submit(self, batch: Sequence[WriterItem]) -> None:
        """Queue a batch of ordered messages; blocks while the queue is full (push-back)."""
        self._put(batch)

    def stop(self) -> None:
        """Finish what is queued, close an open file, end the thread."""
        self._put(_STOP)
        self._thread.join()

    def _put(self, batch: Sequence[WriterItem]) -> None:
        """Wait for room, unless the writer thread has stopped (its failure is the state
        already): then nothing would ever make room, and the caller must not hang."""
        while self._thread.is_alive() or not self._thread.ident:
            try:
                self._queue.put(batch, timeout=QUEUE_POLL_S)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        while (batch := self._next_batch()) is not _STOP:
            run: list[Image] = []
            receive_only = self._receives_only()
            for item in batch:
                if isinstance(item, Image):
                    if receive_only:
                        continue
                    if not item.discard and self._file is not None:
                        run.append(item)
                        continue
                self._guarded(self._store, run)
                run = []
                self._guarded(self._handle, item)
                receive_only = self._receives_only()
            self._guarded(self._store, run)
            while self._failures:
                self._board.fail(self._failures.popleft())
            self._guarded(self._flush_if_due, time.monotonic())
        if self._series_open:
            self._finish("the receiver stopped before series_end")

    def _next_batch(self) -> Sequence[WriterItem]:
        """The next batch; an empty one when the open file is due for a flush meanwhile."""
        if self._file is None:
            return self._queue.get()
        wait = max(0.0, self._flushed_at + self._config.flush_interval - time.monotonic())
        try:
            return self._queue.get(timeout=wait)
        except queue.Empty:
            return ()

    def _flush_if_due(self, now: float) -> None:
        """Flush the open file once ``flush_interval`` has passed since the last flush."""
        file = self._file
        if file is None or now < self._flushed_at + self._config.flush_interval:
            return
        self._flushed_at = now
        try:
            file.flush()
        except OSError as exc:
            self._abandon(f"flushing {file.path} failed: {exc}")
            return
        self._board.series.frames_durable = file.frames_durable
        logger.debug("%s: %d frames durable", file.path, file.frames_durable)

    def _receives_only(self) -> bool:
        """A series is open and nothing of it is stored: writing is off, or it has no file name.

        Its frames then need nothing from the writer, which skips them without
        a look (no-write receivers run at the full rate of the stream).
        """
        return (
            self._series_open
            and self._file is None
            and not (self._config.write and self._board.series.filename)
        )

    def _guarded(self, action: Callable[[T], None], argument: T) -> None:
        """Run one step; an unforeseen failure becomes the error state, never the thread's end."""
        try:
            action(argument)
        except Exception as exc:
            logger.exception("writer failed in %s", action.__name__)
            self._board.fail(
                f"internal writer error ({type(exc).__name__}: {exc}); the writer goes on with "
                "the next message: report this"
            )

    def _store(self, run: list[Image]) -> None:
        """Write consecutive frames of the open file as one batch."""
        if not run:
            return
        series = self._board.series
        file = self._file
        if file is None:
            raise RuntimeError(f"frames {run[0].frame}..{run[-1].frame} to store but no file open")
        before = file.frames_written
        nbytes = sum(len(image.data) for image in run)
        try:
            self._check_space(file.directory, nbytes)
            refused = file.write_many(run)
        except OSError as exc:
            series.frames_written = file.frames_written
            series.frames_rejected += len(run) - (file.frames_written - before)
            self._abandon(
                f"writing frames {run[0].frame}..{run[-1].frame} to {file.path} failed: {exc}"
            )
            return
        for problem in refused:
            series.frames_rejected += 1
            self._board.fail(str(problem))
        series.frames_written = file.frames_written
        self.rate.add(len(run) - len(refused), nbytes)

    def _handle(self, item: object) -> None:
        match item:
            case Image():
                self._image(item)
            case SeriesStart():
                self._start(item)
            case SeriesEnd():
                self._end()
            case Malformed(seq=seq, reason=reason, series=series):
                self._board.series.malformed_messages += 1
                where = f"msg_number {seq}" if series is None else _place(series, seq)
                self._board.fail(f"malformed message ({where}) skipped: {reason}")
            case Gap():
                self._gap(item)
            case Stale(count=count):
                self._board.fail(
                    f"{count} messages arrived after the receiver had moved past their place "
                    "(an earlier series, or twice) and were dropped"
                )
            case Problem(reason=reason, lost=lost, malformed=malformed):
                self._board.series.messages_lost += lost
                self._board.series.malformed_messages += malformed
                self._board.fail(reason)

    def _gap(self, gap: Gap) -> None:
        """Messages the order went on without: lost, unless they are frames still to come.

        The file needs no order, so a frame that comes after its wait timed
        out is still stored; whether a gap lost anything is known when the
        series closes (its frames missing from the file). Outside a series,
        or with no file to tell, it counts at once.
        """
        detail = f": {self._unreadable.popleft()}" if self._unreadable else ""
        if gap.series is None:
            what = f"messages {gap.first}..{gap.last} of the stream"
        else:
            what = f"{_frames(gap.first, gap.last)} of series {_series_name(gap.series)}"
        if self._series_open and self._file is not None:
            self._gaps.append((gap.count, f"{what} did not arrive in time{detail}"))
            return
        self._board.series.messages_lost += gap.count
        self._board.fail(f"{what} never arrived{detail}")

    def _start(self, header: SeriesStart) -> None:
        if self._series_open:
            self._finish("a new header arrived before series_end")
        self._file, problem = self._open(header)
        self._series_open = True
        self._board.start_series(header.filename)
        if self._file is not None:
            self._board.series.path = str(self._file.path)
            logger.info("series started: writing %s", self._file.path)
        if problem:
            self._board.fail(problem)

    def _open(self, header: SeriesStart) -> tuple[NexusFile | None, str]:
        if not self._config.write or not header.filename:
            return None, ""
        try:
            self._bytes_since_check = SPACE_CHECK_BYTES
            self._check_space(self._config.data_root, 0)
            with create_destination(self._config.data_root, header.filename) as created:
                file = NexusFile.create(
                    created.proc_path,
                    created.path,
                    self._config.detector_name,
                    header.meta,
                    header.modules,
                    header.module_meta,
                    max_frames=header.frames or self._config.max_frames,
                )
            self._flushed_at = time.monotonic()
            return file, ""
        except PathRefusedError as exc:
            return None, f"series refused, nothing written: {exc}"
        except OSError as exc:
            return None, f"cannot create {header.filename!r} in {self._config.data_root}: {exc}"

    def _image(self, image: Image) -> None:
        """A frame that is not part of a batch write: outside a series, discarded, or no file."""
        series = self._board.series
        if not self._series_open:
            series.frames_rejected += 1
            self._board.fail(
                f"frame {image.frame} arrived outside a series (no header); not stored"
            )
            return
        if self._file is None:
            if not self._receives_only():
                series.frames_rejected += 1
            return
        try:
            self._file.discard(image.frame)
        except FrameRejectedError as exc:
            series.frames_rejected += 1
            self._board.fail(str(exc))
            return
        series.frames_discarded += 1

    def _check_space(self, directory: Path, nbytes: int) -> None:
        """Raise OSError unless ``nbytes`` fit with room left to close the file cleanly.

        Free space is looked up when the last look is ``SPACE_CHECK_BYTES`` old,
        or when what may have been written since could reach the reserve.
        """
        keep = self._config.min_free_bytes + CLOSE_HEADROOM_BYTES
        self._free_estimate -= nbytes
        self._bytes_since_check += nbytes
        if self._bytes_since_check < SPACE_CHECK_BYTES and self._free_estimate >= keep:
            return
        self._bytes_since_check = 0
        free = shutil.disk_usage(directory).free
        self._free_estimate = free - nbytes
        if free - nbytes < keep:
            raise OSError(
                f"disk nearly full: {free // 1024**2} MiB free in {directory}, and the "
                f"receiver keeps {self._config.min_free_bytes // 1024**2} MiB "
                f"(min_free_bytes) and {CLOSE_HEADROOM_BYTES // 1024**2} MiB to close the file; "
                "free space or choose another data root"
            )

    def _abandon(self, reason: str) -> None:
        """Close the file after an I/O error, keeping the frames already written."""
        file, self._file = self._file, None
        if file is None:
            self._board.fail(reason)
            return
        written = file.frames_written
        try:
            file.close()
        except (OSError, RuntimeError, ValueError) as exc:
            logger.warning("clean close of %s failed: %s", file.path, exc)
            file.abandon()
            self._board.series.frames_durable = file.frames_durable
            self._board.fail(
                f"{reason}; closing the file failed too ({exc}): it keeps the "
                f"{file.frames_durable} frames flushed before; if it does not open, run "
                f"daq-recover {file.path}"
            )
            return
        self._board.series.frames_durable = file.frames_durable
        self._board.fail(f"{reason}; the file was closed with the {written} frames written before")

    def _end(self) -> None:
        if not self._series_open:
            self._board.fail("series_end arrived without a header; nothing to close")
            return
        self._finish("")

    def _finish(self, why_early: str) -> None:
        """Close the series: file closed, missing frames reported, state back to idle or error."""
        series = self._board.series
        if self._file is not None:
            file, self._file = self._file, None
            try:
                series.missing_frames = file.close()
            except (OSError, RuntimeError, ValueError) as exc:
                file.abandon()
                self._board.fail(f"closing {file.path} failed: {exc}")
            series.frames_durable = file.frames_durable
            logger.info("series ended: %d frames in %s", file.frames_written, file.path)
        self._series_open = False
        gaps, self._gaps = self._gaps, []
        if series.missing_frames:
            for count, reason in gaps:
                series.messages_lost += count
                self._board.fail(reason)
        if why_early:
            self._board.fail(f"series closed early: {why_early}")
        if series.missing_frames:
            shown = ", ".join(map(str, series.missing_frames[:10]))
            more = "..." if len(series.missing_frames) > 10 else ""
            self._board.fail(
                f"{len(series.missing_frames)} frames missing from the file: {shown}{more}"
            )
        self._board.end_series()


def _series_name(series: object) -> str:
    """A series key as a user reads it: ``14``, or ``16/01HRCJF83S...`` for a (id, unique id)."""
    if isinstance(series, tuple):
        return "/".join(str(part) for part in series if part != "")
    return str(series)


def _place(series: object, seq: int) -> str:
    """Where a message of a per-series stream belonged: its header (0) or frame ``seq - 1``."""
    what = "header" if seq == 0 else f"frame {seq - 1}"
    return f"{what} of series {_series_name(series)}"


def _frames(first: int, last: int) -> str:
    """Frames ``first``..``last`` of a series, -1 standing for its header."""
    if first < 0:
        return "the header" if last < 0 else f"the header and frames 0..{last}"
    return f"frame {first}" if first == last else f"frames {first}..{last}"

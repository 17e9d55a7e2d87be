"""The receiver's state machine and counters.

idle (waiting for a header) -> running (header received, file open) -> idle
(series end, file closed); error (anything unforeseen, with a reason) until a
new header or an explicit reset. Only the writer thread moves the state, so
transitions happen in stream order; the HTTP API reads snapshots.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from receiver.status import MISSING_LISTED, CurrentSeries, LastSeries, State


@dataclass
class SeriesCounters:
    """What happened to the current (or last) series; reset by each header."""

    filename: str = ""
    path: str = ""
    frames_written: int = 0
    frames_durable: int = 0
    frames_discarded: int = 0
    frames_rejected: int = 0
    missing_frames: list[int] = field(default_factory=list)
    messages_lost: int = 0
    malformed_messages: int = 0
    started: float = 0.0
    finished: float = 0.0


@dataclass(frozen=True, slots=True)
class BoardSnapshot:
    """The board at one instant, read under its lock so state, reason and series agree."""

    state: State
    error: str
    series_open: bool
    series_count: int
    series: CurrentSeries
    last_series: LastSeries | None


class StatusBoard:
    """Thread-safe state, reason and series counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = State.IDLE
        self._reason = ""
        self._series_open = False
        self._broken = ""
        self.series = SeriesCounters()
        self.series_count = 0
        self._last_series: LastSeries | None = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason

    def start_series(self, filename: str) -> None:
        with self._lock:
            self.series = SeriesCounters(filename=filename, started=time.time())
            self.series_count += 1
            self._series_open = True
            self._state, self._reason = State.RUNNING, ""
            if self._broken:
                self._state, self._reason = State.ERROR, self._broken

    def break_down(self, reason: str) -> None:
        """A part of the receiver stopped for good: error with ``reason`` until it is restarted.

        Neither a new series nor a reset leaves this error, since what stopped
        does not start again by itself.
        """
        with self._lock:
            self._broken = reason
        self.fail(reason)

    def end_series(self) -> None:
        with self._lock:
            self._series_open = False
            self.series.finished = time.time()
            if self._state is not State.ERROR:
                self._state = State.IDLE
            self._last_series = LastSeries(
                **self._series_fields(), ok=self._state is not State.ERROR, error=self._reason
            )

    def fail(self, reason: str) -> None:
        """Enter error; the first reason of a series is kept, later ones are added to it."""
        with self._lock:
            if self._state is State.ERROR and self._reason and reason not in self._reason:
                if self._reason.count(";") < 4:
                    self._reason = f"{self._reason}; {reason}"
            else:
                self._reason = reason
            self._state = State.ERROR

    def reset(self) -> None:
        """Leave error: back to running if a series is still open, else idle."""
        with self._lock:
            if self._state is State.ERROR and not self._broken:
                self._state = State.RUNNING if self._series_open else State.IDLE
                self._reason = ""

    def snapshot(self, frames_received: int) -> BoardSnapshot:
        """The board now; ``frames_received`` is the collector's count, which the board lacks."""
        with self._lock:
            state, reason, series_open = self._state, self._reason, self._series_open
            series, count, last = self._series_fields(), self.series_count, self._last_series
        return BoardSnapshot(
            state=state,
            error=reason,
            series_open=series_open,
            series_count=count,
            series=CurrentSeries(**series, frames_received=frames_received),
            last_series=last,
        )

    def _series_fields(self) -> dict[str, Any]:
        """The counters of the current series with the missing frames counted and listed."""
        series = asdict(self.series)
        series["missing_count"] = len(series["missing_frames"])
        series["missing_frames"] = series["missing_frames"][:MISSING_LISTED]
        return series


class RateMeter:
    """Frames and bytes per second over the last second or so, at negligible per-frame cost."""

    def __init__(self, period: float = 1.0) -> None:
        self._period = period
        self._t0 = time.monotonic()
        self._frames = self._frames0 = 0
        self._bytes = self._bytes0 = 0
        self.frames_per_s = 0.0
        self.bytes_per_s = 0.0

    def add(self, frames: int, nbytes: int) -> None:
        self._frames += frames
        self._bytes += nbytes
        now = time.monotonic()
        if now - self._t0 >= self._period:
            self._roll(now)

    def _roll(self, now: float) -> None:
        elapsed = now - self._t0
        self.frames_per_s = (self._frames - self._frames0) / elapsed
        self.bytes_per_s = (self._bytes - self._bytes0) / elapsed
        self._t0, self._frames0, self._bytes0 = now, self._frames, self._bytes

    def current(self) -> tuple[float, float]:
        """(frames/s, bytes/s); decays to zero once frames stop coming."""
        now = time.monotonic()
        if now - self._t0 >= 2 * self._period:
            self._roll(now)
        return self.frames_per_s, self.bytes_per_s

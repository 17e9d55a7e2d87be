"""The receiver's state machine and counters (paper section 3.2.2).

idle (waiting for a header) -> running (header received, file open) -> idle
(series end, file closed); error (anything unforeseen, with a reason) until a
new header or an explicit reset. Only the writer thread moves the state, so
transitions happen in stream order; the HTTP API reads snapshots.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    ERROR = "error"


MISSING_LISTED = 100


@dataclass
class SeriesCounters:
    """What happened to the current (or last) series; reset by each header."""

    filename: str = ""
    path: str = ""
    frames_written: int = 0
    frames_discarded: int = 0
    frames_rejected: int = 0
    missing_frames: list[int] = field(default_factory=list)
    messages_lost: int = 0
    malformed_messages: int = 0
    started: float = 0.0
    finished: float = 0.0


class StatusBoard:
    """Thread-safe state, reason and series counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = State.IDLE
        self._reason = ""
        self._series_open = False
        self.series = SeriesCounters()
        self.series_count = 0
        self._last_series: dict[str, Any] | None = None

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

    def end_series(self) -> None:
        with self._lock:
            self._series_open = False
            self.series.finished = time.time()
            if self._state is not State.ERROR:
                self._state = State.IDLE
            self._last_series = {
                **self._series_dict(),
                "ok": self._state is not State.ERROR,
                "error": self._reason,
            }

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
            if self._state is State.ERROR:
                self._state = State.RUNNING if self._series_open else State.IDLE
                self._reason = ""

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": str(self._state),
                "error": self._reason,
                "series_open": self._series_open,
                "series_count": self.series_count,
                "series": self._series_dict(),
                "last_series": self._last_series,
            }

    def _series_dict(self) -> dict[str, Any]:
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

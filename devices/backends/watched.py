"""A backend whose series runs in a streamer it can only look at: the watching they share.

The Lambda and camera backends hand a series to streamers (other processes,
or objects of this one) and learn how it goes only by asking. A thread
looks every ``WATCH_S`` until the series is over; :meth:`poll` looks at
once, for the device that just saw the series end short. A subclass says
what one look is (:meth:`_look`).
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod

from devices.backend import Backend, BackendState

logger = logging.getLogger(__name__)

WATCH_S = 0.1


class WatchedBackend(Backend):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = BackendState.IDLE
        self._error = ""
        self._done = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def state(self) -> BackendState:
        return self._state

    @property
    def error(self) -> str:
        return self._error

    def poll(self) -> None:
        if self._state is BackendState.ARMED:
            self._look()

    @abstractmethod
    def _look(self) -> bool:
        """One look at the streamers; True once the series is over (done or failed).

        It ends the series here: IDLE (:meth:`_done_with_series`) or ERROR (:meth:`_fail`).
        """

    def _armed(self) -> None:
        """The series runs: ARMED, and a thread watches it."""
        with self._lock:
            self._state, self._error = BackendState.ARMED, ""
        self._done.clear()
        self._watcher = threading.Thread(target=self._watch, name=f"{self.name}-watch", daemon=True)
        self._watcher.start()

    def _done_with_series(self) -> None:
        with self._lock:
            if self._state is BackendState.ARMED:
                self._state = BackendState.IDLE
                logger.info("%s: series done", self.name)

    def _end_watcher(self) -> None:
        self._done.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None

    def _watch(self) -> None:
        while not self._done.wait(WATCH_S):
            if self._look():
                return

    def _stopped(self, problems: list[str]) -> None:
        """After a stop: IDLE, or ERROR with what the streamers said."""
        with self._lock:
            if problems:
                self._fail_locked("; ".join(problems))
            else:
                self._state, self._error = BackendState.IDLE, ""

    def _fail(self, reason: str) -> None:
        with self._lock:
            self._fail_locked(reason)

    def _fail_locked(self, reason: str) -> None:
        self._state, self._error = BackendState.ERROR, reason
        logger.warning("%s: %s", self.name, reason)

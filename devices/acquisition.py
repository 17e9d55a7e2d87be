"""The closed loop between a detector backend and its receiver.

RUNNING means "the receiver has the file open for this series"; ON means "the
receiver has closed it"; FAULT carries the reason. A client that polls State
until ON therefore knows the file is complete, which is what MAX IV's clients
and Sardana rely on. This module knows no Tango, so the loop is tested
without a device server; :mod:`devices.detector_device` maps it onto Tango.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import NoReturn

from devices.backend import Backend, BackendError, BackendState, SettingsRefused
from devices.receiver_link import ReceiverLink, ReceiverUnreachable
from devices.settings import AcquisitionSettings
from receiver.status import ReceiverStatus, State

logger = logging.getLogger(__name__)

POLL_S = 0.02
WATCH_S = 0.05


class LoopState(StrEnum):
    ON = "ON"
    RUNNING = "RUNNING"
    FAULT = "FAULT"


class AcquisitionError(RuntimeError):
    """A command cannot be carried out; the text is what the client sees."""


class Acquisition:
    """Owns the backend and the receiver link; one series at a time.

    ``on_change`` is called (from the watcher thread too) whenever state,
    status or the frame count changes, so the device can push events; it
    must not block.
    """

    def __init__(
        self,
        backend: Backend,
        receiver: ReceiverLink,
        arm_timeout: float = 10.0,
        close_timeout: float = 30.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.backend = backend
        self.receiver = receiver
        self._arm_timeout = arm_timeout
        self._close_timeout = close_timeout
        self._on_change = on_change
        self._lock = threading.RLock()
        self._state = LoopState.ON
        self._status = "ready"
        self._frames = 0
        self._series = 0
        self._expected = 0
        self._stop_asked = False
        self._backend_done_at: float | None = None
        self._watcher: threading.Thread | None = None
        self._closing = threading.Event()

    @property
    def state(self) -> LoopState:
        return self._state

    @property
    def status(self) -> str:
        return self._status

    @property
    def frames_acquired(self) -> int:
        """Frames the receiver has received in the current (or last) series."""
        return self._frames

    @property
    def frames_expected(self) -> int:
        return self._expected

    def arm(self, settings: AcquisitionSettings) -> None:
        """Arm and return once the receiver has the file open (RUNNING), or raise with why not.

        ``settings`` were validated when they were built; what is left to check
        here is what the backend can do.
        """
        with self._lock:
            if self._state is LoopState.RUNNING:
                raise AcquisitionError("already RUNNING: call Stop (or wait for ON) before Arm")
            self._join_watcher()
            if settings.trigger_mode not in self.backend.trigger_modes:
                modes = ", ".join(m.name for m in sorted(self.backend.trigger_modes))
                raise AcquisitionError(
                    f"the {self.backend.name} backend has no trigger mode "
                    f"{settings.trigger_mode.name}; it supports {modes}"
                )
            before = self._receiver_status_or_fault("at Arm")
            if before.state is State.ERROR:
                self.receiver.reset()
            try:
                self.backend.arm(settings)
            except SettingsRefused as exc:
                raise AcquisitionError(f"the detector refused the settings: {exc}") from None
            except BackendError as exc:
                self._fault(f"the detector refused Arm: {exc}")
            self._series = before.series_count + 1
            self._expected = settings.total_frames
            self._stop_asked = False
            self._frames = 0
            self._backend_done_at = None
            self._wait_until_open(settings)
            self._set(LoopState.RUNNING, f"acquiring {self._expected} frames")
            self._closing.clear()
            self._watcher = threading.Thread(target=self._watch, name="acquisition-watch")
            self._watcher.start()

    def trigger(self) -> None:
        with self._lock:
            if self._state is not LoopState.RUNNING:
                raise AcquisitionError(
                    f"SoftwareTrigger needs state RUNNING (after Arm), not {self._state}"
                )
            try:
                self.backend.trigger()
            except BackendError as exc:
                raise AcquisitionError(f"the detector refused the trigger: {exc}") from None

    def stop(self) -> None:
        """End the series now; returns once the receiver has closed the file (ON) or FAULT."""
        with self._lock:
            running = self._state is LoopState.RUNNING
            self._stop_asked = True
        self.backend.stop()
        if running:
            self._join_watcher()

    def close(self) -> None:
        self._closing.set()
        self._join_watcher()
        with contextlib.suppress(BackendError):
            self.backend.close()
        self.receiver.close()

    def _join_watcher(self) -> None:
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()
            self._watcher = None

    def _wait_until_open(self, settings: AcquisitionSettings) -> None:
        """Poll until the receiver has started our series; FAULT on its error or a timeout."""
        deadline = time.monotonic() + self._arm_timeout
        while True:
            status = self._receiver_status_or_fault("after Arm")
            if status.series_count >= self._series:
                if status.state is State.ERROR and not _already_written(status):
                    self.backend.stop()
                    self._fault(f"the receiver refused the series: {status.error}")
                return
            if self.backend.state is BackendState.ERROR:
                self._fault(f"detector error: {self.backend.error}")
            if time.monotonic() > deadline:
                self.backend.stop()
                self._fault(
                    f"the receiver did not start the series within {self._arm_timeout:g} s "
                    f"after Arm: is the {self.receiver.description} reading the detector's "
                    f"stream {self.backend.stream_endpoint}?"
                )
            time.sleep(POLL_S)

    def _watch(self) -> None:
        """Looks at receiver and backend until the series is over; a failure nobody foresaw
        is FAULT with its reason, never a dead watcher and a device left RUNNING."""
        while not self._closing.wait(WATCH_S):
            with self._lock:
                try:
                    state = self._check()
                except Exception as exc:
                    logger.exception("the acquisition watcher failed")
                    self._set(
                        LoopState.FAULT,
                        f"internal error while watching the acquisition ({type(exc).__name__}: "
                        f"{exc}); Stop or Init recovers: report this",
                    )
                    return
                if state is not LoopState.RUNNING:
                    return

    def _check(self) -> LoopState:
        """One look at receiver and backend; moves to ON or FAULT when the series is over."""
        try:
            status = self._receiver_status_or_fault("while acquiring")
            if status.series_count == self._series and status.frames_received != self._frames:
                self._frames = status.frames_received
                self._on_change()
            if status.series_count > self._series:
                self.backend.stop()
                self._fault("another series was started on the receiver while this one ran")
            if status.state is State.ERROR:
                self.backend.stop()
                self._fault(f"receiver error: {status.error}")
            if self.backend.state is BackendState.ERROR:
                self._fault(f"detector error: {self.backend.error}")
            if not status.series_open:
                self._finish(status)
            else:
                self._check_close_timeout()
        except AcquisitionError:
            pass
        return self._state

    def _finish(self, status: ReceiverStatus) -> None:
        """ON once the file is closed with the series complete; FAULT with the reason if not.

        A series that ended short without a Stop is never ON: the detector's
        reason if it has one (asked now, not at its watcher's next look),
        otherwise the count.
        """
        if status.last_series is None or not status.last_series.ok:
            self._fault(f"receiver error: {status.error or 'the series ended badly'}")
        short = status.frames_received < self._expected and not self._stop_asked
        if short:
            self.backend.poll()
            if self.backend.state is BackendState.ERROR:
                self._fault(f"detector error: {self.backend.error}")
            self._fault(
                f"the series ended after {status.frames_received} of {self._expected} frames "
                "without a Stop: the detector sent its series end early"
            )
        where = f" into {status.filename}" if status.filename else " (not saved)"
        self._set(
            LoopState.ON,
            f"ready; last series: {status.frames_received} of {self._expected} frames{where}",
        )

    def _check_close_timeout(self) -> None:
        """The detector has sent everything but the receiver keeps the file open: say so."""
        if self.backend.state is not BackendState.IDLE:
            return
        now = time.monotonic()
        if self._backend_done_at is None:
            self._backend_done_at = now
        elif now - self._backend_done_at > self._close_timeout:
            self._fault(
                f"the detector finished but the receiver did not close the file within "
                f"{self._close_timeout:g} s ({self._frames} of {self._expected} frames received)"
            )

    def _receiver_status_or_fault(self, when: str) -> ReceiverStatus:
        try:
            return self.receiver.status()
        except ReceiverUnreachable as exc:
            if when != "at Arm":
                self.backend.stop()
            self._fault(f"receiver unreachable {when}: {exc}")

    def _fault(self, reason: str) -> NoReturn:
        """Enter FAULT with ``reason`` and abandon the command in progress."""
        logger.error("FAULT: %s", reason)
        self._set(LoopState.FAULT, reason)
        raise AcquisitionError(reason)

    def _set(self, state: LoopState, status: str) -> None:
        self._state, self._status = state, status
        self._on_change()


def _already_written(status: ReceiverStatus) -> bool:
    """A short series may be over before Arm looks: written, it was not refused, and how it
    ended is for the watcher to report (FAULT with the receiver's reason, after Arm)."""
    last = status.last_series
    return not status.series_open and last is not None and last.frames_written > 0

"""A simulated area detector with real trigger semantics, streaming STINS.

It behaves as the hardware a backend drives: configure, arm (the header goes
out), frames as the trigger mode says, series end when the last frame is out
or on stop. Frames leave at the frame period counted from their trigger, their
pixels tell their frame number (:mod:`sim.frames`), and ``msg_number`` runs on
across series like a detector control unit's. External triggers and gates
arrive on a :class:`~sim.trigger_input.TriggerInput` that tests and demos pulse.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import zmq

from protocols import stins
from protocols.model import Buffer
from sim.frames import encoded_frame
from sim.generator import Pacer
from sim.trigger_input import TriggerInput

logger = logging.getLogger(__name__)

MODES = ("INTERNAL", "SOFTWARE", "EXTERNAL", "EXTERNAL_MULTI", "GATE")
WAIT_S = 0.1


class DetectorError(RuntimeError):
    """The simulated hardware refused a command or failed; the text says why."""


class DetectorState(StrEnum):
    IDLE = "idle"
    ARMED = "armed"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Exposure:
    """One series as the hardware sees it."""

    exposure_time: float
    frame_time: float
    trigger_mode: str
    n_triggers: int
    frames_per_trigger: int

    @property
    def total_frames(self) -> int:
        return self.n_triggers * self.frames_per_trigger


class _Stopped(Exception):
    """The series was stopped while it waited for a trigger or a frame."""


class SimulatedDetector:
    """Binds its data stream (and trigger input) at construction; ``close`` frees both."""

    def __init__(
        self,
        stream_endpoint: str,
        trigger_endpoint: str | None = None,
        shape: Sequence[int] = (512, 512),
        dtype: str = "uint16",
        compression: str = "bslz4",
        send_timeout_s: float = 10.0,
    ) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.dtype = dtype
        self.compression = compression
        self._lock = threading.Lock()
        self._state = DetectorState.IDLE
        self._error = ""
        self._exposure = Exposure(0.1, 0.1, "INTERNAL", 1, 1)
        self._triggers: queue.Queue[float] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._msg_number = 0
        self._injected_fault = ""
        self.frames_sent = 0
        self.triggers_ignored = 0
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUSH)
        self._send_timeout_s = send_timeout_s
        self._socket.sndhwm = 100
        self._socket.linger = 0
        self._socket.setsockopt(zmq.IMMEDIATE, 1)
        try:
            self._socket.bind(stream_endpoint)
        except zmq.ZMQError as exc:
            self._socket.close()
            self._context.term()
            raise DetectorError(
                f"cannot bind the data stream on {stream_endpoint}: {exc.strerror}"
            ) from None
        self.stream_endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._trigger_input: TriggerInput | None = None
        if trigger_endpoint:
            try:
                self._trigger_input = TriggerInput(self._context, trigger_endpoint, self._pulse)
            except OSError as exc:
                self.close()
                raise DetectorError(str(exc)) from None
            self._trigger_input.start()

    @property
    def trigger_endpoint(self) -> str | None:
        return self._trigger_input.endpoint if self._trigger_input else None

    @property
    def state(self) -> DetectorState:
        return self._state

    @property
    def error(self) -> str:
        return self._error

    def configure(self, exposure: Exposure) -> None:
        if exposure.trigger_mode not in MODES:
            raise DetectorError(
                f"trigger mode {exposure.trigger_mode!r} unknown; use one of {', '.join(MODES)}"
            )
        with self._lock:
            if self._state is DetectorState.ARMED:
                raise DetectorError("cannot configure while armed: stop the series first")
            self._exposure = exposure

    def arm(self, filename: str) -> None:
        """Send the header and start the series (INTERNAL) or wait for its triggers."""
        with self._lock:
            if self._state is DetectorState.ARMED:
                raise DetectorError("already armed: stop the series first")
            if self._thread is not None:
                self._thread.join()
            self._state, self._error = DetectorState.ARMED, ""
            self._stop.clear()
            self._triggers = queue.Queue()
            self.frames_sent = 0
            self._thread = threading.Thread(
                target=self._series, args=(self._exposure, filename), name="sim-detector"
            )
            self._thread.start()

    def trigger(self) -> None:
        """A software trigger: ``frames_per_trigger`` frames from now."""
        if self._state is not DetectorState.ARMED:
            raise DetectorError("not armed: Arm first, then trigger")
        if self._exposure.trigger_mode != "SOFTWARE":
            raise DetectorError(
                f"software triggers need trigger mode SOFTWARE, not {self._exposure.trigger_mode}"
            )
        self._triggers.put(0.0)

    def fire_external(self, width: float = 0.0) -> None:
        """A pulse on the trigger input, as :class:`TriggerInput` delivers it."""
        self._pulse(width)

    def inject_fault(self, reason: str) -> None:
        """Make the next frame fail with ``reason``, as a hardware fault would (tests, training)."""
        self._injected_fault = reason

    def stop(self) -> None:
        """End the series now: frames not yet taken are not taken, the series end goes out."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join()
        with self._lock:
            if self._state is DetectorState.ERROR:
                self._state = DetectorState.IDLE

    def close(self) -> None:
        self.stop()
        if self._trigger_input is not None:
            self._trigger_input.stop()
        self._socket.close()
        self._context.term()

    def _pulse(self, width: float) -> None:
        mode = self._exposure.trigger_mode
        if self._state is DetectorState.ARMED and mode in ("EXTERNAL", "EXTERNAL_MULTI", "GATE"):
            self._triggers.put(width)
        else:
            self.triggers_ignored += 1
            logger.info("trigger pulse ignored (state %s, mode %s)", self._state, mode)

    def _series(self, exposure: Exposure, filename: str) -> None:
        """Header, frames, series end; a fault mid-series still closes the series downstream.

        A stop before the header went out ends the series silently: nobody
        downstream has heard of it, so there is nothing to close.
        """
        fault: DetectorError | None = None
        try:
            self._send(stins.encode_header(self._msg_number, filename, self._meta(exposure)))
            try:
                self._frames(exposure)
            except _Stopped:
                logger.info("series stopped after %d frames", self.frames_sent)
            except DetectorError as exc:
                fault = exc
            self._send(stins.encode_series_end(self._msg_number), stoppable=False)
        except _Stopped:
            logger.info("series stopped before its header was taken")
        except DetectorError as exc:
            fault = fault or exc
        with self._lock:
            if fault is None:
                self._state = DetectorState.IDLE
            else:
                self._state, self._error = DetectorState.ERROR, str(fault)
                logger.error("simulated detector: %s", fault)

    def _frames(self, exposure: Exposure) -> None:
        mode = exposure.trigger_mode
        if mode == "INTERNAL":
            self._burst(exposure, 0, exposure.total_frames)
        elif mode == "EXTERNAL":
            self._wait_trigger()
            self._burst(exposure, 0, exposure.total_frames)
        elif mode == "GATE":
            for frame in range(exposure.n_triggers):
                width = self._wait_trigger()
                self._sleep(width)
                self._image(frame)
        else:
            for trigger in range(exposure.n_triggers):
                self._wait_trigger()
                first = trigger * exposure.frames_per_trigger
                self._burst(exposure, first, exposure.frames_per_trigger)

    def _burst(self, exposure: Exposure, first: int, count: int) -> None:
        """``count`` frames, one per frame period, each sent once its exposure has ended."""
        pacer = Pacer(1.0 / exposure.frame_time, sleep=self._sleep)
        for index in range(count):
            pacer.wait(index)
            self._sleep(exposure.exposure_time)
            self._image(first + index)

    def _wait_trigger(self) -> float:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                return self._triggers.get(timeout=WAIT_S)
            except queue.Empty:
                continue

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Stopped

    def _image(self, frame: int) -> None:
        if self._injected_fault:
            reason, self._injected_fault = self._injected_fault, ""
            raise DetectorError(reason)
        blob = encoded_frame(frame, self.shape, self.dtype, self.compression)
        self._send(
            stins.encode_image(
                self._msg_number, frame, blob, self.shape, self.dtype, self.compression
            )
        )
        self.frames_sent += 1

    def _send(self, parts: Sequence[Buffer], stoppable: bool = True) -> None:
        """Send once the stream takes it; a stop interrupts the wait unless ``stoppable`` is off."""
        deadline = time.monotonic() + self._send_timeout_s
        while not self._socket.poll(round(WAIT_S * 1000), zmq.POLLOUT):
            if stoppable and self._stop.is_set():
                raise _Stopped
            if time.monotonic() > deadline:
                raise DetectorError(
                    f"no receiver took the data stream on {self.stream_endpoint} within "
                    f"{self._send_timeout_s:g} s: is the receiver running and connected?"
                )
        self._socket.send_multipart(parts, copy=False)
        self._msg_number += 1

    def _meta(self, exposure: Exposure) -> dict[str, Any]:
        """Header metadata, stored by the receiver in the NXdetector group."""
        return {
            "detector": "simulator",
            "count_time": exposure.exposure_time,
            "frame_time": exposure.frame_time,
            "trigger_mode": exposure.trigger_mode,
            "ntrigger": exposure.n_triggers,
            "nimages": exposure.frames_per_trigger,
            "x_pixels_in_detector": self.shape[-1],
            "y_pixels_in_detector": self.shape[0],
        }

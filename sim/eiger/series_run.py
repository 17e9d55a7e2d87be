"""The thread of one armed series: it waits for triggers and takes their images.

The images of a trigger are paced by ``frame_time`` from the trigger, each
exposed ``count_time`` (or the trigger's own exposure), and go to the stream
sink as they are taken. The series ends by itself after its last image;
``disarm`` and ``abort`` end it at once (the image being exposed is lost),
``cancel`` after the image being exposed. A stream fault puts the detector in
``error`` and ends the series.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sim.eiger.series_plan import Series
from sim.eiger.state_machine import StateMachine, Stop
from sim.eiger.status import StreamFaults
from sim.eiger.stream import ImageTiming, StreamSink

logger = logging.getLogger(__name__)


class SeriesRun:
    """Runs ``series`` (:meth:`run` is the thread's target); shares the detector's lock."""

    def __init__(
        self,
        series: Series,
        sink: StreamSink,
        changed: threading.Condition,
        machine: StateMachine,
        stream: StreamFaults,
        clock: Callable[[], float],
    ) -> None:
        self._series = series
        self._sink = sink
        self._changed = changed
        self._machine = machine
        self._stream = stream
        self._clock = clock

    def run(self) -> None:
        """Wait for triggers, take their images, end the series.

        The last trigger's command answers once the series has ended (state
        ``idle``, series end sent); the others once their images are taken.
        """
        series = self._series
        failure = ""
        try:
            for number in range(1, series.plan.ntrigger + 1):
                stopped, exposure = self._next_trigger()
                if stopped:
                    break
                self._take_images(exposure)
                with self._changed:
                    if series.stop is not None or number == series.plan.ntrigger:
                        break
                    series.done = number
                    self._machine.waiting_for_trigger()
                    self._changed.notify_all()
        except Exception as exc:
            logger.exception("stream fault in series %d", series.id)
            failure = f"stream: {exc}"
        if series.streaming:
            try:
                self._sink.end_series(series.id)
            except Exception as exc:
                logger.exception("stream fault at the end of series %d", series.id)
                failure = failure or f"stream: the series end could not be sent: {exc}"
        if failure:
            self.fail(failure)
            return
        with self._changed:
            series.finished = True
            self._machine.series_ended()
            self._changed.notify_all()
        logger.info(
            "series %d ended after %d image(s)%s",
            series.id,
            series.frames,
            f" ({series.stop})" if series.stop else "",
        )

    def fail(self, reason: str) -> None:
        """A stream fault: the series is over and the detector and its stream in error."""
        with self._changed:
            self._series.finished = True
            self._machine.fail(reason)
            self._stream.errors.append(reason)
            self._changed.notify_all()

    def _next_trigger(self) -> tuple[bool, float | None]:
        """(stopped, exposure of the next trigger: None = count_time)."""
        series = self._series
        with self._changed:
            while not series.pending and series.stop is None:
                self._changed.wait()
            if series.stop is not None:
                return True, None
            return False, series.pending.pop()

    def _take_images(self, exposure: float | None) -> None:
        """The images of one trigger, paced by frame_time from the trigger."""
        series = self._series
        plan = series.plan
        seconds = plan.count_time if exposure is None else exposure
        first = self._clock()
        for index in range(plan.per_trigger):
            start = first + index * plan.frame_time
            if self._wait_until(start, exposing=False):
                return
            if self._wait_until(start + seconds, exposing=True):
                return
            with self._changed:
                frame = series.frames
                series.frames += 1
            start_ns = round((start - series.armed_at) * 1e9)
            timing = ImageTiming(start_ns, start_ns + round(seconds * 1e9), plan.real_ns(seconds))
            if series.streaming and not self._sink.image(series.id, frame, timing):
                with self._changed:
                    self._stream.dropped += 1

    def _wait_until(self, deadline: float, exposing: bool) -> bool:
        """Wait for ``deadline``; True when the series is stopped first.

        ``cancel`` lets the image being exposed finish; disarm and abort do not.
        """
        series = self._series
        with self._changed:
            while True:
                stop = series.stop
                if stop is not None and not (exposing and stop is Stop.CANCEL):
                    return True
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)

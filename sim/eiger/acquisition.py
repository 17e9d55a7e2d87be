"""Arming a series, triggering it and ending it early: one series at a time.

``arm`` latches the configuration, sends the series header and starts the
series' thread (:mod:`sim.eiger.series_run`). A software trigger (``ints``,
``inte``) answers once its images are taken; a pulse on the trigger input
(``exts``, ``exte``) is taken when the detector waits for one and ignored
otherwise, as the hardware ignores it. ``disarm``, ``cancel`` and ``abort``
end the series and answer once it has ended.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sim.eiger import parameters as params
from sim.eiger.config_store import ConfigStore
from sim.eiger.series_plan import Series, ulid
from sim.eiger.series_run import SeriesRun
from sim.eiger.simplon import SimplonError
from sim.eiger.state_machine import State, StateMachine, Stop
from sim.eiger.status import StreamFaults
from sim.eiger.stream import StreamSink

logger = logging.getLogger(__name__)


class Acquisition:
    """The armed series and the commands that drive it; thread-safe (the detector's lock)."""

    def __init__(
        self,
        sink: StreamSink,
        changed: threading.Condition,
        machine: StateMachine,
        store: ConfigStore,
        stream: StreamFaults,
        clock: Callable[[], float],
    ) -> None:
        self._sink = sink
        self._changed = changed
        self._machine = machine
        self._store = store
        self._stream = stream
        self._clock = clock
        self.series: Series | None = None
        """The last series armed (also once it has ended); None before the first arm."""
        self.sequence_id = 0
        self.ignored_pulses = 0

    def arm(self) -> int:
        """Latch the configuration, send the series header, wait for triggers."""
        with self._changed:
            self._machine.require_idle("arm")
            self.sequence_id += 1
            unique_id = ulid()
            plan, config = self._store.latch(unique_id, datetime.now().astimezone())
            series = Series(
                id=self.sequence_id,
                unique_id=unique_id,
                plan=plan,
                streaming=self._store.streaming,
                armed_at=self._clock(),
            )
            self.series = series
            self._machine.arming()
            self._stream.dropped = 0
        run = SeriesRun(series, self._sink, self._changed, self._machine, self._stream, self._clock)
        if series.streaming:
            try:
                self._sink.start_series(config, series.id)
            except Exception as exc:
                reason = f"stream: the header of series {series.id} could not be sent: {exc}"
                logger.exception(reason)
                run.fail(reason)
                raise SimplonError(500, f"arm failed: {reason}") from exc
        thread = threading.Thread(target=run.run, name=f"eiger-series-{series.id}", daemon=True)
        with self._changed:
            series.thread = thread
            self._machine.armed()
        thread.start()
        logger.info(
            "armed series %d: %s, %d image(s) per trigger, %d trigger(s)",
            series.id,
            plan.mode,
            plan.per_trigger,
            plan.ntrigger,
        )
        return series.id

    def trigger(self, exposure: Any = None) -> int:
        """A software trigger (ints, inte); answers once its images are taken."""
        with self._changed:
            series = self.series
            state = self._machine.state
            if state not in (State.READY, State.ACQUIRE) or series is None:
                raise SimplonError(
                    400, f"trigger refused: the detector is {state}, not armed: arm it first"
                )
            plan = series.plan
            if not plan.software:
                raise SimplonError(
                    400,
                    f"trigger refused: trigger_mode is {plan.mode}, the series starts on the "
                    "external trigger input; the trigger command is for ints and inte",
                )
            if state is State.ACQUIRE or series.pending:
                raise SimplonError(400, "trigger refused: the previous trigger is still acquiring")
            seconds = _exposure(exposure) if plan.mode == "inte" else None
            ticket = self._accept(series, seconds)
            while series.done <= ticket and not series.finished:
                self._changed.wait()
            return series.id

    def external_trigger(self, width: float = 0.0) -> None:
        """A pulse on the trigger input (exts, exte); ``width`` in s is exte's exposure."""
        with self._changed:
            series = self.series
            waiting = (
                series is not None
                and self._machine.state is State.READY
                and not series.plan.software
                and not series.pending
                and series.accepted < series.plan.ntrigger
            )
            if series is not None and waiting:
                exposure = width if series.plan.mode == "exte" and width > 0 else None
                self._accept(series, exposure)
                return
            self.ignored_pulses += 1
        logger.info("trigger pulse ignored: the detector is not waiting for one")

    def end_series(self, how: Stop) -> int:
        """``disarm``, ``cancel`` or ``abort``: end the series (no-op when none); its id."""
        with self._changed:
            self._machine.require_initialized(str(how))
        self.finish(how)
        with self._changed:
            return self.sequence_id

    def finish(self, how: Stop) -> None:
        """End the series ``how`` and wait until it has (no-op when none is running)."""
        with self._changed:
            series = self.series
            if series is None:
                return
            if not series.finished and series.stop is None:
                series.stop = how
                self._changed.notify_all()
            while not series.finished:
                self._changed.wait()
            thread = series.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _accept(self, series: Series, exposure: float | None) -> int:
        ticket = series.accepted
        series.accepted += 1
        series.pending.append(exposure)
        self._machine.acquiring()
        self._changed.notify_all()
        return ticket


def _exposure(value: Any) -> float | None:
    """The count time sent with an inte trigger; None when none was sent."""
    if value is None:
        return None
    lo, hi = params.COUNT_TIME_S
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise SimplonError(
            400, f"trigger refused: the count time sent must be a number in [{lo}, {hi}] s"
        )
    return float(value)

"""The simulated EIGER detector control unit: what the SIMPLON API addresses.

Transport-free: the HTTP layer (:mod:`sim.eiger.api`) calls these methods and
turns :class:`~sim.eiger.simplon.SimplonError` into the status and reason a
detector answers. :class:`EigerDetector` routes each request to the part
that does it, all under one lock, as one detector:

- :mod:`sim.eiger.state_machine`: the SIMPLON states and what each allows;
- :mod:`sim.eiger.config_store`: the configuration and what setting a
  parameter derives;
- :mod:`sim.eiger.status`: what the status sections answer, and the stream
  subsystem's faults;
- :mod:`sim.eiger.acquisition` and :mod:`sim.eiger.series_run`: arming,
  triggers, the series' thread (:mod:`sim.eiger.series_plan`: the trigger
  modes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sim.eiger import parameters as params
from sim.eiger.acquisition import Acquisition
from sim.eiger.config_store import ConfigStore
from sim.eiger.simplon import SimplonError, check_command, param_of, section_keys
from sim.eiger.state_machine import State, StateMachine, Stop
from sim.eiger.status import StatusReport, StreamFaults, status_extras
from sim.eiger.stream import StreamSink

__all__ = ["EigerDetector", "SimplonError", "State"]

logger = logging.getLogger(__name__)


class EigerDetector:
    """One detector; thread-safe. ``close`` ends any series and its thread."""

    def __init__(
        self,
        sink: StreamSink,
        *,
        initialized: bool = False,
        initialize_time_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._initialize_time_s = initialize_time_s
        self._lock = threading.Lock()
        changed = threading.Condition(self._lock)
        self._machine = StateMachine(initialized)
        self._store = ConfigStore()
        self._stream = StreamFaults()
        self._status = StatusReport(self._machine, self._store, self._stream)
        self._acquisition = Acquisition(
            sink, changed, self._machine, self._store, self._stream, clock
        )

    @property
    def state(self) -> State:
        with self._lock:
            return self._machine.state

    @property
    def ignored_pulses(self) -> int:
        """Trigger pulses that came while the detector was not waiting for one."""
        with self._lock:
            return self._acquisition.ignored_pulses

    # ------------------------------------------------------------- parameters

    def keys(self, subsystem: str, section: str) -> list[str]:
        return section_keys(subsystem, section)

    def describe(self, subsystem: str, section: str, key: str) -> dict[str, Any]:
        """What ``GET /<subsystem>/api/1.8.0/<section>/<key>`` answers."""
        param = param_of(subsystem, section, key)
        with self._lock:
            if param.array_dtype is not None:
                return param.describe(params.encode_darray(self._store.pixel_mask))
            if section == "config":
                return param.describe(self._store.value(subsystem, key))
            value = self._status.value(subsystem, key, self._acquisition.series)
        return dict(sorted((param.describe(value) | status_extras(key, value)).items()))

    def configure(self, subsystem: str, key: str, value: Any) -> list[str]:
        """``PUT .../config/<key>``: the parameters the change touched, sorted."""
        param = param_of(subsystem, "config", key)
        if not param.writable:
            raise SimplonError(400, f"{key} is read-only")
        value = self._store.check(param, value)
        with self._lock:
            if subsystem == "detector":
                self._machine.refuse_change(key)
            changed = self._store.change(subsystem, key, value)
        logger.info("%s %s set to %r", subsystem, key, value)
        return sorted(changed)

    # --------------------------------------------------------------- commands

    def command(self, subsystem: str, name: str, value: Any = None) -> dict[str, int] | None:
        """``PUT .../command/<name>``: ``{"sequence id": n}`` for the acquisition commands."""
        check_command(subsystem, name)
        if subsystem == "stream" and name == "initialize":
            with self._lock:
                self._store.disable_stream()
                self._stream.clear()
            return None
        if subsystem != "detector" or name == "status_update":
            return None
        match name:
            case "initialize":
                self.initialize()
                return None
            case "arm":
                return {"sequence id": self.arm()}
            case "trigger":
                return {"sequence id": self.trigger(value)}
            case _:
                return {"sequence id": self.end_series(Stop(name))}

    def initialize(self) -> None:
        """Ends any series, clears errors; ``initialize`` for its duration, then ``idle``."""
        self._acquisition.finish(Stop.ABORT)
        with self._lock:
            self._machine.initializing()
            self._stream.errors.clear()
        time.sleep(self._initialize_time_s)
        with self._lock:
            self._machine.initialized()
        logger.info("detector initialized")

    def arm(self) -> int:
        """Latch the configuration, send the series header, wait for triggers."""
        return self._acquisition.arm()

    def trigger(self, exposure: Any = None) -> int:
        """A software trigger (ints, inte); answers once its images are taken."""
        return self._acquisition.trigger(exposure)

    def external_trigger(self, width: float = 0.0) -> None:
        """A pulse on the trigger input (exts, exte); ``width`` in s is exte's exposure."""
        self._acquisition.external_trigger(width)

    def end_series(self, how: Stop) -> int:
        """``disarm``, ``cancel`` or ``abort``: end the series (no-op when none); its id."""
        return self._acquisition.end_series(how)

    def close(self) -> None:
        """End the series at once and refuse new ones (the simulator is stopping)."""
        with self._lock:
            self._machine.closed = True
        self._acquisition.finish(Stop.ABORT)

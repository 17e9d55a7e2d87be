"""What the ``status`` sections of the detector and its subsystems answer.

A status parameter is not stored: it is read off the detector as it is (its
state, its errors, the series it runs). The stream subsystem keeps what only
it knows, its faults and the images it could not send, until its own
``initialize``. Monitor and filewriter are not simulated beyond their status:
they answer as an idle, healthy unit does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sim.eiger.config_store import ConfigStore
from sim.eiger.series_plan import Series
from sim.eiger.state_machine import StateMachine

CRITICAL: dict[str, tuple[list[float | None], list[str]]] = {
    "state": ([None, None], ["error", "na"]),
    "board_000/th0_temp": ([15.0, 37.5], []),
    "board_000/th0_humidity": ([0.0, 35.0], []),
    "builder/dcu_buffer_free": ([2.0, None], []),
    "link_0": ([None, None], ["down"]),
    "link_1": ([None, None], ["down"]),
}
"""Limits and values at which the detector flags a status parameter ``critical``."""


@dataclass
class StreamFaults:
    """The stream subsystem's own status; guarded by the detector's lock."""

    errors: list[str] = field(default_factory=list)
    dropped: int = 0
    """Images of the current series the sink could not take."""

    def clear(self) -> None:
        self.errors.clear()
        self.dropped = 0


class StatusReport:
    """Reads every status parameter off the detector's parts (the caller holds the lock)."""

    def __init__(self, machine: StateMachine, store: ConfigStore, stream: StreamFaults) -> None:
        self._machine = machine
        self._store = store
        self._stream = stream

    def value(self, subsystem: str, key: str, series: Series | None) -> Any:
        """Status ``key`` of ``subsystem``; ``series``: the last one armed, None before any."""
        running = series if series is not None and not series.finished else None
        match subsystem, key:
            case "detector", "state":
                return str(self._machine.state)
            case "detector", "error":
                return list(self._machine.errors)
            case "detector" | "filewriter", "time":
                return now_iso()
            case "detector", "series_unique_id":
                return series.unique_id if series is not None else ""
            case "detector", "board_000/th0_temp":
                return 24.9
            case "detector", "board_000/th0_humidity":
                return 3.6
            case "detector", "builder/dcu_buffer_free":
                return 100.0
            case "detector", _:
                return "up"
            case "stream", "state":
                if self._stream.errors:
                    return "error"
                if self._store.value("stream", "mode") == "disabled":
                    return "disabled"
                return "acquire" if running is not None and running.streaming else "ready"
            case "stream", "dropped":
                return self._stream.dropped
            case "stream", _:
                return list(self._stream.errors)
            case "monitor", "state":
                return "normal"
            case "monitor", "buffer_free":
                return self._store.value("monitor", "buffer_size")
            case "monitor", "dropped":
                return 0
            case "filewriter", "state":
                if self._store.value("filewriter", "mode") == "disabled":
                    return "disabled"
                return "acquire" if running is not None else "ready"
            case "filewriter", "buffer_free":
                return 100_000_000_000
        return []


def status_extras(key: str, value: Any) -> dict[str, Any]:
    """The monitoring fields a status parameter carries beside its value."""
    limits, critical_values = CRITICAL.get(key, ([None, None], []))
    lo, hi = limits
    critical = value in critical_values or (
        isinstance(value, float)
        and ((lo is not None and value < lo) or (hi is not None and value > hi))
    )
    return {
        "critical_limits": limits,
        "critical_values": critical_values,
        "state": "critical" if critical else "normal",
        "time": now_iso("microseconds"),
        "unit": "",
    }


def now_iso(timespec: str = "seconds") -> str:
    return datetime.now().astimezone().isoformat(timespec=timespec)

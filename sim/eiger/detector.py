"""The simulated EIGER detector control unit: configuration, state machine, acquisition.

Transport-free: the HTTP layer (:mod:`sim.eiger.api`) calls these methods and
turns :class:`SimplonError` into the status and reason a detector answers.

States as SIMPLON 1.8 reports them: ``na`` until ``initialize``; ``idle``;
``configure`` while ``arm`` sends the series header; ``ready`` while armed and
waiting for a trigger; ``acquire`` while images are taken; ``error`` after a
stream fault, until ``initialize``. Trigger modes:

- ``ints``: each ``trigger`` command takes ``nimages`` images, one every
  ``frame_time``, each exposed ``count_time``; the command answers when they
  are taken. ``ntrigger`` triggers make the series.
- ``inte``: each ``trigger`` command takes one image, exposed for the value sent
  with it (``count_time`` without one); ``ntrigger`` images.
- ``exts``: each pulse on the trigger input takes ``nimages`` images; ``ntrigger``
  pulses.
- ``exte``: each pulse takes one image exposed for the pulse's width
  (``count_time`` for an edge); ``ntrigger`` images.

The series ends by itself after its last image; ``disarm`` and ``abort`` end it
at once (the image being exposed is lost), ``cancel`` after the image being
exposed. Pulses that arrive while the detector is not waiting for one are
ignored, as the hardware ignores them.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np

from sim.eiger import parameters as params
from sim.eiger.stream import ImageTiming, SeriesConfig, StreamSink

logger = logging.getLogger(__name__)

COUNT_TIME_GAP_S = 3.0e-6
"""frame_time - count_time in the real capture: the shortest gap the detector keeps."""
SUBFRAME_RATE_HZ = 750.0
"""Auto summation splits a frame into ceil(frame_time x 750) subframes: 751 for the
capture's 1.0000029 s, whose ``frame_period`` x 751 is its ``frame_time`` within 5 us
and whose ``countrate_correction_count_cutoff`` is 751 subframes' worth."""
TIMING_KEYS = (
    "bit_depth_image",
    "count_time",
    "countrate_correction_count_cutoff",
    "frame_count_time",
    "frame_period",
    "frame_time",
)
SUMMATION_KEYS = (
    "auto_summation",
    "bit_depth_image",
    "countrate_correction_count_cutoff",
    "frame_count_time",
    "frame_period",
)
ENERGY_KEYS = ("element", "photon_energy", "wavelength")
"""Setting one sets the others and the threshold (half the photon energy)."""
THRESHOLD_KEYS = ("threshold/1/energy", "threshold_energy")
"""Two names of one threshold: setting one sets both."""


class SimplonError(Exception):
    """A request the detector refuses: the HTTP status and the reason it answers."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class State(StrEnum):
    NA = "na"
    INITIALIZE = "initialize"
    IDLE = "idle"
    CONFIGURE = "configure"
    READY = "ready"
    ACQUIRE = "acquire"
    ERROR = "error"


class Stop(StrEnum):
    """How a series is ended early."""

    DISARM = "disarm"
    CANCEL = "cancel"
    ABORT = "abort"


NOT_IDLE = {
    State.NA: "the detector is not initialized: send the initialize command first",
    State.INITIALIZE: "the detector is initializing",
    State.CONFIGURE: "the detector is arming",
    State.READY: "the detector is armed: disarm it first",
    State.ACQUIRE: "the detector is acquiring: disarm or abort first",
    State.ERROR: "the detector is in error: initialize it first",
}
"""Why a command or setting that needs state ``idle`` is refused."""


@dataclass(frozen=True, slots=True)
class Plan:
    """One series as the hardware runs it, latched at arm."""

    mode: str
    nimages: int
    ntrigger: int
    count_time: float
    frame_time: float
    readout_time: float
    auto_summation: bool

    @property
    def software(self) -> bool:
        return self.mode in ("ints", "inte")

    @property
    def per_trigger(self) -> int:
        return 1 if self.mode in ("inte", "exte") else self.nimages

    @property
    def total(self) -> int:
        return self.per_trigger * self.ntrigger

    def real_ns(self, exposure: float) -> int:
        """Counting time of one image: the exposure less the subframe readout gaps."""
        subframes = subframes_of(exposure, self.auto_summation)
        gaps = (subframes - 1) * self.readout_time if subframes > 1 else 0.0
        return max(0, round((exposure - gaps) * 1e9))


@dataclass(slots=True)
class Series:
    """The armed series; guarded by the detector's lock."""

    id: int
    plan: Plan
    streaming: bool
    armed_at: float
    accepted: int = 0
    """Triggers taken so far (software and external)."""
    done: int = 0
    """Triggers whose images are all taken."""
    pending: list[float | None] = field(default_factory=list)
    """The trigger waiting for the acquisition thread: its exposure (None = count_time)."""
    frames: int = 0
    stop: Stop | None = None
    finished: bool = False
    thread: threading.Thread | None = None


def subframes_of(frame_time: float, auto_summation: bool) -> int:
    return max(1, math.ceil(frame_time * SUBFRAME_RATE_HZ - 1e-9)) if auto_summation else 1


def ulid() -> str:
    """A ULID (48-bit ms time + 80 random bits, Crockford base32), as stream v2 carries."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    number = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    return "".join(alphabet[(number >> shift) & 31] for shift in range(125, -1, -5))


def now_iso(timespec: str = "seconds") -> str:
    return datetime.now().astimezone().isoformat(timespec=timespec)


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
        self._sink = sink
        self._initialize_time_s = initialize_time_s
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        defaults = params.detector_defaults()
        self._header_keys = tuple(defaults.header)
        self._pixel_mask = defaults.pixel_mask
        self._config: dict[str, dict[str, Any]] = {
            "detector": defaults.config,
            **{name: dict(params.section_defaults(name)) for name in params.SUBSYSTEMS[1:]},
        }
        detector = self._config["detector"]
        self._cutoff_per_subframe = detector["countrate_correction_count_cutoff"] / subframes_of(
            detector["frame_time"], detector["auto_summation"]
        )
        self._state = State.IDLE if initialized else State.NA
        self._errors: list[str] = []
        self._stream_errors: list[str] = []
        self._sequence_id = 0
        self._series_unique_id = ""
        self._series: Series | None = None
        self._dropped = 0
        self._closed = False
        self.ignored_pulses = 0

    # ------------------------------------------------------------- parameters

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    def keys(self, subsystem: str, section: str) -> list[str]:
        _check_subsystem(subsystem)
        if section != "command" and (subsystem, section) not in params.PARAMETERS:
            raise SimplonError(404, f"{subsystem} has no {section!r} section")
        return params.listed_keys(subsystem, section)

    def describe(self, subsystem: str, section: str, key: str) -> dict[str, Any]:
        """What ``GET /<subsystem>/api/1.8.0/<section>/<key>`` answers."""
        param = _param(subsystem, section, key)
        with self._lock:
            if param.array_dtype is not None:
                return param.describe(params.encode_darray(self._pixel_mask))
            if section == "config":
                return param.describe(self._config[subsystem][key])
            value = self._status_value(subsystem, key)
        return dict(sorted((param.describe(value) | _status_extras(key, value)).items()))

    def configure(self, subsystem: str, key: str, value: Any) -> list[str]:
        """``PUT .../config/<key>``: the parameters the change touched, sorted."""
        param = _param(subsystem, "config", key)
        if not param.writable:
            raise SimplonError(400, f"{key} is read-only")
        try:
            if param.array_dtype is not None:
                value = params.decode_darray(key, value, param.array_dtype, self._image_shape())
            else:
                value = param.check(value)
        except params.ParameterError as exc:
            raise SimplonError(400, str(exc)) from None
        with self._lock:
            if subsystem == "detector":
                self._refuse_detector_change(key)
                changed = self._configure_detector(key, value)
            else:
                self._config[subsystem][key] = value
                changed = {key}
        logger.info("%s %s set to %r", subsystem, key, value)
        return sorted(changed)

    def _refuse_detector_change(self, key: str) -> None:
        if self._state in NOT_IDLE:
            raise SimplonError(400, f"cannot change {key}: {NOT_IDLE[self._state]}")

    def _image_shape(self) -> tuple[int, int]:
        detector = self._config["detector"]
        return (detector["y_pixels_in_detector"], detector["x_pixels_in_detector"])

    def _configure_detector(self, key: str, value: Any) -> set[str]:
        config = self._config["detector"]
        if key == "pixel_mask":
            self._pixel_mask = value
            config["number_of_excluded_pixels"] = int(np.count_nonzero(value))
            return {key, "number_of_excluded_pixels"}
        config[key] = value
        changed = {key}
        if key == "count_time" and config["frame_time"] < value + COUNT_TIME_GAP_S:
            config["frame_time"] = value + COUNT_TIME_GAP_S
        elif key == "frame_time" and config["count_time"] > value - COUNT_TIME_GAP_S:
            config["count_time"] = value - COUNT_TIME_GAP_S
        if key in ("count_time", "frame_time"):
            changed.update(TIMING_KEYS)
            self._derive_timing()
        elif key == "auto_summation":
            changed.update(SUMMATION_KEYS)
            self._derive_timing()
        elif key == "photon_energy":
            self._set_energy(value, element="")
        elif key == "wavelength":
            self._set_energy(params.HC_EV_ANGSTROM / value, element="")
        elif key == "element":
            self._set_energy(params.K_ALPHA1_EV[value], element=value)
        elif key in THRESHOLD_KEYS:
            config.update(dict.fromkeys(THRESHOLD_KEYS, value))
            changed.update(THRESHOLD_KEYS)
        if key in ENERGY_KEYS:
            changed.update((*ENERGY_KEYS, *THRESHOLD_KEYS))
        return changed

    def _derive_timing(self) -> None:
        """Subframes of auto summation, from frame_time, as the detector recomputes them."""
        config = self._config["detector"]
        subframes = subframes_of(config["frame_time"], config["auto_summation"])
        config["frame_period"] = config["frame_time"] / subframes
        config["frame_count_time"] = config["frame_period"] - config["detector_readout_time"]
        config["bit_depth_image"] = 32 if subframes > 1 else config["bit_depth_readout"]
        config["countrate_correction_count_cutoff"] = round(self._cutoff_per_subframe * subframes)

    def _set_energy(self, photon_energy: float, element: str) -> None:
        lo, hi = params.PHOTON_ENERGY_EV
        photon_energy = min(max(photon_energy, lo), hi)
        config = self._config["detector"]
        config["photon_energy"] = photon_energy
        config["wavelength"] = params.HC_EV_ANGSTROM / photon_energy
        config["element"] = element
        lo, hi = params.THRESHOLD_ENERGY_EV
        config.update(dict.fromkeys(THRESHOLD_KEYS, min(max(photon_energy / 2, lo), hi)))

    def _status_value(self, subsystem: str, key: str) -> Any:
        series_open = self._series is not None and not self._series.finished
        match subsystem, key:
            case "detector", "state":
                return str(self._state)
            case "detector", "error":
                return list(self._errors)
            case "detector" | "filewriter", "time":
                return now_iso()
            case "detector", "series_unique_id":
                return self._series_unique_id
            case "detector", "board_000/th0_temp":
                return 24.9
            case "detector", "board_000/th0_humidity":
                return 3.6
            case "detector", "builder/dcu_buffer_free":
                return 100.0
            case "detector", _:
                return "up"
            case "stream", "state":
                if self._stream_errors:
                    return "error"
                if self._config["stream"]["mode"] == "disabled":
                    return "disabled"
                return "acquire" if series_open and self._series.streaming else "ready"
            case "stream", "dropped":
                return self._dropped
            case "stream", _:
                return list(self._stream_errors)
            case "monitor", "state":
                return "normal"
            case "monitor", "buffer_free":
                return self._config["monitor"]["buffer_size"]
            case "monitor", "dropped":
                return 0
            case "filewriter", "state":
                if self._config["filewriter"]["mode"] == "disabled":
                    return "disabled"
                return "acquire" if series_open else "ready"
            case "filewriter", "buffer_free":
                return 100_000_000_000
        return []

    # --------------------------------------------------------------- commands

    def command(self, subsystem: str, name: str, value: Any = None) -> dict[str, int] | None:
        """``PUT .../command/<name>``: ``{"sequence id": n}`` for the acquisition commands."""
        _check_subsystem(subsystem)
        if name not in params.COMMANDS[subsystem]:
            raise SimplonError(
                404,
                f"{subsystem} has no command {name!r}; commands: {', '.join(params.COMMANDS[subsystem])}",
            )
        if subsystem == "stream" and name == "initialize":
            with self._lock:
                self._config["stream"]["mode"] = "disabled"
                self._stream_errors.clear()
                self._dropped = 0
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
        self._finish_series(Stop.ABORT)
        with self._lock:
            self._state = State.INITIALIZE
            self._errors.clear()
            self._stream_errors.clear()
        time.sleep(self._initialize_time_s)
        with self._lock:
            if self._state is State.INITIALIZE:
                self._state = State.IDLE
        logger.info("detector initialized")

    def arm(self) -> int:
        """Latch the configuration, send the series header, wait for triggers."""
        with self._lock:
            self._require_idle("arm")
            self._sequence_id += 1
            detector = self._config["detector"]
            arm_date = datetime.now().astimezone()
            detector["data_collection_date"] = arm_date.isoformat(timespec="milliseconds")
            self._series_unique_id = ulid()
            plan = Plan(
                mode=detector["trigger_mode"],
                nimages=detector["nimages"],
                ntrigger=detector["ntrigger"],
                count_time=detector["count_time"],
                frame_time=detector["frame_time"],
                readout_time=detector["detector_readout_time"],
                auto_summation=detector["auto_summation"],
            )
            config = SeriesConfig(
                series_unique_id=self._series_unique_id,
                arm_date=arm_date,
                number_of_images=plan.total,
                detector={key: detector[key] for key in self._header_keys},
                stream=dict(self._config["stream"]),
                extra_config={k: v for k, v in detector.items() if k not in self._header_keys},
                pixel_mask=self._pixel_mask,
            )
            series = Series(
                id=self._sequence_id,
                plan=plan,
                streaming=self._config["stream"]["mode"] == "enabled",
                armed_at=self._clock(),
            )
            self._series = series
            self._state = State.CONFIGURE
            self._dropped = 0
        if series.streaming:
            try:
                self._sink.start_series(config, series.id)
            except Exception as exc:
                reason = f"stream: the header of series {series.id} could not be sent: {exc}"
                logger.exception(reason)
                self._fail(series, reason)
                raise SimplonError(500, f"arm failed: {reason}") from exc
        thread = threading.Thread(
            target=self._run, args=(series,), name=f"eiger-series-{series.id}", daemon=True
        )
        with self._lock:
            series.thread = thread
            if self._state is State.CONFIGURE:
                self._state = State.READY
        thread.start()
        logger.info(
            "armed series %d: %s, %d image(s) per trigger, %d trigger(s)",
            series.id,
            plan.mode,
            plan.per_trigger,
            plan.ntrigger,
        )
        return series.id

    def _require_idle(self, command: str) -> None:
        if self._closed:
            raise SimplonError(503, "the detector is shutting down")
        if self._state in NOT_IDLE:
            raise SimplonError(400, f"{command} refused: {NOT_IDLE[self._state]}")

    def trigger(self, exposure: Any = None) -> int:
        """A software trigger (ints, inte); answers once its images are taken."""
        with self._lock:
            series = self._series
            if self._state not in (State.READY, State.ACQUIRE) or series is None:
                raise SimplonError(
                    400, f"trigger refused: the detector is {self._state}, not armed: arm it first"
                )
            plan = series.plan
            if not plan.software:
                raise SimplonError(
                    400,
                    f"trigger refused: trigger_mode is {plan.mode}, the series starts on the "
                    "external trigger input; the trigger command is for ints and inte",
                )
            if self._state is State.ACQUIRE or series.pending:
                raise SimplonError(400, "trigger refused: the previous trigger is still acquiring")
            seconds = _exposure(exposure) if plan.mode == "inte" else None
            ticket = self._accept(series, seconds)
            while series.done <= ticket and not series.finished:
                self._changed.wait()
            return series.id

    def external_trigger(self, width: float = 0.0) -> None:
        """A pulse on the trigger input (exts, exte); ``width`` in s is exte's exposure."""
        with self._lock:
            series = self._series
            waiting = (
                series is not None
                and self._state is State.READY
                and not series.plan.software
                and not series.pending
                and series.accepted < series.plan.ntrigger
            )
            if waiting:
                exposure = width if series.plan.mode == "exte" and width > 0 else None
                self._accept(series, exposure)
                return
            self.ignored_pulses += 1
        logger.info("trigger pulse ignored: the detector is not waiting for one")

    def _accept(self, series: Series, exposure: float | None) -> int:
        ticket = series.accepted
        series.accepted += 1
        series.pending.append(exposure)
        self._state = State.ACQUIRE
        self._changed.notify_all()
        return ticket

    def end_series(self, how: Stop) -> int:
        """``disarm``, ``cancel`` or ``abort``: end the series (no-op when none); its id."""
        with self._lock:
            if self._state is State.NA:
                raise SimplonError(
                    400, f"{how} refused: the detector is not initialized: send initialize first"
                )
        self._finish_series(how)
        with self._lock:
            return self._sequence_id

    def _finish_series(self, how: Stop) -> None:
        with self._lock:
            series = self._series
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

    def close(self) -> None:
        """End the series at once and refuse new ones (the simulator is stopping)."""
        with self._lock:
            self._closed = True
        self._finish_series(Stop.ABORT)

    # ------------------------------------------------------------ acquisition

    def _run(self, series: Series) -> None:
        """The series' thread: wait for triggers, take their images, end the series.

        The last trigger's command answers once the series has ended (state
        ``idle``, series end sent); the others once their images are taken.
        """
        failure = ""
        try:
            for number in range(1, series.plan.ntrigger + 1):
                stopped, exposure = self._next_trigger(series)
                if stopped:
                    break
                self._take_images(series, exposure)
                with self._lock:
                    if series.stop is not None or number == series.plan.ntrigger:
                        break
                    series.done = number
                    self._state = State.READY
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
            self._fail(series, failure)
            return
        with self._lock:
            series.finished = True
            if self._state in (State.READY, State.ACQUIRE):
                self._state = State.IDLE
            self._changed.notify_all()
        logger.info(
            "series %d ended after %d image(s)%s",
            series.id,
            series.frames,
            f" ({series.stop})" if series.stop else "",
        )

    def _fail(self, series: Series, reason: str) -> None:
        with self._lock:
            series.finished = True
            self._state = State.ERROR
            self._errors.append(reason)
            self._stream_errors.append(reason)
            self._changed.notify_all()

    def _next_trigger(self, series: Series) -> tuple[bool, float | None]:
        """(stopped, exposure of the next trigger: None = count_time)."""
        with self._lock:
            while not series.pending and series.stop is None:
                self._changed.wait()
            if series.stop is not None:
                return True, None
            return False, series.pending.pop()

    def _take_images(self, series: Series, exposure: float | None) -> None:
        """The images of one trigger, paced by frame_time from the trigger."""
        plan = series.plan
        seconds = plan.count_time if exposure is None else exposure
        first = self._clock()
        for index in range(plan.per_trigger):
            start = first + index * plan.frame_time
            if self._wait_until(series, start, exposing=False):
                return
            if self._wait_until(series, start + seconds, exposing=True):
                return
            with self._lock:
                frame = series.frames
                series.frames += 1
            start_ns = round((start - series.armed_at) * 1e9)
            timing = ImageTiming(start_ns, start_ns + round(seconds * 1e9), plan.real_ns(seconds))
            if series.streaming and not self._sink.image(series.id, frame, timing):
                with self._lock:
                    self._dropped += 1

    def _wait_until(self, series: Series, deadline: float, exposing: bool) -> bool:
        """Wait for ``deadline``; True when the series is stopped first.

        ``cancel`` lets the image being exposed finish; disarm and abort do not.
        """
        with self._lock:
            while True:
                stop = series.stop
                if stop is not None and not (exposing and stop is Stop.CANCEL):
                    return True
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)


def _check_subsystem(subsystem: str) -> None:
    if subsystem not in params.SUBSYSTEMS:
        raise SimplonError(
            404, f"no subsystem {subsystem!r}; subsystems: {', '.join(params.SUBSYSTEMS)}"
        )


def _param(subsystem: str, section: str, key: str) -> params.Param:
    _check_subsystem(subsystem)
    table = params.PARAMETERS.get((subsystem, section))
    if table is None:
        raise SimplonError(404, f"{subsystem} has no {section!r} section")
    param = table.get(key)
    if param is None:
        raise SimplonError(
            404, f"{subsystem} {section} has no parameter {key!r}; {section}/keys lists them"
        )
    return param


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


CRITICAL = {
    "state": ([None, None], ["error", "na"]),
    "board_000/th0_temp": ([15.0, 37.5], []),
    "board_000/th0_humidity": ([0.0, 35.0], []),
    "builder/dcu_buffer_free": ([2.0, None], []),
    "link_0": ([None, None], ["down"]),
    "link_1": ([None, None], ["down"]),
}


def _status_extras(key: str, value: Any) -> dict[str, Any]:
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

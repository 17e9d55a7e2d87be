"""The Dectris Eiger backend: SIMPLON 1.8 REST over HTTP (requests).

The Eiger streams by itself (Dectris stream v1 or v2 from its control unit);
this backend only configures, arms, triggers and disarms it, and puts the
destination file name into ``header_appendix`` where MAX IV's receivers read
it. The device's trigger modes map onto the Eiger's:

=============== =========== ================= ================
TriggerMode     trigger_mode nimages           ntrigger
=============== =========== ================= ================
INTERNAL        ints         frames per trigger nTriggers (the backend triggers)
SOFTWARE        ints         frames per trigger nTriggers (each SoftwareTrigger)
EXTERNAL        exts         all frames         1
EXTERNAL_MULTI  exts         frames per trigger nTriggers
GATE            exte         1                  nTriggers
=============== =========== ================= ================

A ``trigger`` command blocks on the detector until its images are taken, so
triggers run in a thread of their own; the series ends with ``disarm`` once
the detector is done, which also makes it send the series end.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal, Self

import requests
from pydantic import BaseModel, ConfigDict, Field

from devices.backend import Backend, BackendError, BackendState, parse_options
from devices.settings import AcquisitionSettings, TriggerMode

logger = logging.getLogger(__name__)

API = "api/1.8.0"
HTTP_TIMEOUT_S = 5.0
INITIALIZE_TIMEOUT_S = 180.0
POLL_S = 0.05
TRIGGER_MARGIN_S = 10.0
DISARM_WAIT_S = 5.0
MODES = {
    TriggerMode.INTERNAL: "ints",
    TriggerMode.SOFTWARE: "ints",
    TriggerMode.EXTERNAL: "exts",
    TriggerMode.EXTERNAL_MULTI: "exts",
    TriggerMode.GATE: "exte",
}


class EigerOptions(BaseModel):
    """The device properties this backend reads."""

    model_config = ConfigDict(extra="ignore")

    address: str = Field(alias="DetectorAddress", min_length=1)
    stream_address: str = Field(alias="StreamAddress", min_length=1)
    stream_format: Literal["legacy", "cbor"] = Field("legacy", alias="StreamFormat")
    header_detail: Literal["all", "basic", "none"] = Field("basic", alias="HeaderDetail")


class EigerBackend(Backend):
    name = "eiger"
    trigger_modes = frozenset(MODES)

    def __init__(self, options: EigerOptions) -> None:
        address = options.address.rstrip("/")
        self._url = address if "://" in address else f"http://{address}"
        self._options = options
        self._session = requests.Session()
        self._state = BackendState.IDLE
        self._error = ""
        self._triggers: queue.Queue[None] = queue.Queue()
        self._stopping = threading.Event()
        self._series: threading.Thread | None = None
        self._initialize_if_needed()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        opts = parse_options(EigerOptions, options, "eiger")
        return cls(opts)

    @property
    def stream_endpoint(self) -> str:
        return self._options.stream_address

    @property
    def stream_protocol(self) -> str:  # type: ignore[override]
        return "dectris-v1" if self._options.stream_format == "legacy" else "dectris-v2"

    @property
    def state(self) -> BackendState:
        return self._state

    @property
    def error(self) -> str:
        return self._error

    def arm(self, settings: AcquisitionSettings) -> None:
        if self._series is not None:
            # The previous series' thread may still be disarming after its last image.
            self._series.join(DISARM_WAIT_S)
            if self._series.is_alive():
                raise BackendError("the previous series is still running: Stop it first")
        mode = settings.trigger_mode
        per_trigger = {
            TriggerMode.EXTERNAL: settings.total_frames,
            TriggerMode.GATE: 1,
        }.get(mode, settings.frames_per_trigger)
        n_triggers = 1 if mode is TriggerMode.EXTERNAL else settings.n_triggers
        self._put("detector", "config/trigger_mode", MODES[mode])
        self._put("detector", "config/frame_time", settings.frame_time)
        self._put("detector", "config/count_time", settings.exposure_time)
        self._put("detector", "config/nimages", per_trigger)
        self._put("detector", "config/ntrigger", n_triggers)
        self._put("filewriter", "config/mode", "disabled")
        self._put("stream", "config/mode", "enabled")
        self._put("stream", "config/format", self._options.stream_format)
        self._put("stream", "config/header_detail", self._options.header_detail)
        self._put("stream", "config/header_appendix", json.dumps({"filename": settings.filename}))
        self._put("detector", "command/arm")
        self._state, self._error = BackendState.ARMED, ""
        self._stopping.clear()
        self._triggers = queue.Queue()
        if mode is TriggerMode.INTERNAL:
            for _ in range(n_triggers):
                self._triggers.put(None)
        trigger_s = per_trigger * settings.frame_time + TRIGGER_MARGIN_S
        software = mode in (TriggerMode.INTERNAL, TriggerMode.SOFTWARE)
        self._series = threading.Thread(
            target=self._run,
            args=(n_triggers if software else 0, trigger_s),
            name="eiger-series",
            daemon=True,
        )
        self._series.start()

    def trigger(self) -> None:
        if self._state is not BackendState.ARMED:
            raise BackendError("the Eiger is not armed")
        self._triggers.put(None)

    def stop(self) -> None:
        """Disarm: the detector ends the series (the stream's series end goes out)."""
        self._stopping.set()
        if self._state is BackendState.ARMED:
            try:
                self._put("detector", "command/disarm")
            except BackendError as exc:
                self._fail(str(exc))
        if self._series is not None:
            self._series.join()

    def close(self) -> None:
        self.stop()
        self._session.close()

    def _run(self, software_triggers: int, trigger_s: float) -> None:
        """Send the software triggers (or wait for the external ones), then disarm."""
        try:
            for _ in range(software_triggers):
                if not self._next_trigger():
                    break
                self._put("detector", "command/trigger", timeout=trigger_s)
            if not software_triggers:
                self._wait_until_idle()
            if not self._stopping.is_set():
                self._put("detector", "command/disarm")
        except BackendError as exc:
            if not self._stopping.is_set():
                self._fail(str(exc))
                return
        if self._state is BackendState.ARMED:
            self._state = BackendState.IDLE

    def _next_trigger(self) -> bool:
        while not self._stopping.is_set():
            try:
                self._triggers.get(timeout=POLL_S)
                return True
            except queue.Empty:
                continue
        return False

    def _wait_until_idle(self) -> None:
        """External triggers: the detector leaves ``ready``/``acquire`` after its last image."""
        while not self._stopping.is_set():
            state = self._get("detector", "status/state")
            if state == "error":
                raise BackendError(f"the Eiger reports an error: {self._status_error()}")
            if state == "idle":
                return
            time.sleep(POLL_S)

    def _initialize_if_needed(self) -> None:
        state = self._get("detector", "status/state")
        if state in ("na", "error"):
            logger.info("Eiger at %s is in state %s: initializing", self._url, state)
            self._put("detector", "command/initialize", timeout=INITIALIZE_TIMEOUT_S)

    def _status_error(self) -> str:
        try:
            return str(self._get("detector", "status/error"))
        except BackendError:
            return "no reason given"

    def _fail(self, reason: str) -> None:
        logger.error("Eiger: %s", reason)
        self._state, self._error = BackendState.ERROR, reason

    def _get(self, subsystem: str, key: str) -> Any:
        response = self._request("GET", subsystem, key, None, HTTP_TIMEOUT_S)
        return response.json().get("value")

    def _put(
        self, subsystem: str, key: str, value: Any = None, timeout: float = HTTP_TIMEOUT_S
    ) -> None:
        self._request("PUT", subsystem, key, value, timeout)

    def _request(
        self, method: str, subsystem: str, key: str, value: Any, timeout: float
    ) -> requests.Response:
        url = f"{self._url}/{subsystem}/{API}/{key}"
        body = None if value is None else {"value": value}
        try:
            response = self._session.request(method, url, json=body, timeout=timeout)
        except requests.Timeout:
            raise BackendError(
                f"the Eiger at {self._url} did not answer {method} {subsystem}/{key} "
                f"within {timeout:g} s"
            ) from None
        except requests.RequestException as exc:
            raise BackendError(
                f"cannot reach the Eiger at {self._url} ({type(exc).__name__}): "
                "is the detector control unit on and the DetectorAddress property right?"
            ) from None
        if not response.ok:
            reason = response.text.strip() or response.reason
            shown = "" if value is None else f" = {value!r}"
            raise BackendError(
                f"the Eiger refused {method} {subsystem}/{key}{shown}: "
                f"HTTP {response.status_code}: {reason}"
            )
        return response

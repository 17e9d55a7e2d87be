"""The simulator backend: the device drives :class:`sim.detector.SimulatedDetector` in-process.

It is what a beamline without hardware (tests, demos, training, client CI)
runs: same trigger semantics, same STINS stream, same closed loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from devices.backend import Backend, BackendError, BackendState, parse_options
from devices.settings import AcquisitionSettings, TriggerMode
from sim.detector import DetectorError, Exposure, SimulatedDetector


class SimulatorOptions(BaseModel):
    """The device properties this backend reads."""

    model_config = ConfigDict(extra="ignore")

    stream_address: str = Field("tcp://127.0.0.1:9999", alias="StreamAddress")
    trigger_input_address: str = Field("tcp://127.0.0.1:9998", alias="TriggerInputAddress")
    frame_shape: tuple[PositiveInt, PositiveInt] = Field((512, 512), alias="FrameShape")
    pixel_type: Literal["uint8", "uint16", "uint32", "int32", "float32"] = Field(
        "uint16", alias="PixelType"
    )
    compression: Literal["none", "bslz4"] = Field("bslz4", alias="Compression")


class SimulatorBackend(Backend):
    name = "simulator"
    trigger_modes = frozenset(TriggerMode)

    def __init__(self, detector: SimulatedDetector) -> None:
        self._detector = detector

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        opts = parse_options(SimulatorOptions, options, "simulator")
        try:
            detector = SimulatedDetector(
                opts.stream_address,
                opts.trigger_input_address,
                opts.frame_shape,
                opts.pixel_type,
                opts.compression,
            )
        except DetectorError as exc:
            raise BackendError(str(exc)) from None
        return cls(detector)

    @property
    def stream_endpoint(self) -> str:
        return self._detector.stream_endpoint

    @property
    def trigger_endpoint(self) -> str | None:
        return self._detector.trigger_endpoint

    @property
    def state(self) -> BackendState:
        return BackendState(self._detector.state.value)

    @property
    def error(self) -> str:
        return self._detector.error

    def arm(self, settings: AcquisitionSettings) -> None:
        exposure = Exposure(
            settings.exposure_time,
            settings.frame_time,
            settings.trigger_mode.name,
            settings.n_triggers,
            settings.frames_per_trigger,
        )
        try:
            self._detector.configure(exposure)
            self._detector.arm(settings.filename)
        except DetectorError as exc:
            raise BackendError(str(exc)) from None

    def trigger(self) -> None:
        try:
            self._detector.trigger()
        except DetectorError as exc:
            raise BackendError(str(exc)) from None

    def stop(self) -> None:
        self._detector.stop()

    def close(self) -> None:
        self._detector.close()

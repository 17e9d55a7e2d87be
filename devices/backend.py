"""The small interface between the Tango device and one kind of detector hardware.

The device only ever talks to a :class:`Backend`; which one is a device
property, resolved here by name and imported only when chosen, so the device
module never imports a vendor module (or its SDK) it does not use.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError

from devices.settings import AcquisitionSettings, TriggerMode


class BackendError(RuntimeError):
    """The hardware refused or failed; the text is the detector's own reason where it gave one."""


class SettingsRefused(BackendError):
    """The detector cannot take these settings: bad input, not a fault of the hardware.

    The device refuses the Arm with the reason and stays ON.
    """


class BackendState(StrEnum):
    IDLE = "idle"
    ARMED = "armed"
    ERROR = "error"


class ModuleStream(NamedTuple):
    """One module's stream of a multi-module detector: the receiver's module name and endpoint."""

    name: str
    endpoint: str


class Backend(ABC):
    """One detector. Calls come from one thread at a time (the device serialises them)."""

    name: str
    trigger_modes: frozenset[TriggerMode]
    stream_protocol: str = "stins"
    """The receiver protocol of the detector's stream (``protocols.PROTOCOLS``)."""
    stream_transforms: tuple[dict[str, Any], ...] = ()
    """Receiver transforms the stream needs before anything else (Pilatus: CBF decoding)."""

    @classmethod
    @abstractmethod
    def from_options(cls, options: Mapping[str, Any]) -> Backend:
        """Build from the device properties; raise :class:`BackendError` naming a bad one."""

    @property
    @abstractmethod
    def stream_endpoint(self) -> str:
        """Where the detector's data stream can be read (the receiver connects there)."""

    @property
    def stream_modules(self) -> tuple[ModuleStream, ...]:
        """A multi-module detector's streams (their headers place them); none otherwise.

        When there are any, the embedded receiver reads these instead of
        :attr:`stream_endpoint`.
        """
        return ()

    @property
    @abstractmethod
    def state(self) -> BackendState:
        """IDLE once a series is over (or before one), ARMED while it runs."""

    @property
    @abstractmethod
    def error(self) -> str:
        """The reason of the ERROR state; empty otherwise."""

    def poll(self) -> None:
        """Look at the hardware now; backends that watch it every so often refresh
        :attr:`state` and :attr:`error` here (the series just ended short)."""
        return

    @abstractmethod
    def arm(self, settings: AcquisitionSettings) -> None:
        """Configure and arm for one series; INTERNAL starts taking frames at once."""

    @abstractmethod
    def trigger(self) -> None:
        """A software trigger (SOFTWARE mode)."""

    @abstractmethod
    def stop(self) -> None:
        """End the series now; the stream's series end still goes out."""

    @abstractmethod
    def close(self) -> None:
        """Free the hardware connection; the backend is not used again."""


OptionsModel = TypeVar("OptionsModel", bound=BaseModel)


def parse_options(
    model: type[OptionsModel], options: Mapping[str, Any], backend: str, hint: str = ""
) -> OptionsModel:
    """The device properties a backend reads, validated; empty properties count as unset.

    Raises :class:`BackendError` naming each bad property, then ``hint``.
    """
    try:
        return model.model_validate(
            {key: value for key, value in options.items() if value not in (None, "", [])}
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BackendError(f"{backend} properties: {problems}{hint}") from None


BACKENDS: dict[str, str] = {
    "simulator": "devices.backends.simulator:SimulatorBackend",
    "pilatus": "devices.backends.pilatus:PilatusBackend",
    "eiger": "devices.backends.eiger:EigerBackend",
    "lambda": "devices.backends.lambda_:LambdaBackend",
    "andor": "devices.backends.camera:AndorBackend",
    "hamamatsu": "devices.backends.camera:HamamatsuBackend",
}
"""Backend name (the ``Backend`` device property) -> ``module:class``, imported on demand."""


def create_backend(name: str, options: Mapping[str, Any]) -> Backend:
    """Build backend ``name`` from the device properties in ``options``."""
    try:
        target = BACKENDS[name.lower()]
    except KeyError:
        raise BackendError(
            f"unknown backend {name!r}: set the Backend property to one of {', '.join(BACKENDS)}"
        ) from None
    module_name, _, class_name = target.partition(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(backend_class, type) and issubclass(backend_class, Backend)):
        raise BackendError(f"{target} is not a Backend")
    return backend_class.from_options(options)

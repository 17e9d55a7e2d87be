"""The one interface camera-streamer needs of a camera SDK (Andor SDK3, Hamamatsu DCAM).

camera-streamer has one code path (:mod:`streamers.camera_stream`); what
differs between the SDKs - feature names, trigger names, buffer handling,
packed pixel layouts - sits in one adapter per SDK behind this interface:
``streamers/camera_andor.py`` and ``streamers/camera_dcam.py``.

An adapter is used from two threads: the streamer's series thread reads
frames (:meth:`CameraAdapter.next_frame`) while the control thread may
trigger or stop. Every SDK failure is raised as :class:`CameraError` with the
SDK's own words; settings the camera cannot take as :class:`CameraRefused`,
with the camera's limits in the text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from protocols.camera_control import CameraArm, CameraTrigger
from protocols.model import Buffer


class CameraError(RuntimeError):
    """The SDK failed (the camera is gone, a call refused); the text is the SDK's."""


class CameraRefused(CameraError):
    """Settings the camera cannot take; the text names the limit and the camera's numbers."""


@dataclass(frozen=True, slots=True)
class CameraFrame:
    """One frame as it goes on the wire: its number in the series and its blob.

    ``blob`` is the image in the adapter's :attr:`CameraAdapter.wire_format`
    (C-order pixels for ``none``; packed 12-bit for ``mono12p`` or
    ``mono12packed``), a buffer of its own: the SDK's buffer is already
    given back.
    """

    number: int
    blob: Buffer


class CameraAdapter(ABC):
    sdk: str
    """'andor' or 'dcam'."""
    model: str
    serial: str
    sensor_shape: tuple[int, int]
    triggers: frozenset[CameraTrigger]

    @property
    @abstractmethod
    def image_shape(self) -> tuple[int, int]:
        """Rows and columns of the frames the current settings give."""

    @property
    @abstractmethod
    def wire_format(self) -> str:
        """The STINS ``compression`` of the frames: ``none`` (uint16) or a packed form."""

    @abstractmethod
    def configure(self, arm: CameraArm) -> None:
        """Set the camera up for one series; CameraRefused with its limits when it cannot."""

    @abstractmethod
    def start(self) -> None:
        """Start the acquisition; frames come from :meth:`next_frame`."""

    @abstractmethod
    def next_frame(self, timeout_s: float) -> CameraFrame | None:
        """The next frame, or None when none came within ``timeout_s``."""

    @abstractmethod
    def software_trigger(self) -> None:
        """One frame, in the SOFTWARE trigger mode."""

    @abstractmethod
    def stop(self) -> None:
        """End the acquisition; a thread waiting in :meth:`next_frame` returns."""

    @abstractmethod
    def close(self) -> None:
        """Give the camera back to the SDK; the adapter is not used again."""

"""One series on the wire in each protocol the generator speaks: header, frames, end.

The encoders are the receiver's own (``protocols``), so producer and
consumer share one definition; this module only fills in what a detector
would announce (a plausible configuration, series ids, frame numbers). One
object per series: :func:`series_messages` builds it from the generator's
settings and the series' number in the stream.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from protocols import eiger_stream1, eiger_stream2, sls, stins
from protocols.model import Buffer

PIXEL_SIZE_M = 75e-6
PHOTON_ENERGY_EV = 8000.0
COUNTRATE_TABLE_ROWS = 1000


class SeriesMessages(Protocol):
    """The message parts of one series; ``image`` takes one blob per channel."""

    def header(self, filename: str) -> list[Buffer]: ...

    def image(self, frame: int, blobs: Sequence[Buffer]) -> list[Buffer]: ...

    def end(self) -> list[Buffer]: ...


class Settings(Protocol):
    """What of the generator's settings a series needs (see sim.generator.GeneratorSettings).

    Read-only, as a series only reads them; so the frozen settings model, whose
    fields are narrower (``Literal``) types, fits.
    """

    @property
    def protocol(self) -> str: ...
    @property
    def frames(self) -> int: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def compression(self) -> str: ...
    @property
    def meta(self) -> dict[str, Any] | None: ...
    @property
    def header_detail(self) -> str: ...
    @property
    def thresholds(self) -> int: ...
    @property
    def series_id(self) -> int: ...
    @property
    def rate(self) -> float: ...


class StinsSeries:
    """STINS: every message numbered by ``number()``, which runs on across series."""

    def __init__(self, settings: Settings, number: Callable[[], int]) -> None:
        self.s = settings
        self._number = number

    def header(self, filename: str) -> list[Buffer]:
        return list(stins.encode_header(self._number(), filename, self.s.meta))

    def image(self, frame: int, blobs: Sequence[Buffer]) -> list[Buffer]:
        s = self.s
        return stins.encode_image(self._number(), frame, blobs[0], s.shape, s.dtype, s.compression)

    def end(self) -> list[Buffer]:
        return list(stins.encode_series_end(self._number()))


def _exposure(settings: Settings) -> tuple[float, float]:
    """(count_time, frame_time) in s: the frame period of the rate, 1 ms when unpaced."""
    frame_time = 1.0 / settings.rate if settings.rate > 0 else 0.001
    return frame_time * 0.99, frame_time


class DectrisV1Series:
    """Dectris stream v1 as an Eiger sends it for one arm (series id ``series``)."""

    def __init__(self, settings: Settings, series: int) -> None:
        self.s = settings
        self.series = series

    def config(self) -> dict[str, Any]:
        s = self.s
        count_time, frame_time = _exposure(s)
        height, width = s.shape
        config = {
            "bit_depth_image": np.dtype(s.dtype).itemsize * 8,
            "compression": "bslz4" if s.compression == "bslz4" else "none",
            "count_time": count_time,
            "description": "Dectris EIGER simulated by daq-generator",
            "detector_number": "SIM-0001",
            "frame_time": frame_time,
            "nimages": s.frames,
            "ntrigger": 1,
            "photon_energy": PHOTON_ENERGY_EV,
            "sensor_material": "Si",
            "threshold_energy": PHOTON_ENERGY_EV / 2,
            "trigger_mode": "ints",
            "x_pixel_size": PIXEL_SIZE_M,
            "x_pixels_in_detector": width,
            "y_pixel_size": PIXEL_SIZE_M,
            "y_pixels_in_detector": height,
        }
        return config | (s.meta or {})

    def tables(self) -> dict[str, np.ndarray]:
        """Flatfield, pixel mask and countrate table, as ``header_detail`` ``all`` sends them."""
        shape = self.s.shape
        counts = np.arange(COUNTRATE_TABLE_ROWS, dtype=np.float32)
        return {
            "flatfield": np.ones(shape, dtype=np.float32),
            "pixel_mask": np.zeros(shape, dtype=np.uint32),
            "countrate_table": np.stack([counts, counts * 1.01]),
        }

    def header(self, filename: str) -> list[Buffer]:
        detail = self.s.header_detail
        return list(
            eiger_stream1.encode_header(
                self.series,
                detail,
                config=self.config() if detail != "none" else None,
                appendix=json.dumps({"filename": filename, "rotate": 0}),
                tables=self.tables() if detail == "all" else None,
            )
        )

    def image(self, frame: int, blobs: Sequence[Buffer]) -> list[Buffer]:
        s = self.s
        count_time, frame_time = _exposure(s)
        start = round(frame * frame_time * 1e9)
        times = (start, start + round(count_time * 1e9), round(count_time * 1e9))
        return eiger_stream1.encode_image(
            self.series, frame, blobs[0], s.shape, s.dtype, s.compression, times
        )

    def end(self) -> list[Buffer]:
        return list(eiger_stream1.encode_series_end(self.series))


class DectrisV2Series:
    """Dectris stream v2 (CBOR), ``thresholds`` channels per frame."""

    TIME_BASE = 100_000_000

    def __init__(self, settings: Settings, series: int) -> None:
        self.s = settings
        self.series = series
        self.unique_id = f"SIM{uuid.uuid4().hex[:23].upper()}"
        self.channels = [f"threshold_{c + 1}" for c in range(settings.thresholds)]

    def header(self, filename: str) -> list[Buffer]:
        s = self.s
        count_time, frame_time = _exposure(s)
        config: dict[str, Any] = {
            "count_time": count_time,
            "detector_description": "Dectris EIGER2 simulated by daq-generator",
            "detector_serial_number": "SIM-0002",
            "frame_time": frame_time,
            "incident_energy": PHOTON_ENERGY_EV,
            "pixel_size_x": PIXEL_SIZE_M,
            "pixel_size_y": PIXEL_SIZE_M,
            "sensor_material": "Si",
            "threshold_energy": {
                name: PHOTON_ENERGY_EV / 2 * (c + 1) for c, name in enumerate(self.channels)
            },
        }
        return list(
            eiger_stream2.encode_start(
                self.series,
                self.unique_id,
                number_of_images=s.frames,
                shape=s.shape,
                channels=self.channels,
                user_data=json.dumps({"filename": filename, "rotate": 0}),
                config=config | (s.meta or {}),
            )
        )

    def image(self, frame: int, blobs: Sequence[Buffer]) -> list[Buffer]:
        s = self.s
        count_time, frame_time = _exposure(s)
        start = round(frame * frame_time * self.TIME_BASE)
        real = round(count_time * self.TIME_BASE)
        return list(
            eiger_stream2.encode_image(
                self.series,
                self.unique_id,
                frame,
                dict(zip(self.channels, blobs, strict=True)),
                s.shape,
                s.dtype,
                s.compression,
                (start, start + real, real),
                self.TIME_BASE,
            )
        )

    def end(self) -> list[Buffer]:
        return list(eiger_stream2.encode_end(self.series, self.unique_id))


class SlsSeries:
    """One acquisition of one SLS module: frames only, then the ``data`` 0 end marker."""

    def __init__(self, settings: Settings, file_index: int, first_frame_number: int) -> None:
        self.s = settings
        self.file_index = file_index
        self.first_frame_number = first_frame_number
        self._filename = ""

    def header(self, filename: str) -> list[Buffer]:
        """The SLS stream has no header message: the file name rides on every frame."""
        self._filename = filename
        return []

    def image(self, frame: int, blobs: Sequence[Buffer]) -> list[Buffer]:
        s = self.s
        return sls.encode_image(
            frame,
            blobs[0],
            s.shape,
            s.dtype,
            frames=s.frames,
            first_frame_number=self.first_frame_number,
            file_index=self.file_index,
            fname="run",
            add_json_header={"filename": self._filename},
        )

    def end(self) -> list[Buffer]:
        return list(sls.encode_end())


def series_messages(
    settings: Settings, index: int, number: Callable[[], int], frames_before: int
) -> SeriesMessages:
    """The messages of series ``index`` (0-based) of the stream, in ``settings.protocol``.

    ``number`` gives the STINS message number; ``frames_before`` counts the
    frames the stream sent in earlier series (SLS frame numbers run on).
    """
    protocol = settings.protocol
    if protocol == "stins":
        return StinsSeries(settings, number)
    if protocol == "dectris-v1":
        return DectrisV1Series(settings, settings.series_id + index)
    if protocol == "dectris-v2":
        return DectrisV2Series(settings, settings.series_id + index)
    if protocol == "sls":
        return SlsSeries(settings, settings.series_id + index, 1 + frames_before)
    raise ValueError(f"unknown protocol {protocol!r}")

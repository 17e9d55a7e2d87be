"""What the simulated Eiger tells its data stream: series start, images, series end.

The acquisition thread calls a :class:`StreamSink`; the sink turns the calls
into wire messages. A Dectris stream v1 sink (``dheader-1.0`` / ``dimage-1.0``
/ ``dseries_end-1.0`` on ZeroMQ PUSH port 9999) and a v2 sink (CBOR ``start``
/ ``image`` / ``end`` on port 31001) plug in here; one sink can serve both by
looking at :attr:`SeriesConfig.format`, which the detector latches at arm as
it latches everything else. :class:`RecordingSink` keeps the calls for tests,
:class:`NullSink` only logs them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SeriesConfig:
    """Everything a stream encoder needs for the header of one series, latched at arm.

    ``detector`` holds the detector configuration at arm exactly as the
    ``dheader-1.0`` configuration part carries it: the keys of the real
    capture in ``tests/data``, sorted, with their current values (the
    defaults are the capture's; ``data_collection_date`` is the arm time).
    ``extra_config`` holds the other detector settings (``threshold/1/energy``,
    ``threshold/1/mode``, ``counting_mode``), ``pixel_mask`` the mask
    (``dpixelmask-1.0``, uint32, (y, x), read-only). ``stream`` is the stream
    configuration (``mode``, ``header_detail``, ``header_appendix``,
    ``image_appendix``, ``format``).
    """

    series_unique_id: str
    """A ULID, as stream v2's ``series_unique_id``."""
    arm_date: datetime
    """Time of the arm command, with its time zone (stream v2 ``arm_date``)."""
    number_of_images: int
    """Images the series will have when it completes: nimages x ntrigger, or ntrigger in inte/exte."""
    detector: dict[str, Any]
    stream: dict[str, Any]
    extra_config: dict[str, Any]
    pixel_mask: np.ndarray

    @property
    def header_detail(self) -> str:
        return str(self.stream["header_detail"])

    @property
    def header_appendix(self) -> str:
        return str(self.stream["header_appendix"])

    @property
    def image_appendix(self) -> str:
        return str(self.stream["image_appendix"])

    @property
    def format(self) -> str:
        """``legacy`` (stream v1, JSON multipart) or ``cbor`` (stream v2)."""
        return str(self.stream["format"])

    @property
    def shape(self) -> tuple[int, int]:
        """(y, x) of one image, numpy order."""
        return (self.detector["y_pixels_in_detector"], self.detector["x_pixels_in_detector"])

    @property
    def image_dtype(self) -> str:
        return "uint32" if self.detector["bit_depth_image"] > 16 else "uint16"


@dataclass(frozen=True, slots=True)
class ImageTiming:
    """When one image was exposed, in ns from the arm of its series.

    ``real_ns`` is the time the pixels counted: the exposure less the readout
    gaps of the summed subframes (auto summation), as the detector reports it
    in ``dconfig-1.0`` ``real_time``.
    """

    start_ns: int
    stop_ns: int
    real_ns: int


class StreamSink(Protocol):
    """Called from the detector's acquisition thread, never with a detector lock held.

    An exception from any method puts the detector in state ``error`` with
    the exception's text in ``detector/status/error``, as a stream fault does.
    """

    def start_series(self, config: SeriesConfig, series: int) -> None:
        """At arm, before the arm command answers (the header goes out)."""
        ...

    def image(self, series: int, frame: int, timing: ImageTiming) -> bool:
        """One image taken; ``frame`` counts from 0 within the series.

        Returns False when the image could not be sent (nobody pulling, buffer
        full): the detector counts it in ``stream/status/dropped``.
        """
        ...

    def end_series(self, series: int) -> None:
        """Once per started series: after its last image, or on disarm, cancel,
        abort or initialize, before that command answers."""
        ...


@dataclass(frozen=True, slots=True)
class RecordedImage:
    series: int
    frame: int
    timing: ImageTiming


class RecordingSink:
    """Keeps every call, for tests; ``deliver=False`` makes it drop images."""

    def __init__(self, deliver: bool = True) -> None:
        self.deliver = deliver
        self._lock = threading.Lock()
        self._starts: dict[int, SeriesConfig] = {}
        self._images: list[RecordedImage] = []
        self._ends: list[int] = []

    def start_series(self, config: SeriesConfig, series: int) -> None:
        with self._lock:
            self._starts[series] = config

    def image(self, series: int, frame: int, timing: ImageTiming) -> bool:
        with self._lock:
            self._images.append(RecordedImage(series, frame, timing))
        return self.deliver

    def end_series(self, series: int) -> None:
        with self._lock:
            self._ends.append(series)

    def config(self, series: int) -> SeriesConfig:
        with self._lock:
            return self._starts[series]

    @property
    def series(self) -> list[int]:
        """Series started, in order."""
        with self._lock:
            return list(self._starts)

    def images(self, series: int) -> list[RecordedImage]:
        with self._lock:
            return [image for image in self._images if image.series == series]

    @property
    def ended(self) -> list[int]:
        """Series ended, in order (one entry per end_series call)."""
        with self._lock:
            return list(self._ends)


class NullSink:
    """No stream: logs series starts and ends, forgets images."""

    def start_series(self, config: SeriesConfig, series: int) -> None:
        logger.info(
            "series %d armed: %d image(s), header_detail %s, format %s (no stream attached)",
            series,
            config.number_of_images,
            config.header_detail,
            config.format,
        )

    def image(self, series: int, frame: int, timing: ImageTiming) -> bool:
        return True

    def end_series(self, series: int) -> None:
        logger.info("series %d ended", series)

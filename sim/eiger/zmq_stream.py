"""The simulated Eiger's data stream: Dectris stream v1 or v2 on a ZeroMQ PUSH socket.

It is the :class:`~sim.eiger.stream.StreamSink` the detector calls at arm,
for every image and at the series end, and it sends what a detector control
unit sends: the format (``legacy`` = v1, ``cbor`` = v2), header detail,
appendices and configuration as the REST API has set them, and real bslz4
frames whose pixels tell their frame number (:mod:`sim.frames`). The
encoders are the receiver's own (``protocols``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import zmq

from protocols import eiger_stream1, eiger_stream2
from protocols.model import Buffer
from sim.eiger.stream import ImageTiming, SeriesConfig
from sim.frames import encoded_frame

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:9999"
SEND_TIMEOUT_MS = 1000
COUNTRATE_TABLE_ROWS = 4000
"""Rows of the countrate table, as the real EIGER1 capture has them."""
V2_TIME_BASE = 1_000_000_000
CHANNEL = "threshold_1"


class StreamError(RuntimeError):
    """The stream socket could not bind; the text names the endpoint."""


class ZmqStreamSink:
    """Binds ``endpoint`` (port ``*`` for a free one) and streams every series there."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, send_hwm: int = 100) -> None:
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUSH)
        self._socket.sndhwm = send_hwm
        self._socket.sndtimeo = SEND_TIMEOUT_MS
        self._socket.linger = 0
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close()
            self._context.term()
            raise StreamError(
                f"cannot bind the Eiger stream on {endpoint}: {exc.strerror}"
            ) from None
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._lock = threading.Lock()
        self._configs: dict[int, SeriesConfig] = {}

    def start_series(self, config: SeriesConfig, series: int) -> None:
        with self._lock:
            self._configs[series] = config
        if config.stream["mode"] != "enabled":
            return
        self._send(self._header(config, series), what="the header")

    def image(self, series: int, frame: int, timing: ImageTiming) -> bool:
        config = self._configs[series]
        if config.stream["mode"] != "enabled":
            return True
        blob = encoded_frame(frame, config.shape, config.image_dtype, "bslz4")
        try:
            self._send(self._image(config, series, frame, blob, timing), what=f"image {frame}")
        except StreamError:
            return False
        return True

    def end_series(self, series: int) -> None:
        with self._lock:
            config = self._configs.pop(series)
        if config.stream["mode"] != "enabled":
            return
        if config.format == "cbor":
            parts = eiger_stream2.encode_end(series, config.series_unique_id)
        else:
            parts = eiger_stream1.encode_series_end(series)
        self._send(parts, what="the series end")

    def close(self) -> None:
        self._socket.close()
        self._context.term()

    def _header(self, config: SeriesConfig, series: int) -> list[bytes]:
        if config.format == "cbor":
            return eiger_stream2.encode_start(
                series,
                config.series_unique_id,
                number_of_images=config.number_of_images,
                shape=config.shape,
                user_data=config.header_appendix,
                config=_v2_config(config),
            )
        detail = config.header_detail
        return eiger_stream1.encode_header(
            series,
            detail,
            config=config.detector if detail != "none" else None,
            appendix=config.header_appendix,
            tables=_tables(config) if detail == "all" else None,
        )

    def _image(
        self, config: SeriesConfig, series: int, frame: int, blob: Buffer, timing: ImageTiming
    ) -> Sequence[Buffer]:
        times = (timing.start_ns, timing.stop_ns, timing.real_ns)
        if config.format == "cbor":
            return eiger_stream2.encode_image(
                series,
                config.series_unique_id,
                frame,
                {CHANNEL: blob},
                config.shape,
                config.image_dtype,
                "bslz4",
                times,
                V2_TIME_BASE,
                series_date=config.arm_date,
            )
        return eiger_stream1.encode_image(
            series,
            frame,
            blob,
            config.shape,
            config.image_dtype,
            "bslz4",
            times,
            config.image_appendix or None,
        )

    def _send(self, parts: Sequence[Buffer], what: str) -> None:
        try:
            self._socket.send_multipart(parts, copy=False)
        except zmq.Again:
            raise StreamError(
                f"nobody took {what} from the stream on {self.endpoint} within "
                f"{SEND_TIMEOUT_MS / 1000:g} s: is a receiver connected?"
            ) from None


def _v2_config(config: SeriesConfig) -> dict[str, Any]:
    """The detector keys of a stream v2 ``start`` message, as the real capture has them."""
    detector, tables = config.detector, _tables(config)
    shape = config.shape
    return {
        "beam_center_x": detector["beam_center_x"],
        "beam_center_y": detector["beam_center_y"],
        "count_time": detector["count_time"],
        "countrate_correction_enabled": detector["countrate_correction_applied"],
        "countrate_correction_lookup_table": eiger_stream2.typed_array(
            np.arange(COUNTRATE_TABLE_ROWS, dtype=np.uint32).tobytes(), "uint32"
        ),
        "detector_description": detector["description"],
        "detector_serial_number": detector["detector_number"],
        "detector_translation": [0.0, 0.0, detector["detector_distance"]],
        "flatfield": {
            CHANNEL: eiger_stream2.multi_dim_array(tables["flatfield"].tobytes(), shape, "float32")
        },
        "flatfield_enabled": detector["flatfield_correction_applied"],
        "frame_time": detector["frame_time"],
        "incident_energy": detector["photon_energy"],
        "incident_wavelength": detector["wavelength"],
        "pixel_mask": {
            CHANNEL: eiger_stream2.multi_dim_array(tables["pixel_mask"].tobytes(), shape, "uint32")
        },
        "pixel_mask_enabled": detector["pixel_mask_applied"],
        "pixel_size_x": detector["x_pixel_size"],
        "pixel_size_y": detector["y_pixel_size"],
        "saturation_value": detector["countrate_correction_count_cutoff"],
        "sensor_material": detector["sensor_material"],
        "sensor_thickness": detector["sensor_thickness"],
        "threshold_energy": {CHANNEL: detector["threshold_energy"]},
        "virtual_pixel_interpolation_enabled": detector["virtual_pixel_correction_applied"],
    }


def _tables(config: SeriesConfig) -> dict[str, np.ndarray]:
    """What ``header_detail`` ``all`` sends besides the configuration."""
    counts = np.arange(COUNTRATE_TABLE_ROWS, dtype=np.float32)
    return {
        "flatfield": np.ones(config.shape, dtype=np.float32),
        "pixel_mask": np.asarray(config.pixel_mask, dtype=np.uint32),
        "countrate_table": np.stack([counts, counts * 1.01]),
    }

"""A multi-module detector's streams: one STINS stream per module, each from its own socket.

As MAX IV's Lambda streamers send them (docs/protocols.md#multi-module-stins):
each module stream numbers its own messages (header, frames,
series end, so the streams carry the same ``msg_number`` for the same
message); the header's 2nd part places the module (``x``, ``y``,
``rotation`` in degrees, ``full_shape``); each image announces the stack of
all modules, ``shape`` [K, H, W] with ``chunks`` [1, H, W], and its blob is
this module's plane. The pixels of module k's frame n are its part of the
synthetic full frame n (:func:`sim.frames.synthetic_frame` of the full
shape), so an assembled frame can be compared with the full frame.

Every module is sent from its own thread, paced on its own, as the
streamers of separate DCUs would; :class:`ModuleStreams` waits for all of
them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from types import TracebackType
from typing import Self

import numpy as np
import zmq

from protocols import bslz4, stins
from protocols.model import Buffer
from sim.frames import synthetic_frame
from sim.generator import GeneratorSettings, SeriesStats, StreamGenerator, frame_order
from sim.geometry import Geometry, ModulePlace, module_pixels

log = logging.getLogger(__name__)

FULL_FRAMES_CACHED = 8


def module_endpoints(endpoint: str, names: list[str]) -> dict[str, str]:
    """Module k's endpoint: ``tcp://host:P`` gives ports P, P+1, ...; port ``*`` free ones.

    MAX IV's Lambda streams use 9010..9013. Other transports get ``-<name>`` appended.
    """
    base, _, port = endpoint.rpartition(":")
    if endpoint.startswith("tcp://") and port.isdigit():
        return {name: f"{base}:{int(port) + k}" for k, name in enumerate(names)}
    if endpoint.startswith("tcp://") and port == "*":
        return dict.fromkeys(names, endpoint)
    return {name: f"{endpoint}-{name}" for name in names}


@lru_cache(maxsize=FULL_FRAMES_CACHED)
def full_frame(frame: int, full_shape: tuple[int, int], dtype: str) -> np.ndarray:
    """Synthetic full frame ``frame``, shared (read-only) by the module threads."""
    pixels = synthetic_frame(frame, full_shape, dtype)
    pixels.setflags(write=False)
    return pixels


class ModuleStreams:
    """The module streams of one detector (or of the one module ``settings.module`` names)."""

    def __init__(
        self, settings: GeneratorSettings, context: zmq.Context[zmq.Socket[bytes]] | None = None
    ) -> None:
        geometry = settings.module_geometry
        if geometry is None:
            raise ValueError("ModuleStreams needs settings with modules or a geometry")
        self.settings = settings
        self.geometry: Geometry = geometry
        names = [settings.module] if settings.module else geometry.names()
        endpoints = (
            {settings.module: settings.endpoint}
            if settings.module
            else module_endpoints(settings.endpoint, names)
        )
        self._places = {m.name: (k, m) for k, m in enumerate(geometry.modules)}
        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        self._streams: dict[str, StreamGenerator] = {}
        self._numbers = dict.fromkeys(names, 0)
        try:
            for name in names:
                plain = settings.model_copy(
                    update={"endpoint": endpoints[name], "modules": 0, "geometry": None}
                )
                self._streams[name] = StreamGenerator(plain, self._context)
        except BaseException:
            self.close()
            raise
        for name, stream in self._streams.items():
            log.info("module %s: %s", name, stream.endpoint)

    @property
    def endpoints(self) -> dict[str, str]:
        """Each module's endpoint, with the port the system chose when asked for ``*``."""
        return {name: stream.endpoint for name, stream in self._streams.items()}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for stream in self._streams.values():
            stream.close()
        if self._own_context:
            self._context.term()

    def send_series(self, filename: str | None = None) -> SeriesStats:
        """Send one series on every module stream at once; return when all were taken.

        Raises :class:`sim.generator.DeliveryTimeout` when a module's receiver
        does not take its data within ``timeout_s``.
        """
        s = self.settings
        name = s.filename if filename is None else filename
        log.info(
            "series on %d module streams: %d frames of %s %s (%s) each, file %r",
            len(self._streams),
            s.frames,
            "x".join(map(str, s.shape)),
            s.dtype,
            s.compression,
            name,
        )
        start = time.monotonic()
        with ThreadPoolExecutor(len(self._streams), thread_name_prefix="module") as pool:
            futures = [
                pool.submit(stream.send_raw, self._messages(module, name), s.rate)
                for module, stream in self._streams.items()
            ]
            sent = [future.result() for future in futures]
        stats = SeriesStats(s.frames, sum(x.nbytes for x in sent), time.monotonic() - start)
        log.info("series sent: %d frames per module in %.3f s", stats.frames, stats.seconds)
        return stats

    def _messages(self, module: str, filename: str) -> Iterator[list[Buffer]]:
        """The messages of ``module``'s stream for one series, made as they are sent."""
        s = self.settings
        geometry = self.geometry
        _, place = self._places[module]
        yield stins.encode_header(self._number(module), filename, self._meta(place))
        stacked = [len(geometry.modules), *s.shape]
        chunks = [1, *s.shape]
        for frame in frame_order(s.frames, s.out_of_order, s.seed):
            pixels = module_pixels(full_frame(frame, geometry.full_shape, s.dtype), place, s.shape)
            blob = bslz4.compress(pixels) if s.compression == "bslz4" else pixels.data.cast("B")
            yield stins.encode_image(
                self._number(module), frame, blob, stacked, s.dtype, s.compression, chunks=chunks
            )
        yield stins.encode_series_end(self._number(module))

    def _meta(self, place: ModulePlace) -> dict[str, object]:
        """The header's 2nd part: the settings' metadata and the module's placement."""
        return {
            **(self.settings.meta or {}),
            "x": place.x,
            "y": place.y,
            "rotation": place.rotation % 4 * 90,
            "full_shape": list(self.geometry.full_shape),
        }

    def _number(self, module: str) -> int:
        number = self._numbers[module]
        self._numbers[module] = number + 1
        return number

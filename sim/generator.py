"""The data generator: sends series of synthetic frames over a ZeroMQ PUSH socket.

It stands in for a detector control unit: it binds (the receiver's PULL
connects) and sends frames whose pixels tell their frame number
(:mod:`sim.frames`), so whoever stores them can be checked. It speaks STINS
(every message numbered with ``msg_number``), Dectris stream v1 and v2 and
the SLS stream (:mod:`sim.series`); :meth:`StreamGenerator.send_raw` sends
recorded messages as they are (``daq-replay``). A multi-module detector
(one STINS stream per module, :mod:`sim.geometry`) is sent by
:class:`sim.module_streams.ModuleStreams`. The settings are one pydantic
model validated at the edge; the CLI in :mod:`sim.generator_cli` only maps
flags onto it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np
import zmq
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)

from protocols.model import Buffer
from sim.frames import encoded_frame
from sim.geometry import Geometry, default_geometry
from sim.series import SeriesMessages, series_messages

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:9999"

PixelType = Literal["uint8", "uint16", "uint32", "int32", "float32"]
Compression = Literal["none", "bslz4"]
StreamProtocol = Literal["stins", "dectris-v1", "dectris-v2", "sls"]
HeaderDetail = Literal["all", "basic", "none"]
SLS_TYPES = ("uint8", "uint16", "uint32")


class GeneratorError(RuntimeError):
    """The generator could not deliver its stream; the text says what to check."""


class EndpointError(GeneratorError):
    """The socket could not bind or connect to the endpoint asked for."""


class DeliveryTimeout(GeneratorError):
    """No receiver took the data within ``timeout_s``."""


class GeneratorSettings(BaseModel):
    """What to send and where; checked once, before any socket is opened."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(
        DEFAULT_ENDPOINT,
        description="ZeroMQ endpoint; port * binds to a free port (see StreamGenerator.endpoint)",
    )
    protocol: StreamProtocol = Field("stins", description="wire protocol of the stream")
    header_detail: HeaderDetail = Field(
        "basic", description="Dectris stream v1: what the header carries, as the Eiger's setting"
    )
    thresholds: int = Field(
        1, ge=1, le=4, description="Dectris stream v2: channels (thresholds) per frame"
    )
    series_id: int = Field(
        1, ge=0, description="Dectris series id / SLS file index of the first series; +1 per series"
    )
    connect: bool = Field(False, description="connect to a bound receiver instead of binding")
    frames: int = Field(100, ge=0, description="frames per series")
    rate: float = Field(0.0, ge=0, allow_inf_nan=False, description="frames/s; 0 = at once")
    shape: tuple[PositiveInt, ...] = Field((512, 512), min_length=1, description="C order")
    dtype: PixelType = "uint16"
    compression: Compression = "none"
    filename: str = Field("", description='file the receiver writes; "" = live view only')
    meta: dict[str, Any] | None = Field(
        None, description="header part 2, stored by the receiver in the NXdetector group"
    )
    out_of_order: bool = Field(False, description="send frames in a seeded shuffled order")
    seed: int = Field(0, description="seed of the out-of-order shuffle")
    distinct_frames: int = Field(
        0,
        ge=0,
        description="0: every frame distinct; K: frame k carries the pixels of frame k mod K, "
        "encoded once, so the benchmark measures the receiver and not the generator",
    )
    send_hwm: int = Field(
        100, ge=1, description="messages queued per peer; bounds memory at 20 MB frames"
    )
    timeout_s: float = Field(
        10.0, gt=0, allow_inf_nan=False, description="wait for a peer / for delivery at the end"
    )
    modules: int = Field(
        0,
        ge=0,
        le=16,
        description="0: one stream; K: a detector of K modules, one STINS stream each, whose "
        "frames are the modules' parts of the synthetic full frame (shape = a module's)",
    )
    geometry: Geometry | None = Field(
        None,
        description="where the modules sit in the full image; default: the windmill for 4 "
        "modules (ForMAX's Lambda), a row for other counts",
    )
    module: str | None = Field(
        None, description="send this module's stream only (one process per module's streamer)"
    )
    share: tuple[NonNegativeInt, PositiveInt] | None = Field(
        None,
        description="(k, n): send only the messages whose msg_number is k modulo n, as one of "
        "n DCUs sharing one STINS stream (load balancing: MAX IV's list of dcu_host_purple); "
        "n generators with k = 0 .. n-1 send the whole stream between them",
    )

    @model_validator(mode="after")
    def _fits_the_protocol(self) -> GeneratorSettings:
        """Refuse what the chosen protocol cannot carry, naming the protocol."""
        if self.protocol != "stins" and len(self.shape) != 2:
            raise ValueError(f"{self.protocol} frames have 2 dimensions, got shape {self.shape}")
        if self.thresholds > 1 and self.protocol != "dectris-v2":
            raise ValueError("several thresholds need protocol dectris-v2")
        if self.protocol == "sls" and (self.compression != "none" or self.dtype not in SLS_TYPES):
            raise ValueError(
                f"the SLS stream sends raw {', '.join(SLS_TYPES)} pixels, not "
                f"{self.compression} {self.dtype}"
            )
        return self

    @model_validator(mode="after")
    def _share_of_one_stream(self) -> GeneratorSettings:
        if self.share is None:
            return self
        part, parts = self.share
        if part >= parts:
            raise ValueError(f"share {part}/{parts}: the part must be below {parts}")
        if self.protocol != "stins" or self.modules or self.module or self.geometry:
            raise ValueError(
                "a share of a stream is a STINS stream of one detector: the parts are told "
                "apart by msg_number"
            )
        return self

    @model_validator(mode="after")
    def _modules_fit(self) -> GeneratorSettings:
        if not (self.modules or self.geometry or self.module):
            return self
        if self.protocol != "stins" or len(self.shape) != 2 or self.thresholds != 1:
            raise ValueError("module streams are STINS streams of 2-D frames, one threshold")
        if self.distinct_frames:
            raise ValueError("distinct frames are for one stream, not module streams")
        geometry = self.module_geometry
        if geometry is None:
            raise ValueError("a module is named but no modules are asked for: set modules")
        if self.modules and self.geometry and len(self.geometry.modules) != self.modules:
            raise ValueError(
                f"the geometry has {len(self.geometry.modules)} modules, not {self.modules}"
            )
        geometry.check_fits(self.shape)
        if self.module is not None and self.module not in geometry.names():
            raise ValueError(
                f"there is no module {self.module!r}; the modules are {', '.join(geometry.names())}"
            )
        return self

    @property
    def module_geometry(self) -> Geometry | None:
        """The modules' placement: the geometry given, the default one, or None (one stream)."""
        if self.geometry is not None:
            return self.geometry
        if self.modules:
            return default_geometry(self.modules, self.shape)
        return None

    @field_validator("endpoint")
    @classmethod
    def _looks_like_endpoint(cls, value: str) -> str:
        """Catch a bare host:port early, with an example, instead of a terse ZeroMQ error."""
        transport, sep, address = value.partition("://")
        if not (sep and transport and address):
            raise ValueError(f"{value!r} is not a ZeroMQ endpoint such as {DEFAULT_ENDPOINT}")
        return value


@dataclass(frozen=True, slots=True)
class SeriesStats:
    """What one or more series sent, for the summary line and the benchmark."""

    frames: int
    nbytes: int
    seconds: float

    @property
    def frames_per_s(self) -> float:
        """Frames per second; 0 when no time has passed, so a summary never divides by zero."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def __add__(self, other: SeriesStats) -> SeriesStats:
        return SeriesStats(
            self.frames + other.frames, self.nbytes + other.nbytes, self.seconds + other.seconds
        )


class Pacer:
    """Holds frame ``i`` back until ``start + i / rate``.

    Deadlines are absolute from the series start on a monotonic clock, so a
    late frame is followed by catch-up instead of shifting every later frame
    (no drift), and wall-clock jumps do not matter.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._period = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._start = clock()

    def wait(self, index: int) -> None:
        """Return when frame ``index`` is due (at once when the rate is 0 or the frame is late)."""
        if not self._period:
            return
        delay = self._start + index * self._period - self._clock()
        if delay > 0:
            self._sleep(delay)


def frame_order(frames: int, out_of_order: bool, seed: int) -> list[int]:
    """Trigger indices in sending order; shuffled with ``seed`` so a test can reproduce it."""
    if not out_of_order:
        return list(range(frames))
    order: list[int] = np.random.default_rng(seed).permutation(frames).tolist()
    return order


class StreamGenerator:
    """One PUSH socket sending one or more series as one stream.

    ``msg_number`` runs on across series, as it does for a detector that is
    armed several times, so a receiver sees one continuous stream. Use it as a
    context manager: closing waits (at most ``timeout_s``) for queued data.
    With ``share`` (k, n) it numbers every message but sends only its share,
    those numbered k modulo n, as one of n DCUs balancing one stream.
    """

    def __init__(
        self, settings: GeneratorSettings, context: zmq.Context[zmq.Socket[bytes]] | None = None
    ) -> None:
        self.settings = settings
        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        self._msg_number = 0
        self._series_sent = 0
        self._frames_sent = 0
        self._failed = False
        self._tracker: zmq.MessageTracker | None = None
        try:
            self._socket = self._open_socket()
        except EndpointError:
            self._close_context()
            raise
        self._endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        log.debug("%s %s", "connected to" if settings.connect else "bound to", self.endpoint)

    @property
    def endpoint(self) -> str:
        """The endpoint in use, with the port the system chose when asked for ``*``."""
        return self._endpoint

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def send_series(self, filename: str | None = None) -> SeriesStats:
        """Send header, images and series_end; return once the receiver has taken them all.

        ``filename`` overrides the settings' file name, so several series can
        go to several files on one socket. Raises :class:`DeliveryTimeout`
        when no receiver takes the data within ``timeout_s``.
        """
        s = self.settings
        name = s.filename if filename is None else filename
        log.info(
            "series to %s: %d frames %s %s (%s), file %r",
            self.endpoint,
            s.frames,
            "x".join(map(str, s.shape)),
            s.dtype,
            s.compression,
            name,
        )
        start = time.monotonic()
        series = series_messages(s, self._series_sent, lambda: self._msg_number, self._frames_sent)
        header = series.header(name)
        if header:
            self._send(header)
        nbytes = self._send_images(series)
        self._send_last(series.end())
        self._series_sent += 1
        self._frames_sent += s.frames
        stats = SeriesStats(s.frames, nbytes, time.monotonic() - start)
        log.info(
            "series sent: %d frames, %d bytes in %.3f s (%.1f frames/s)",
            stats.frames,
            stats.nbytes,
            stats.seconds,
            stats.frames_per_s,
        )
        return stats

    def close(self) -> None:
        """Close the socket, letting queued messages go for at most ``timeout_s``.

        After a failure nothing is waited for: the peer is known not to read.
        """
        if self._socket.closed:
            return
        linger_ms = 0 if self._failed else round(self.settings.timeout_s * 1000)
        self._socket.close(linger=linger_ms)
        self._close_context()

    def _open_socket(self) -> zmq.Socket[bytes]:
        s = self.settings
        socket = self._context.socket(zmq.PUSH)
        socket.setsockopt(zmq.SNDHWM, s.send_hwm)
        socket.setsockopt(zmq.SNDTIMEO, round(s.timeout_s * 1000))
        # Queue only to a completed connection, so a missing receiver shows as a send timeout.
        socket.setsockopt(zmq.IMMEDIATE, 1)
        try:
            if s.connect:
                socket.connect(s.endpoint)
            else:
                socket.bind(s.endpoint)
        except zmq.ZMQError as exc:
            socket.close(linger=0)
            raise EndpointError(_endpoint_advice(s, exc)) from None
        return socket

    def _close_context(self) -> None:
        if self._own_context:
            self._context.term()

    def send_raw(self, messages: Iterable[Sequence[Buffer]], rate: float = 0.0) -> SeriesStats:
        """Send recorded messages as they are, ``rate`` per second (0: at once).

        Returns once the receiver has taken the last one, like :meth:`send_series`.
        """
        pacer = Pacer(rate)
        start = time.monotonic()
        count = nbytes = 0
        last: Sequence[Buffer] | None = None
        for message in messages:
            if last is not None:
                pacer.wait(count)
                self._send(last)
                count += 1
            last = message
            nbytes += sum(memoryview(part).nbytes for part in message)
        if last is not None:
            pacer.wait(count)
            self._send_last(last)
            count += 1
        return SeriesStats(count, nbytes, time.monotonic() - start)

    def _frame_blobs(self, frame: int) -> list[memoryview]:
        """One encoded blob per channel (threshold) of frame ``frame``."""
        s = self.settings
        return [
            encoded_frame(frame, s.shape, s.dtype, s.compression, channel)
            for channel in range(s.thresholds)
        ]

    def _send_images(self, series: SeriesMessages) -> int:
        s = self.settings
        pacer = Pacer(s.rate)
        nbytes = 0
        reused = [self._frame_blobs(k) for k in range(min(s.distinct_frames, s.frames))]
        for index, frame in enumerate(frame_order(s.frames, s.out_of_order, s.seed)):
            blobs = reused[frame % len(reused)] if reused else self._frame_blobs(frame)
            pacer.wait(index)
            self._send(series.image(frame, blobs))
            nbytes += sum(blob.nbytes for blob in blobs)
        return nbytes

    def _send(self, parts: Sequence[Buffer], track: bool = False) -> zmq.MessageTracker | None:
        """Send without copying large parts (pyzmq copies the small JSON parts anyway).

        With ``track`` (and always for a share of a stream) the tracker of the
        message's last part is returned and kept; None when the message is
        another share's and not sent.
        """
        share = self.settings.share
        if share is not None and self._msg_number % share[1] != share[0]:
            self._msg_number += 1
            return None
        tracker = None
        try:
            if track or share is not None:
                frames = [zmq.Frame(part, copy=False, track=True) for part in parts]
                tracker = frames[-1].tracker
                self._socket.send_multipart(frames, copy=False)
                del frames  # the frames' own references would keep the tracker from finishing
            else:
                self._socket.send_multipart(parts, copy=False)
        except zmq.Again:
            self._failed = True
            raise DeliveryTimeout(self._timeout_advice()) from None
        self._msg_number += 1
        if tracker is not None:
            self._tracker = tracker
        return tracker

    def _send_last(self, parts: Sequence[Buffer]) -> None:
        """Send the series' last message and wait until ZeroMQ has handed it to the peer.

        ZeroMQ has no delivery receipt; a tracked zero-copy frame is released
        only once the connection has taken it, and a PUSH pipe is FIFO, so
        that also covers every message before it. A share of a stream whose
        last message is another share's waits for the last one it sent.
        """
        tracker = self._send(parts, track=True) or self._tracker
        if tracker is None:
            return
        try:
            tracker.wait(self.settings.timeout_s)
        except zmq.NotDone:
            self._failed = True
            raise DeliveryTimeout(self._timeout_advice()) from None

    def _timeout_advice(self) -> str:
        """Tell a receiver that never came apart from one that stopped reading mid-stream."""
        timeout = f"{self.settings.timeout_s:g} s"
        if self._msg_number > 0:
            return (
                f"the receiver on {self.endpoint} stopped taking data for {timeout}: "
                "check that it is still running and not stalled (disk full?)"
            )
        if self.settings.connect:
            hint = f"is a stream-receiver listening (bound) on {self.endpoint}?"
        else:
            hint = f"is a stream-receiver running and connecting to {self.endpoint}?"
        return f"no receiver took data from {self.endpoint} within {timeout}: {hint}"


def _endpoint_advice(settings: GeneratorSettings, exc: zmq.ZMQError) -> str:
    if settings.connect:
        return f"cannot connect to {settings.endpoint}: {exc.strerror}"
    return (
        f"cannot bind {settings.endpoint}: {exc.strerror}; is another generator or streamer "
        "using it? Choose another port, or tcp://127.0.0.1:* for a free one"
    )

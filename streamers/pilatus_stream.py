"""The Pilatus streamer's data side: CBF files on the RAM disk -> one STINS stream.

camserver writes one CBF file per frame into its image directory (a RAM
disk on the DCU). This thread watches that directory with inotify and, for
the series the proxy (:mod:`streamers.pilatus_proxy`) announced, pushes each
file whole as a STINS image message (the raw CBF blob, ``compression``
``cbf``, ``type`` int32, ``shape`` from the CBF header, ``frame`` from the
file number counted from the series' first file), then deletes it so the
RAM disk never fills. A header opens the series (the receiver's file name,
from the Tango side) and a series end closes it.

When is a file complete? camserver writes each image under a temporary name
and renames it into place: an ``IN_MOVED_TO`` event means the file is whole.
A writer that writes under the final name is covered by ``IN_CLOSE_WRITE``.
Nothing is ever read on creation or modification, and every file is checked
before it is sent (:func:`protocols.cbf.read_cbf_info`): the byte-offset
stream must be as long as its ``X-Binary-Size`` says and the closing
``--CIF-BINARY-FORMAT-SECTION----`` must follow it, else the file waits for
its next close. Hidden files
(camserver's temporary names) and files of no announced series are left alone.
"""

from __future__ import annotations

import logging
import os
import queue
import selectors
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import zmq
from inotify_simple import INotify, flags

from protocols import cbf, stins
from protocols.camserver import SeriesNames

logger = logging.getLogger(__name__)

WATCHED = flags.CLOSE_WRITE | flags.MOVED_TO
POLL_S = 0.1
SLOW_RECEIVER_S = 10.0
UNCLAIMED_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class SeriesStart:
    """camserver accepted an acquisition command: its files and the receiver's file name."""

    camserver_file: str
    nimages: int
    filename: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SeriesDone:
    """camserver's ``7`` reply (or the loss of camserver) ended the series."""

    last_file: str | None
    ok: bool
    killed: bool = False
    reason: str = ""


@dataclass
class _Series:
    start: SeriesStart
    names: SeriesNames
    sent: set[int] = field(default_factory=set)
    invalid: set[int] = field(default_factory=set)

    def accounted_for(self, last: int) -> bool:
        """Every frame up to ``last`` sent, or found not to be a sendable file."""
        return set(range(last + 1)) <= self.sent | self.invalid


class _Offer(Enum):
    SENT = "sent"
    ABSENT = "absent"
    INCOMPLETE = "incomplete"
    INVALID = "invalid"
    IGNORED = "ignored"


class _Stopped(Exception):
    """The streamer is closing."""


class ImageStreamer:
    """Binds the STINS stream and watches ``imgpath`` at construction; ``close`` frees both."""

    def __init__(
        self,
        imgpath: Path,
        endpoint: str,
        file_timeout: float = 5.0,
        sndhwm: int = 100,
    ) -> None:
        self.imgpath = Path(imgpath)
        self.file_timeout = file_timeout
        self.msg_number = 0
        self.series_count = 0
        self.frames_sent = 0
        self.failure = ""
        self.failed = threading.Event()
        self._series: _Series | None = None
        self._unclaimed: OrderedDict[str, None] = OrderedDict()
        self._control: queue.Queue[SeriesStart | SeriesDone] = queue.Queue()
        self._stopping = threading.Event()
        self._inotify = INotify()
        try:
            self._inotify.add_watch(self.imgpath, WATCHED)
        except OSError as exc:
            self._inotify.close()
            raise OSError(f"cannot watch the image directory {imgpath}: {exc.strerror}") from None
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUSH)
        self._socket.sndhwm = sndhwm
        self._socket.linger = 2000
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close(linger=0)
            self._context.term()
            self._inotify.close()
            raise OSError(f"cannot bind the data stream on {endpoint}: {exc.strerror}") from None
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name="pilatus-images")
        self._thread.start()

    def start_series(self, start: SeriesStart) -> None:
        self._post(start)

    def end_series(self, done: SeriesDone) -> None:
        self._post(done)

    def close(self) -> None:
        self._stopping.set()
        os.write(self._wake_write, b"x")
        self._thread.join()
        os.close(self._wake_read)
        os.close(self._wake_write)
        self._inotify.close()
        self._socket.close()
        self._context.term()

    def _post(self, item: SeriesStart | SeriesDone) -> None:
        self._control.put(item)
        os.write(self._wake_write, b"x")

    # --- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._inotify.fileno(), selectors.EVENT_READ)
                selector.register(self._wake_read, selectors.EVENT_READ)
                while not self._stopping.is_set():
                    for key, _ in selector.select(timeout=1.0):
                        if key.fd == self._wake_read:
                            os.read(self._wake_read, 4096)
                    self._handle_control()
                    self._handle_events(timeout_ms=0)
        except _Stopped:
            pass
        except Exception as exc:
            self.failure = f"the image streaming thread failed: {exc!r}"
            logger.exception("pilatus streamer: %s", self.failure)
            self.failed.set()

    def _handle_control(self) -> None:
        while True:
            try:
                item = self._control.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, SeriesStart):
                self._begin(item)
            else:
                self._finish(item)

    def _handle_events(self, timeout_ms: int) -> None:
        for event in self._inotify.read(timeout=timeout_ms):
            if event.mask & flags.Q_OVERFLOW:
                logger.warning(
                    "pilatus streamer: inotify queue overflow; files of this series are "
                    "picked up when it ends"
                )
            elif event.name and not event.name.startswith("."):
                self._offer(event.name)

    def _begin(self, start: SeriesStart) -> None:
        if self._series is not None:
            logger.warning(
                "pilatus streamer: series %s started before %s ended; ending that one first",
                start.camserver_file,
                self._series.start.camserver_file,
            )
            self._finish(SeriesDone(None, ok=False, reason="superseded"))
        names = SeriesNames.of(start.camserver_file, start.nimages)
        self._series = _Series(start, names)
        self.series_count += 1
        self._send(stins.encode_header(self.msg_number, start.filename, start.meta))
        logger.info(
            "series %s: %d images of %s -> %r",
            self.series_count,
            start.nimages,
            start.camserver_file,
            start.filename,
        )
        early = [name for name in self._unclaimed if names.frame_of(name) is not None]
        for name in early:
            del self._unclaimed[name]
            self._offer(name)

    def _finish(self, done: SeriesDone) -> None:
        """Send what is left of the series, wait for its last file if it should come, end it."""
        series = self._series
        if series is None:
            return
        self._handle_events(timeout_ms=0)
        last = series.names.frame_of(Path(done.last_file).name) if done.last_file else None
        if done.ok and not done.killed and last is not None:
            deadline = time.monotonic() + self.file_timeout
            while not series.accounted_for(last) and time.monotonic() < deadline:
                if self._stopping.is_set():
                    raise _Stopped
                self._handle_events(timeout_ms=round(POLL_S * 1000))
        self._sweep(series)
        sent, expected = len(series.sent), series.start.nimages
        if not done.ok:
            logger.warning(
                "series %s ended early after %d of %d frames: %s",
                series.start.camserver_file,
                sent,
                expected,
                done.reason or "camserver reported an error",
            )
        elif not done.killed and last is not None:
            missing = sorted(set(range(last + 1)) - series.sent - series.invalid)
            if missing:
                logger.warning(
                    "series %s ended without frame(s) %s: their files never appeared in %s",
                    series.start.camserver_file,
                    _ranges(missing),
                    self.imgpath,
                )
        self._send(stins.encode_series_end(self.msg_number), stoppable=False)
        logger.info(
            "series %s: %d of %d frames sent%s",
            series.start.camserver_file,
            sent,
            expected,
            " (killed)" if done.killed else "",
        )
        self._series = None

    def _sweep(self, series: _Series) -> None:
        """Files of the series still on the RAM disk (events lost or not yet read), in order."""
        found = []
        with os.scandir(self.imgpath) as entries:
            for entry in entries:
                frame = series.names.frame_of(entry.name)
                if frame is not None and frame not in series.sent:
                    found.append((frame, entry.name))
        for _, name in sorted(found):
            if self._offer(name, final=True) is _Offer.INCOMPLETE:
                logger.warning("series file %s was never completed: deleted, not sent", name)
                (self.imgpath / name).unlink(missing_ok=True)

    def _offer(self, name: str, final: bool = False) -> _Offer:
        """Send file ``name`` if it is a complete file of the series, then delete it."""
        series = self._series
        frame = series.names.frame_of(name) if series else None
        if series is None or frame is None:
            self._unclaimed[name] = None
            if len(self._unclaimed) > UNCLAIMED_LIMIT:
                self._unclaimed.popitem(last=False)
            logger.debug("ignored %s: not a file of the series being streamed", name)
            return _Offer.IGNORED
        if frame in series.sent:
            return _Offer.SENT
        path = self.imgpath / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return _Offer.ABSENT
        try:
            info = cbf.read_cbf_info(data)
        except cbf.CbfIncomplete as exc:
            if not final:
                logger.debug("%s not complete yet (%s): waiting for its next close", name, exc)
            return _Offer.INCOMPLETE
        except cbf.CbfError as exc:
            logger.error("series file %s cannot be sent: %s; deleted", name, exc)
            path.unlink(missing_ok=True)
            series.invalid.add(frame)
            return _Offer.INVALID
        extra = {} if info.exposure_time is None else {"exposure_time": info.exposure_time}
        self._send(
            stins.encode_image(self.msg_number, frame, data, info.shape, "int32", "cbf", **extra)
        )
        series.sent.add(frame)
        self.frames_sent += 1
        try:
            path.unlink()
        except OSError as exc:
            logger.warning("sent %s but cannot delete it: %s", name, exc.strerror)
        return _Offer.SENT

    def _send(self, parts: list[Any], stoppable: bool = True) -> None:
        """Send when the receiver takes it: never drop a frame; a close interrupts the wait."""
        waited_since = time.monotonic()
        warned = False
        while not self._socket.poll(round(POLL_S * 1000), zmq.POLLOUT):
            if self._stopping.is_set() and stoppable:
                raise _Stopped
            if not warned and time.monotonic() - waited_since > SLOW_RECEIVER_S:
                warned = True
                logger.warning(
                    "no receiver has taken the stream on %s for %.0f s: frames wait on the "
                    "RAM disk (is the stream-receiver connected?)",
                    self.endpoint,
                    SLOW_RECEIVER_S,
                )
            if self._stopping.is_set() and time.monotonic() - waited_since > 2.0:
                raise _Stopped
        self._socket.send_multipart(parts, copy=False)
        self.msg_number += 1


def _ranges(numbers: list[int]) -> str:
    """``0-3, 7`` for [0, 1, 2, 3, 7]."""
    spans: list[str] = []
    first = previous = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == previous + 1:
            previous = n
            continue
        spans.append(str(first) if first == previous else f"{first}-{previous}")
        if n is not None:
            first = previous = n
    return ", ".join(spans)

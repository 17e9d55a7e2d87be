"""Republishes the ordered stream in STINS on a ZeroMQ PUSH socket for online processing.

Only while a consumer is connected. Every MAX IV entry has a ``data_port``,
so the forwarder is bound wherever the receiver is deployed, mostly with
nobody reading it. A socket monitor (ZeroMQ's ACCEPTED and DISCONNECTED
events, read by a thread of its own) counts the connected consumers; with
none, the collector hands the forwarder nothing but a count: nothing is
encoded or buffered, and the frames' buffers are freed as soon as they are
written, as MAX IV's forwarder does (it sends only while it has clients).
ZeroMQ reports no connections on an ``inproc://`` endpoint: there the
forwarder sends as if a consumer were connected.

A slow consumer must never stall file writing, so the collector hands
messages over without waiting: they queue in a buffer bounded in bytes (a
frame count alone would allow gigabytes at 20 MB frames), and a message that
does not fit is counted as missed. A thread of its own sends them. Messages
are numbered for every message, sent, missed or passed over with no consumer
connected, so a consumer sees a gap in ``msg_number`` wherever it missed
something, also one that connects in the middle of a series.

A STINS image that reaches the forwarder as it was received is re-sent as
it came: its part 0 renumbered (the forwarder numbers its own stream), its
blob the buffer ZeroMQ received it in. Other messages (other protocols,
frames a transform changed, headers) are encoded in the forwarder's thread,
so the collector only hands references over. The frames of a multi-module
detector go out as the stack of their modules' chunks as received
(``receiver/module_forward.py``), or, with ``forward_modules = "assembled"``
(MAX IV's form), assembled into the full image there
(``receiver/assembly.py``), at the cost of a decode (and for bslz4 an
encode) per frame that only this thread pays; what it cannot keep up with is
missed.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Sequence

import orjson
import zmq
from zmq.utils.monitor import recv_monitor_message

from protocols import stins
from protocols.model import Buffer, Image, Message, SeriesStart
from receiver import assembly, module_forward
from receiver.stream_items import ModuleImage
from receiver.threads import ReportedThread

logger = logging.getLogger(__name__)

SEND_TIMEOUT_MS = 200
MONITOR_POLL_MS = 200
MONITOR_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED


class Forwarder(ReportedThread):
    """Owns the PUSH socket; :meth:`forward_batch` and :meth:`pass_over` may be called
    from one other thread (the collector)."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        endpoint: str,
        hwm: int,
        buffer_bytes: int,
        on_error: Callable[[str], None],
        on_failure: Callable[[str], None],
        assemble_modules: bool = False,
    ) -> None:
        """``on_error`` hears of a frame that could not be sent (it is counted as missed),
        ``on_failure`` of the thread's end if it fails. ``assemble_modules``: a
        multi-module frame goes out as the assembled full image, not as the stack
        of its modules' chunks (``receiver/module_forward.py``)."""
        super().__init__("forwarder", on_failure)
        self._socket = context.socket(zmq.PUSH)
        self._socket.sndhwm = hwm
        self._socket.sndtimeo = SEND_TIMEOUT_MS
        self._socket.linger = 0
        self._socket.bind(endpoint)
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        # ZeroMQ reports no connections on inproc: there, it sends as if one were connected.
        self._watched = not self.endpoint.startswith("inproc://")
        self._monitor = self._socket.get_monitor_socket(MONITOR_EVENTS) if self._watched else None
        self._watcher = ReportedThread("forwarder-monitor", on_failure, self._watch)
        self._peers: set[int] = set()
        self.consumers = 0
        """Consumers connected now (the monitor thread's count)."""
        self._budget = buffer_bytes
        self._buffered = 0
        self._on_error = on_error
        self._assemble_modules = assemble_modules
        self._queue: collections.deque[tuple[Message, int, int]] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._next = 0
        self._passed_over = 0  # the collector's count
        self._dropped = 0  # the forwarder thread's count
        self.sent = 0
        self.missed = 0

    @property
    def connected(self) -> bool:
        """Whether a consumer is connected, so that messages are worth handing over."""
        return self.consumers > 0 or not self._watched

    @property
    def unconnected(self) -> int:
        """Messages not forwarded because no consumer was connected (their numbers left out)."""
        return self._passed_over + self._dropped

    def pass_over(self, count: int) -> None:
        """Leave out the numbers of ``count`` messages that nobody is connected to receive."""
        self._next += count
        self._passed_over += count

    def forward_batch(self, messages: Sequence[Message | None], late: int = 0) -> None:
        """Queue ``messages`` for sending in order, each under the next number.

        A message that does not fit the buffer is counted as missed, and so
        is a None: a frame that cannot be forwarded in its place (it went to
        the file ahead of its turn), whose number is left out so that the
        consumer sees the gap. ``late``: frames that came too late for their
        place in the forwarded stream, counted as missed.
        """
        with self._cond:
            for message in messages:
                number = self._next
                self._next += 1
                if message is None:
                    self.missed += 1
                    continue
                size = len(message.data) if isinstance(message, Image) else 0
                if size and self._buffered + size > self._budget:
                    self.missed += 1
                    continue
                self._queue.append((message, number, size))
                self._buffered += size
            self.missed += late
            self._cond.notify()

    def start(self) -> None:
        if self._watched:
            self._watcher.start()
        super().start()

    def work(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        return
                    pending, self._queue = self._queue, collections.deque()
                taken = sum(size for _, _, size in pending)
                self._send_all(pending)
                with self._cond:
                    self._buffered -= taken
        finally:
            self._socket.close()

    def _send_all(self, pending: collections.deque[tuple[Message, int, int]]) -> None:
        """Send what was taken from the queue, dropping the rest when the consumer goes."""
        while pending:
            if not self.connected:
                self._dropped += len(pending)
                pending.clear()
                return
            message, number, _ = pending.popleft()
            parts = self._encode(message, number)
            del message  # its buffers are freed once ZeroMQ has sent them
            if parts is not None and not self._send(parts):
                self._dropped += 1

    def _encode(self, message: Message, number: int) -> list[Buffer] | None:
        """The STINS parts of ``message``; a module frame as its stack or assembled."""
        if isinstance(message, SeriesStart) and not self._assemble_modules:
            return module_forward.stacked_header(message, number)
        if not isinstance(message, ModuleImage):
            return _as_received(message, number) or stins.encode(message, number)
        try:
            if self._assemble_modules:
                return stins.encode(assembly.assembled(message), number)
            return module_forward.stacked_image(message, number)
        except ValueError as exc:
            with self._cond:
                self.missed += 1
            reason = f"frame {message.frame} was not forwarded: {exc}"
            logger.warning("%s", reason)
            self._on_error(reason)
            return None

    def _send(self, parts: list[Buffer]) -> bool:
        """Send one message, waiting while the consumer is slow; False if it went away."""
        while not self._stopping:
            try:
                self._socket.send_multipart(parts, copy=False)
            except zmq.Again:
                if not self.connected:
                    return False
                continue
            self.sent += 1
            return True
        return False

    def _watch(self) -> None:
        """The monitor thread: keeps ``consumers`` up to date until the socket closes."""
        monitor = self._monitor
        if monitor is None:
            return
        try:
            while not self._stopping:
                if not monitor.poll(MONITOR_POLL_MS):
                    continue
                event = recv_monitor_message(monitor)
                kind, fd = event["event"], event["value"]
                if kind == zmq.EVENT_MONITOR_STOPPED:
                    return
                if kind == zmq.EVENT_ACCEPTED:
                    self._peers.add(fd)
                elif kind == zmq.EVENT_DISCONNECTED:
                    self._peers.discard(fd)
                if self.consumers != len(self._peers):
                    self.consumers = len(self._peers)
                    logger.info("%d consumers of %s connected", self.consumers, self.endpoint)
        finally:
            monitor.close(linger=0)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self.join()
        if self._watcher.is_alive():
            self._watcher.join()
        elif self._monitor is not None and not self._monitor.closed:
            self._monitor.close(linger=0)  # the monitor thread never ran


def _as_received(message: Message, number: int) -> list[Buffer] | None:
    """A STINS image as it came, renumbered: its fields still describe it, and its blob is
    the buffer it was received in. None when the message is not one (encode it instead)."""
    if type(message) is not Image:
        return None
    fields = message.fields
    if (
        fields.get("htype") == "image"
        and fields.get("frame") == message.frame
        and fields.get("compression") == message.compression
        and fields.get("shape") == list(message.shape)
        and message.dtype == fields.get("type")
        and bool(fields.get("discard", False)) == message.discard
    ):
        return [orjson.dumps({**fields, "msg_number": number}), message.data]
    return None

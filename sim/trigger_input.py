"""The simulated detector's trigger input: the cable a test or a demo can pulse.

A real detector takes TTL pulses on a LEMO socket; the simulator takes ZeroMQ
messages on a bound PULL socket instead, so a test, a demo or a scan
simulation in another process can fire external triggers and gates with
:func:`fire` (or ``daq-sim trigger``) exactly when it wants them.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable

import zmq

logger = logging.getLogger(__name__)

POLL_MS = 100
DELIVERY_TIMEOUT_MS = 5000


class TriggerInput(threading.Thread):
    """Calls ``on_pulse(width_s)`` for every pulse received on ``endpoint``."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        endpoint: str,
        on_pulse: Callable[[float], None],
    ) -> None:
        super().__init__(name="trigger-input", daemon=True)
        self._socket = context.socket(zmq.PULL)
        self._socket.linger = 0
        self._socket.rcvtimeo = POLL_MS
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close()
            raise OSError(f"cannot bind the trigger input {endpoint}: {exc.strerror}") from None
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._on_pulse = on_pulse
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    message = self._socket.recv()
                except zmq.Again:
                    continue
                width = _pulse_width(message)
                if width is not None:
                    self._on_pulse(width)
        finally:
            self._socket.close()


def _pulse_width(message: bytes) -> float | None:
    """The gate width in seconds of a pulse message; None (and a warning) when unreadable."""
    try:
        width = float(json.loads(message).get("width", 0.0))
    except (ValueError, AttributeError, TypeError):
        logger.warning("trigger input: ignored unreadable pulse %r", message[:80])
        return None
    if not math.isfinite(width) or width < 0:
        # JSON as Python writes it can carry NaN and Infinity; a gate cannot last that long.
        logger.warning("trigger input: ignored pulse of width %g s", width)
        return None
    return width


def fire(endpoint: str, count: int = 1, width: float = 0.0) -> None:
    """Send ``count`` pulses of ``width`` seconds (0 = an edge trigger) to a trigger input.

    Returns once they are delivered; raises ``TimeoutError`` when nothing
    listens on ``endpoint``.
    """
    with zmq.Context() as context, context.socket(zmq.PUSH) as socket:
        socket.sndtimeo = DELIVERY_TIMEOUT_MS
        socket.setsockopt(zmq.IMMEDIATE, 1)
        socket.connect(endpoint)
        try:
            for _ in range(count):
                socket.send(json.dumps({"width": width}).encode())
        except zmq.Again:
            raise TimeoutError(
                f"no simulated detector listens for triggers on {endpoint}: "
                "is it armed in an external trigger mode and is the address right?"
            ) from None
        socket.linger = DELIVERY_TIMEOUT_MS

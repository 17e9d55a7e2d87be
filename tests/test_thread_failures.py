"""A receiver thread that fails in a way nobody foresaw puts the receiver in error, with why.

Never a silently dead thread and a receiver that says ``running`` while
nothing moves. The failures are injected into one step of each thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import zmq

from protocols import stins
from protocols.model import Buffer, Message
from receiver import readers
from receiver.collector import Collector
from receiver.forwarder import Forwarder
from receiver.readers import Protocol
from receiver.receiver import Receiver
from receiver.writer import SeriesWriter
from tests.helpers import wait_until
from tests.receiver_support import InProcessReceivers, SeriesSender, series_closed

pytestmark = [pytest.mark.timeout(30), pytest.mark.allow_error_log]

SHAPE = (8, 8)


@pytest.fixture
def sender(context: zmq.Context) -> Iterator[SeriesSender]:
    s = SeriesSender(context, SHAPE)
    yield s
    s.close()


def error_of(receiver: Receiver) -> str:
    wait_until(lambda: receiver.status()["state"] == "error", 10, "the error state")
    return str(receiver.status()["error"])


def test_a_message_that_breaks_the_reader_is_an_error_and_the_stream_goes_on(
    receivers: InProcessReceivers,
    sender: SeriesSender,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    def parse(parts: Sequence[Buffer]) -> Message:
        message = stins.parse(parts)
        if getattr(message, "frame", None) == 3:
            raise TypeError("unexpected None")
        return message

    monkeypatch.setitem(readers.PROTOCOLS, "stins", Protocol(parse))
    receiver = receivers.start(connect=[sender.endpoint], workers=2)
    wait_until(lambda: sender.socket.poll(0, zmq.POLLOUT), 5, "workers to connect")
    sender.series("broken.h5", list(range(8)))

    status = series_closed(receiver)

    assert "internal error reading a message in worker-" in status["error"]
    assert "TypeError: unexpected None" in status["error"]
    assert status["last_series"]["frames_written"] == 7
    assert status["last_series"]["missing_frames"] == [3]


@pytest.mark.parametrize(
    ("thread", "owner", "step"),
    [
        ("collector", Collector, "_dispatch"),
        ("writer", SeriesWriter, "_next_batch"),
        ("forwarder", Forwarder, "_encode"),
    ],
)
def test_a_thread_that_stops_puts_the_receiver_in_error_with_its_reason(
    receivers: InProcessReceivers,
    sender: SeriesSender,
    context: zmq.Context,
    monkeypatch: pytest.MonkeyPatch,
    thread: str,
    owner: type,
    step: str,
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError(f"{step} broke")

    receiver = receivers.start(connect=[sender.endpoint], forward="tcp://127.0.0.1:*")
    consumer = context.socket(zmq.PULL)
    if thread == "forwarder":  # it encodes only for a consumer
        consumer.connect(str(receiver.forward_endpoint))
        wait_until(lambda: receiver._forwarder.connected, 5, "the forwarder to see its consumer")
    monkeypatch.setattr(owner, step, broken)
    wait_until(lambda: sender.socket.poll(0, zmq.POLLOUT), 5, "workers to connect")
    sender.series("stops.h5", list(range(4)))

    error = error_of(receiver)

    assert f"internal error in the {thread} thread (RuntimeError: {step} broke)" in error
    assert "restart the receiver" in error
    receiver.reset()
    assert receiver.status()["state"] == "error", "what stopped does not start again by itself"
    consumer.close()

"""Frames are stored at their index whatever order they arrive in, beyond any window.

The case that lost frames (issue 23): 16 MB frames sent shuffled, a reorder
window of four of them, several workers. The frame the window waited for sat
in the socket of a worker that was itself waiting for room, until
``gap_timeout`` gave it up. Now the file takes such frames ahead of their turn
and only the forwarded stream misses them, counted.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import zmq

from protocols import eiger_stream1, stins
from receiver.receiver import Receiver
from receiver.reorder import Gap, OutOfTurn, Placed, Reorderer
from tests.helpers import wait_until
from tests.receiver_support import InProcessReceivers, SeriesSender, series_closed, stored_frames

pytestmark = pytest.mark.timeout(60)

BIG = (2000, 4000)
"""uint16: 16 MB a frame, so a 64 MB window holds four."""


@pytest.fixture
def sender(context: zmq.Context) -> Iterator[SeriesSender]:
    s = SeriesSender(context, BIG)
    yield s
    s.close()


@pytest.fixture
def start_receiver(sender: SeriesSender, receivers: InProcessReceivers) -> Callable[..., Receiver]:
    return functools.partial(receivers.start, connect=[sender.endpoint])


def shuffled(count: int, seed: int = 1) -> list[int]:
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return order


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_shuffled_16_mb_frames_are_all_stored(start_receiver, sender, tmp_path, workers):
    receiver = start_receiver(workers=workers, reorder_bytes=64 * 1024**2)
    wait_until(lambda: sender.socket.poll(0, zmq.POLLOUT), 5, "workers to connect")

    sender.series("shuffled.h5", shuffled(10), pause=0.1)
    status = series_closed(receiver, timeout=30)

    assert status["state"] == "idle", status["error"]
    assert status["last_series"]["frames_written"] == 10
    assert status["last_series"]["missing_frames"] == []
    assert stored_frames(tmp_path / "shuffled.h5") == list(range(10))


def test_shuffled_dectris_series_beyond_the_window_is_all_stored(
    receivers, context, tmp_path, request
):
    socket = context.socket(zmq.PUSH)
    socket.linger = 0
    socket.bind("tcp://127.0.0.1:*")
    request.addfinalizer(socket.close)
    receiver = receivers.start(
        connect=[socket.last_endpoint.decode()],
        protocol="dectris-v1",
        workers=2,
        reorder_bytes=32 * 1024**2,
    )
    wait_until(lambda: socket.poll(0, zmq.POLLOUT), 5, "workers to connect")
    config = {"nimages": 12, "ntrigger": 1}
    socket.send_multipart(
        eiger_stream1.encode_header(7, "basic", config, {"filename": "dectris.h5"})
    )
    for frame in shuffled(12, seed=3):
        pixels = np.full(BIG, frame, np.uint16)
        socket.send_multipart(eiger_stream1.encode_image(7, frame, pixels, BIG, "uint16", "none"))
        threading.Event().wait(0.05)
    socket.send_multipart(eiger_stream1.encode_series_end(7))

    status = series_closed(receiver, timeout=30)

    assert status["state"] == "idle", status["error"]
    assert stored_frames(tmp_path / "dectris.h5") == list(range(12))


def test_200_mb_of_frames_in_reverse_order_are_all_stored(start_receiver, sender, tmp_path):
    receiver = start_receiver(
        workers=2, reorder_bytes=16 * 1024**2, reorder_window=8, gap_timeout=5.0
    )
    wait_until(lambda: sender.socket.poll(0, zmq.POLLOUT), 5, "workers to connect")

    sender.shape = (1000, 2000)
    sender.series("reversed.h5", list(reversed(range(50))))
    status = series_closed(receiver, timeout=30)

    assert status["state"] == "idle", status["error"]
    assert stored_frames(tmp_path / "reversed.h5") == list(range(50))


def test_frames_stored_ahead_of_their_turn_are_counted_as_not_forwarded(
    start_receiver, sender, context
):
    receiver = start_receiver(workers=2, reorder_window=2, forward="tcp://127.0.0.1:*")
    consumer = context.socket(zmq.PULL)
    consumer.connect(receiver.forward_endpoint)
    consumer.rcvtimeo = 5000
    wait_until(lambda: sender.socket.poll(0, zmq.POLLOUT), 5, "workers to connect")
    wait_until(lambda: receiver._forwarder.connected, 5, "the forwarder to see its consumer")

    sender.shape = (64, 48)
    sender.series("fwd.h5", list(reversed(range(20))))
    status = series_closed(receiver)
    forwarded = []
    while consumer.poll(500):
        forwarded.append(stins.parse(consumer.recv_multipart()))
    consumer.close()

    assert status["last_series"]["frames_written"] == 20
    frames = [m.frame for m in forwarded if type(m).__name__ == "Image"]
    assert frames == sorted(frames), "the forwarded stream stays in order"
    assert len(frames) + status["forwarder"]["missed"] == 20
    assert status["forwarder"]["missed"] > 0
    numbers = [m.seq for m in forwarded]
    assert numbers[-1] == 21, "what was not forwarded leaves a gap in the numbering"


def frame_of(item: str) -> int | None:
    """Items are "h<seq>", "i<seq>:<frame>" and "e<seq>"."""
    return int(item.split(":")[1]) if item.startswith("i") else None


def test_a_full_window_hands_a_frame_of_the_open_series_on_ahead_of_its_turn() -> None:
    reorderer: Reorderer[str] = Reorderer(
        window=1, gap_timeout=5.0, frame_of=frame_of, ends_series=lambda i: i[0] == "e"
    )
    reorderer.put(0, "h0", is_header=True)
    assert reorderer.get(1.0) == "h0"

    reorderer.put(3, "i3:2")
    reorderer.put(4, "i4:3")  # the window is full: it goes ahead

    assert reorderer.get(1.0) == OutOfTurn("i4:3")
    reorderer.put(1, "i1:0")
    assert reorderer.get(1.0) == "i1:0"
    reorderer.put(2, "i2:1")
    assert [reorderer.get(1.0) for _ in range(3)] == ["i2:1", "i3:2", Placed(4)]


def test_a_frame_of_the_open_series_after_its_wait_timed_out_still_goes_to_the_file() -> None:
    reorderer: Reorderer[str] = Reorderer(
        window=4, gap_timeout=0.1, frame_of=frame_of, ends_series=lambda i: i[0] == "e"
    )
    reorderer.put(0, "h0", is_header=True)
    reorderer.put(2, "i2:1")
    assert [reorderer.get(1.0) for _ in range(3)] == ["h0", Gap(1, 1), "i2:1"]

    reorderer.put(1, "i1:0")

    assert reorderer.get(1.0) == OutOfTurn("i1:0", late=True)


def test_a_frame_whose_number_does_not_match_its_place_waits_for_room() -> None:
    reorderer: Reorderer[str] = Reorderer(
        window=1, gap_timeout=5.0, frame_of=frame_of, ends_series=lambda i: i[0] == "e"
    )
    reorderer.put(0, "h0", is_header=True)
    assert reorderer.get(1.0) == "h0"
    reorderer.put(3, "i3:2")
    # Message 14 claims frame 1: it belongs to a later series whose header is on its way.
    blocked = threading.Thread(target=reorderer.put, args=(14, "i14:1"), daemon=True)
    blocked.start()
    blocked.join(0.3)

    assert blocked.is_alive()
    reorderer.close()
    blocked.join(1.0)

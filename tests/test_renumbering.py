"""A sender that starts msg_number at 0 again for every series, on one socket, loses nothing.

Several series of 10 and 200 frames alternate, as a detector's acquisitions
would; each file must hold exactly its own frames (frame k filled with k).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import pytest
import zmq

from receiver.receiver import Receiver
from receiver.renumbering import STRIDE, Renumbering
from tests.helpers import wait_until
from tests.receiver_support import InProcessReceivers, SeriesSender, series_closed, stored_frames

pytestmark = pytest.mark.timeout(60)

SHAPE = (32, 32)
SIZES = [10 if i % 2 == 0 else 200 for i in range(12)]


@pytest.fixture
def sender(context: zmq.Context) -> Iterator[SeriesSender]:
    s = SeriesSender(context, SHAPE)
    yield s
    s.close()


@pytest.fixture
def start_receiver(sender: SeriesSender, receivers: InProcessReceivers) -> Callable[..., Receiver]:
    return functools.partial(receivers.start, connect=[sender.endpoint])


def holds_its_own_frames(path: Path, frames: int) -> bool:
    with h5py.File(path, "r") as f:
        numbers = list(f["entry/instrument/detector/sequence_number"][()])
    return numbers == list(range(frames)) and stored_frames(path) == list(range(frames))


def test_series_sent_back_to_back_to_one_worker_each_keep_their_frames(
    start_receiver, sender, tmp_path
):
    receiver = start_receiver(workers=1)
    wait_until(lambda: sender.socket.poll(0, zmq.POLLOUT), 5, "the worker to connect")

    for index, frames in enumerate(SIZES):
        sender.series(f"s{index:02d}.h5", list(range(frames)))
    status = series_closed(receiver, len(SIZES), timeout=40)

    assert status["state"] == "idle", status["error"]
    bad = [i for i, n in enumerate(SIZES) if not holds_its_own_frames(tmp_path / f"s{i:02d}.h5", n)]
    assert bad == []


@pytest.mark.parametrize("workers", [2, 4])
def test_series_one_after_another_over_several_workers_keep_their_frames(
    start_receiver, sender, tmp_path, workers
):
    receiver = start_receiver(workers=workers)
    wait_until(lambda: sender.socket.poll(0, zmq.POLLOUT), 5, "workers to connect")

    for index, frames in enumerate(SIZES):
        sender.series(f"s{index:02d}.h5", list(range(frames)))
        status = series_closed(receiver, index + 1)
        assert status["state"] == "idle", f"series {index}: {status['error']}"

    bad = [i for i, n in enumerate(SIZES) if not holds_its_own_frames(tmp_path / f"s{i:02d}.h5", n)]
    assert bad == []


def test_a_stream_numbered_throughout_keeps_its_numbers() -> None:
    places = Renumbering()

    assert [places.place("w", seq, seq == 0, 0) for seq in (0, 2, 1, 3)] == [0, 2, 1, 3]
    assert not places.active


def test_a_restart_starts_an_epoch_and_a_worker_follows_when_its_numbers_go_down() -> None:
    places = Renumbering()
    for seq in range(12):
        places.place("a" if seq % 2 else "b", seq, seq == 0, 0)

    assert places.restarts(0, True, passed=True)
    assert places.place("b", 0, True, 12, waiting=set()) == STRIDE
    assert places.place("a", 1, False, 12) == STRIDE + 1, "a read 11 last: 1 is the next series"
    assert places.place("b", 2, False, 12) == STRIDE + 2

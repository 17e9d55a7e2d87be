"""The C batch receive loop against pyzmq's recv_multipart, on real ZeroMQ sockets."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator

import pytest
import zmq

from receiver import zmq_batch
from receiver.zmq_batch import MAX_PARTS, BatchReceiver, PyzmqBatchReceiver, TooManyParts

RECEIVERS = [BatchReceiver, PyzmqBatchReceiver]


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.rcvtimeo = 50
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push = context.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{port}")
    yield push, pull
    push.close(linger=0)
    pull.close(linger=0)
    context.term()


def _messages() -> list[list[bytes]]:
    """Headers and blobs as the protocols send them, sizes from empty to 3 MB."""
    return [
        [b'{"htype": "header"}'],
        [b'{"htype": "image"}', os.urandom(20_000)],
        [b"", b""],
        [b"h", os.urandom(3_000_000), b"appendix"],
        [b'{"htype": "series_end"}', *(bytes([i]) * i for i in range(1, 8))],
    ]


def _collect(receiver: BatchReceiver | PyzmqBatchReceiver, count: int) -> list:
    got: list = []
    for _ in range(50):
        got += receiver.recv(1 << 30)
        if len(got) >= count:
            break
    return got


def test_the_c_loop_can_reach_the_libzmq_pyzmq_loaded(pair: tuple[zmq.Socket, zmq.Socket]) -> None:
    assert zmq_batch.available()
    assert isinstance(zmq_batch.batch_receiver(pair[1], 4), BatchReceiver)


@pytest.mark.parametrize("kind", RECEIVERS)
def test_messages_arrive_whole_and_in_order(
    kind: type, pair: tuple[zmq.Socket, zmq.Socket]
) -> None:
    push, pull = pair
    sent = _messages() * 3
    for message in sent:
        push.send_multipart(message)
    got = _collect(kind(pull, 256), len(sent))
    assert [[bytes(part) for part in message] for message in got] == sent
    assert all(isinstance(message[0], bytes) for message in got)
    assert all(isinstance(part, memoryview) for message in got for part in message[1:])


@pytest.mark.parametrize("kind", RECEIVERS)
def test_nothing_within_the_receive_timeout_is_an_empty_batch(
    kind: type, pair: tuple[zmq.Socket, zmq.Socket]
) -> None:
    assert kind(pair[1], 16).recv(1 << 20) == []


@pytest.mark.parametrize("kind", RECEIVERS)
def test_a_batch_stops_at_its_message_and_byte_limits(
    kind: type, pair: tuple[zmq.Socket, zmq.Socket]
) -> None:
    push, pull = pair
    for i in range(10):
        push.send_multipart([b"h%d" % i, bytes(1000)])
    receiver = kind(pull, 4)
    _wait_queued(pull)
    assert len(receiver.recv(1 << 20)) == 4
    assert len(receiver.recv(1500)) == 2
    rest = _collect(receiver, 4)
    assert [message[0] for message in rest] == [b"h6", b"h7", b"h8", b"h9"]


@pytest.mark.parametrize("kind", RECEIVERS)
def test_a_message_of_too_many_parts_is_reported_in_its_place(
    kind: type, pair: tuple[zmq.Socket, zmq.Socket]
) -> None:
    push, pull = pair
    push.send_multipart([b"before", b"x"])
    push.send_multipart([b"p"] * (MAX_PARTS + 3))
    push.send_multipart([b"after", b"y"])
    got = _collect(kind(pull, 16), 3)
    assert [bytes(got[0][0]), bytes(got[2][0])] == [b"before", b"after"]
    assert isinstance(got[1], TooManyParts)
    assert f"more than {MAX_PARTS} parts" in str(got[1])


def test_blobs_outlive_their_batch_and_later_batches(pair: tuple[zmq.Socket, zmq.Socket]) -> None:
    """The memoryviews hold ZeroMQ's buffers: nothing is freed under a frame still in use."""
    push, pull = pair
    receiver = BatchReceiver(pull, 8)
    blobs = [os.urandom(50_000 + i) for i in range(40)]
    kept = []
    for blob in blobs:
        push.send_multipart([b"h", blob])
    while len(kept) < len(blobs):
        kept += [message[1] for message in receiver.recv(1 << 20)]
    gc.collect()
    for blob in blobs:
        push.send_multipart([b"h", bytes(len(blob))])
    assert len(_collect(receiver, len(blobs))) == len(blobs)
    gc.collect()
    assert [bytes(view) for view in kept] == blobs


def test_a_blob_can_be_sent_on_without_a_copy(pair: tuple[zmq.Socket, zmq.Socket]) -> None:
    """The forwarder sends the received buffer itself; it must stay valid until sent."""
    push, pull = pair
    context = zmq.Context.instance()
    out = context.socket(zmq.PUSH)
    port = out.bind_to_random_port("tcp://127.0.0.1")
    sink = context.socket(zmq.PULL)
    sink.connect(f"tcp://127.0.0.1:{port}")
    blob = os.urandom(1_000_000)
    push.send_multipart([b"h", blob])
    (message,) = _collect(BatchReceiver(pull, 4), 1)
    out.send(message[1], copy=False)
    del message
    gc.collect()
    assert sink.recv() == blob
    out.close(linger=0)
    sink.close(linger=0)


def _wait_queued(pull: zmq.Socket) -> None:
    """Until ZeroMQ holds the messages sent (small ones on loopback), so a batch can see all."""
    assert pull.poll(1000) == zmq.POLLIN
    time.sleep(0.2)

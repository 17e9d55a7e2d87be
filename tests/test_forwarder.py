"""The forwarder as deployed: bound, with no consumer most of the time (issue 24, item 4).

With nobody connected the collector hands it nothing (no encoding, no
buffering: the frames' buffers are freed once written) and the numbers of
what it did not forward are left out, so a consumer that connects in the
middle of a series receives the rest in order, after a gap in ``msg_number``.
A frame forwarded as it came is re-sent as received, part 0 renumbered.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import httpx
import numpy as np
import orjson
import pytest
import zmq

from protocols import stins
from protocols.model import Image, Message
from receiver.collector import Collector, Ordered
from receiver.forwarder import Forwarder
from receiver.reorder import OutOfTurn, Placed
from tests.helpers import Processes, wait_until
from tests.test_e2e_receiver import series_closed
from tooling.ports import free_port

pytestmark = pytest.mark.timeout(60)

SHAPE = (8, 8)


class Blob(bytearray):
    """A frame's buffer that tells when it is freed (a bytearray cannot be weakly referenced)."""


class Batches:
    """The collector's ordered source: batches put by the test, each taken once."""

    def __init__(self) -> None:
        self._batches: list[Sequence[Ordered]] = []
        self._cond = threading.Condition()
        self._calls = 0
        self._last_taken_in = -1

    def put(self, batch: Sequence[Ordered]) -> None:
        with self._cond:
            self._batches.append(batch)
            self._cond.notify_all()

    def get_batch(self, timeout: float, limit: int) -> Sequence[Ordered]:
        with self._cond:
            self._calls += 1
            self._cond.notify_all()
            if not self._batches:
                self._cond.wait(timeout)
            if not self._batches:
                return []
            self._last_taken_in = self._calls
            return self._batches.pop(0)

    def wait_handled(self) -> None:
        """Until the collector has handed on every batch put: it asks for the next one."""
        with self._cond:
            handled = self._cond.wait_for(
                lambda: not self._batches and self._calls > self._last_taken_in, 10
            )
        assert handled, "the collector is stuck"


class DroppingWriter:
    """Takes the writer's batches and keeps nothing, like a writer done with them."""

    def __init__(self) -> None:
        self.items = 0

    def submit(self, items: list[object]) -> None:
        self.items += len(items)


class Pipeline:
    """A collector fed by the test, handing over to a real forwarder bound on loopback."""

    def __init__(self, context: zmq.Context, endpoint: str = "tcp://127.0.0.1:*") -> None:
        failures: list[str] = []
        self.failures = failures
        self.forwarder = Forwarder(
            context, endpoint, 16, 64 * 1024**2, failures.append, failures.append
        )
        self.source = Batches()
        self.writer = DroppingWriter()
        self.collector = Collector(
            self.source,
            self.writer,  # type: ignore[arg-type]
            self.forwarder,
            32 * 1024**2,
            failures.append,
        )

    def start(self) -> None:
        self.forwarder.start()
        self.collector.start()

    def feed(self, batch: Sequence[Ordered]) -> None:
        """Hand ``batch`` to the collector and wait until it has handed it on."""
        self.source.put(batch)
        self.source.wait_handled()

    def stop(self) -> None:
        self.collector.stop()
        self.collector.join()
        self.forwarder.stop()


@pytest.fixture
def pipeline(context: zmq.Context) -> Iterator[Pipeline]:
    p = Pipeline(context)
    p.start()
    yield p
    p.stop()
    assert p.failures == []


def header(seq: int = 0) -> Message:
    return stins.parse(stins.encode_header(seq, "scan.h5", {"count_time": 0.1}))


SENDERS_NUMBERS = 1000
"""The sender's msg_number of frame k is 1000 + k: the forwarder numbers its own stream."""


def frame(k: int, blob: bytes | bytearray | None = None) -> Image:
    data = bytes(blob) if blob is not None else np.full(SHAPE, k, "uint16").tobytes()
    parts = stins.encode_image(SENDERS_NUMBERS + k, k, data, SHAPE, "uint16", extra=k)
    image = stins.parse(parts)
    assert isinstance(image, Image)
    if blob is not None:
        image.data = memoryview(blob)
    return image


def end(frames: int) -> Message:
    return stins.parse(stins.encode_series_end(frames + 1))


def consumer_of(context: zmq.Context, forwarder: Forwarder) -> zmq.Socket:
    socket = context.socket(zmq.PULL)
    socket.rcvtimeo = 5000
    socket.linger = 0
    socket.connect(forwarder.endpoint)
    wait_until(lambda: forwarder.connected, 5, "the forwarder to see its consumer")
    return socket


def test_with_no_consumer_nothing_is_encoded_or_buffered_and_frames_are_freed(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[int] = []
    real_encode = Forwarder._encode
    monkeypatch.setattr(
        Forwarder,
        "_encode",
        lambda self, message, number: encoded.append(number) or real_encode(self, message, number),
    )
    blobs = [Blob(np.full(SHAPE, k, "uint16").tobytes()) for k in range(20)]
    freed = [weakref.ref(blob) for blob in blobs]
    images = [frame(k, blob) for k, blob in enumerate(blobs)]
    batch: list[Ordered] = [header(), *images[:10], Placed(11), OutOfTurn(images[10])]
    del blobs
    pipeline.feed(batch)
    pipeline.feed(images[11:])
    del batch, images

    forwarder = pipeline.forwarder
    assert not forwarder.connected
    assert forwarder.unconnected == 1 + 10 + 1 + 9  # every message and place took a number
    assert (forwarder.sent, forwarder.missed) == (0, 0)
    assert encoded == []
    assert forwarder._buffered == 0 and not forwarder._queue

    def alive() -> list[int]:
        return [k for k, ref in enumerate(freed) if ref() is not None]

    wait_until(lambda: alive() == [19], 5, "every frame but the live view's last to be freed")


def test_a_consumer_connecting_mid_series_gets_the_rest_in_order_after_a_gap(
    pipeline: Pipeline, context: zmq.Context
) -> None:
    frames = 20
    pipeline.feed([header(), *(frame(k) for k in range(8))])
    consumer = consumer_of(context, pipeline.forwarder)
    pipeline.feed([frame(k) for k in range(8, 14)])
    pipeline.feed([*(frame(k) for k in range(14, frames)), end(frames)])

    received = [consumer.recv_multipart(copy=False) for _ in range(frames - 8 + 1)]
    consumer.close()
    messages = [stins.parse([part.bytes for part in parts]) for parts in received]
    assert [m.seq for m in messages] == list(range(9, frames + 2)), "a gap, then in order"
    images = [m for m in messages if isinstance(m, Image)]
    assert [image.frame for image in images] == list(range(8, frames))
    for image in images:
        assert bytes(image.data) == np.full(SHAPE, image.frame, "uint16").tobytes()
    as_sent = stins.encode_image(SENDERS_NUMBERS + 8, 8, b"", SHAPE, "uint16", extra=8)[0]
    assert orjson.loads(received[0][0].bytes) == {**orjson.loads(as_sent), "msg_number": 9}
    assert messages[-1].__class__.__name__ == "SeriesEnd"
    forwarder = pipeline.forwarder
    # The forwarder counts a message once ZeroMQ has taken it, which may be after it arrived.
    wait_until(lambda: forwarder.sent == frames - 8 + 1, 5, "the forwarder to count its sends")
    assert (forwarder.sent, forwarder.missed, forwarder.unconnected) == (frames - 8 + 1, 0, 9)


def test_when_the_consumer_goes_nothing_more_is_held_for_it(
    pipeline: Pipeline, context: zmq.Context
) -> None:
    consumer = consumer_of(context, pipeline.forwarder)
    pipeline.feed([header(), frame(0)])
    assert len(consumer.recv_multipart()) == 2  # the header
    assert len(consumer.recv_multipart()) == 2  # frame 0
    consumer.close()
    wait_until(lambda: not pipeline.forwarder.connected, 5, "the forwarder to see it go")

    pipeline.feed([frame(k) for k in range(1, 6)])

    forwarder = pipeline.forwarder
    assert (forwarder.sent, forwarder.missed, forwarder.unconnected) == (2, 0, 5)
    wait_until(lambda: forwarder._buffered == 0, 5, "the buffer to empty")


def test_frames_a_transform_changed_and_module_marks_are_encoded_from_what_they_are(
    pipeline: Pipeline, context: zmq.Context
) -> None:
    consumer = consumer_of(context, pipeline.forwarder)
    turned = frame(0)
    turned.shape = (SHAPE[1] * 2, SHAPE[0] // 2)  # a transform changed it; its fields did not
    pipeline.feed([header(), turned, Placed(2), frame(2)])

    messages = [stins.parse(consumer.recv_multipart()) for _ in range(3)]
    consumer.close()

    assert [m.seq for m in messages] == [0, 1, 3], "the frame out of turn leaves its gap"
    assert isinstance(messages[1], Image) and messages[1].shape == turned.shape
    assert pipeline.forwarder.missed == 1


def test_on_inproc_where_zeromq_reports_no_connections_it_sends_as_before(
    context: zmq.Context,
) -> None:
    pipeline = Pipeline(context, "inproc://forwarded")
    consumer = context.socket(zmq.PULL)
    consumer.rcvtimeo = 5000
    consumer.connect("inproc://forwarded")
    pipeline.start()
    try:
        pipeline.feed([header(), frame(0), end(1)])
        messages = [stins.parse(consumer.recv_multipart()) for _ in range(3)]
    finally:
        consumer.close()
        pipeline.stop()
    assert [m.seq for m in messages] == [0, 1, 2]
    assert (pipeline.forwarder.sent, pipeline.forwarder.unconnected) == (3, 0)


@pytest.mark.e2e
def test_a_max_iv_entry_with_a_data_port_and_no_consumer_writes_the_whole_series(
    processes: Processes, tmp_path: Path
) -> None:
    """The deployed configuration: ``data_port`` set (the forwarder bound), nobody reading it.

    The forwarder's buffer is set to a tenth of the series, so that frames held
    for nobody would show as missed."""
    frames, shape = 2000, (64, 128)
    stream_port, api_port, data_port = free_port(), free_port(), free_port()
    entry = {
        "class": "Detector",
        "dcu_host_purple": "127.0.0.1",
        "dcu_port_purple": stream_port,
        "nworkers": 2,
        "data_port": data_port,
        "api_port": api_port,
        "dset_name": "/entry/instrument/zyla/data",
    }
    path = tmp_path / "detectors.yaml"
    path.write_text(
        "### beamline\nzyla:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in entry.items())
    )
    series_bytes = frames * shape[0] * shape[1] * 2
    receiver = processes.start(
        "stream-receiver", "--config", str(path), "--entry", "zyla",
        "--http", f"127.0.0.1:{api_port}", "--data-root", str(tmp_path),
        "--forward-buffer-bytes", str(series_bytes // 10),
    )  # fmt: skip
    url = f"http://127.0.0.1:{api_port}"
    processes.wait_serving(receiver, url)
    assert httpx.get(f"{url}/status").json()["forwarder"]["endpoint"].endswith(f":{data_port}")

    generator = processes.start(
        "daq-generator", "--bind", f"tcp://127.0.0.1:{stream_port}", "--frames", str(frames),
        "--shape", *map(str, shape), "--dtype", "uint16", "--filename", "maxiv/series.h5",
    )  # fmt: skip
    assert generator.wait(timeout=60) == 0, processes.output(generator)
    status = series_closed(url, 1)

    assert status["state"] == "idle", status["error"]
    assert status["last_series"]["frames_written"] == frames
    forwarder = status["forwarder"]
    assert (forwarder["sent"], forwarder["consumers"]) == (0, 0)
    assert forwarder["missed"] == 0, "nothing was held for a consumer nobody runs"
    assert forwarder["unconnected"] == frames + 2, "every message counted, none sent"
    with h5py.File(tmp_path / "maxiv/series.h5") as f:
        assert f["entry/instrument/zyla/data"].shape == (frames, *shape)
        assert list(f["entry/instrument/zyla/sequence_number"]) == list(range(frames))

"""A slow consumer of the forwarded stream, and an absent one, never slow the file down.

The forwarder sends from its own thread out of a buffer bounded in bytes;
what does not fit is counted as missed (README, "Guarantees and errors").
The file's rate is measured with no forwarder, with a consumer that takes a
message every 20 ms, and with nobody connected; the rates are reported, not
asserted (two shared cores make timing a poor test), the misses are.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import zmq

from protocols import stins
from tests.faults.support import FaultRow, StinsSender, check_file, start_receiver
from tests.helpers import Processes
from tooling.ports import free_port

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.timeout(90)]

MiB = 1024**2
SHAPE = (512, 1024)
"""uint16: 1 MiB a frame."""
FRAMES = 300
BUFFER = 8 * MiB


class SlowConsumer:
    """A PULL socket on the forwarded stream that takes one message every ``pause`` s."""

    def __init__(self, context: zmq.Context, endpoint: str, pause: float) -> None:
        self.socket = context.socket(zmq.PULL)
        self.socket.rcvhwm = 1
        self.socket.linger = 0
        self.socket.connect(endpoint)
        self.pause = pause
        self.numbers: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.socket.poll(100):
                continue
            message = stins.parse(self.socket.recv_multipart())
            self.numbers.append(message.seq)
            self._stop.wait(self.pause)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@pytest.mark.parametrize("consumer", ["no_forwarder", "slow_consumer", "absent_consumer"])
def test_the_file_rate_does_not_depend_on_the_forwarded_streams_consumer(
    processes: Processes,
    context: zmq.Context,
    tmp_path: Path,
    fault_row: FaultRow,
    consumer: str,
) -> None:
    fault_row.case = f"forwarding: {consumer.replace('_', ' ')}, 300 x 1 MiB"
    data_root = tmp_path / "data"
    data_root.mkdir()
    sender = StinsSender(context)
    forward = f"tcp://127.0.0.1:{free_port()}"
    args = [] if consumer == "no_forwarder" else ["--forward", forward]
    receiver = start_receiver(
        processes,
        data_root,
        *args,
        "--forward-buffer-bytes",
        str(BUFFER),
        connect=sender.endpoint,
    )
    slow = SlowConsumer(context, forward, 0.02) if consumer == "slow_consumer" else None
    sender.connected()
    try:
        sender.series("forwarded.h5", FRAMES, SHAPE)
        status = receiver.series_closed(1)
    finally:
        sender.close()
        if slow is not None:
            slow.close()
    check = check_file(data_root / "forwarded.h5")
    last = status["last_series"]
    seconds = max(last["finished"] - last["started"], 1e-3)
    forwarder = status["forwarder"]

    fault_row.acknowledged = FRAMES
    fault_row.written = last["frames_written"]
    fault_row.readable = check.right
    fault_row.saw(status)
    fault_row.figures = {"file frames/s": round(FRAMES / seconds)}
    counted = 0
    if forwarder is not None:
        # Frames nobody was connected to receive may be counted apart (``unconnected``).
        counted = forwarder["missed"] + forwarder.get("unconnected", 0)
        fault_row.figures |= {"forwarded": forwarder["sent"], "not forwarded (counted)": counted}
    if slow is not None:
        fault_row.figures["consumer got"] = len(slow.numbers)

    assert status["state"] == "idle", status["error"]
    assert last["frames_written"] == FRAMES
    assert (check.listed, check.right) == (FRAMES, FRAMES)
    if forwarder is None:
        return
    assert counted > 0, "frames a consumer cannot take (or nobody takes) are counted"
    assert forwarder["sent"] + counted <= FRAMES + 2
    if slow is not None:
        assert len(slow.numbers) <= forwarder["sent"]
        assert slow.numbers == sorted(slow.numbers), "what it got is in order, gaps numbered"

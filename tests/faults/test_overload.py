"""Overload: a sender faster than the disk for a long series.

The sender is this test's PUSH socket, sending 2 MiB frames without pause
(non-blocking sends, so every time ZeroMQ holds it back is counted); the
receiver, restricted to one core as on a busy node (the sender has the
other), writes them to the disk under pytest's temporary directory. The
guarantees: nothing is lost (every frame in the file, right), memory stays
under the bound docs/receiver.md gives for the configured queues ("Bounded
memory, no loss"), and the receiver holds the sender back through ZeroMQ
instead of buffering.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest
import zmq

from protocols import stins
from tests.faults.support import FaultRow, ReceiverProcess, check_file, pixels, start_receiver
from tests.helpers import Processes, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.timeout(150)]

MiB = 1024**2
SHAPE = (1024, 1024)
"""uint16: 2 MiB a frame."""
FRAME_BYTES = 2 * MiB
FRAMES = 1000
"""2 GiB in all, about ten times everything the receiver may hold."""
SETTINGS = {"workers": 2, "rcvhwm": 4, "reorder_bytes": 16 * MiB, "batch_bytes": 2 * MiB}
WRITER_QUEUE = 2
"""The default writer_queue."""
ALLOWANCE = 16 * MiB
"""What the interpreter may allocate beside the queues (logging, status documents, HDF5)."""


def documented_bound() -> int:
    """docs/receiver.md: workers x rcvhwm x frame + 2 x reorder_bytes + (writer_queue + 2) x
    max(batch_bytes, frame)."""
    return (
        SETTINGS["workers"] * SETTINGS["rcvhwm"] * FRAME_BYTES
        + 2 * SETTINGS["reorder_bytes"]
        + (WRITER_QUEUE + 2) * max(SETTINGS["batch_bytes"], FRAME_BYTES)
    )


def reset_peak(receiver: ReceiverProcess) -> None:
    """Start VmHWM again from the present RSS (Linux: 5 > /proc/PID/clear_refs); without it
    the peak since start counts, which only makes the check stricter."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{receiver.proc.pid}/clear_refs").write_text("5")


def on_one_core(receiver: ReceiverProcess) -> None:
    """Every thread of the receiver on one core, as on a busy node; the sender keeps the rest."""
    one_core = max(os.sched_getaffinity(0))
    for task in Path(f"/proc/{receiver.proc.pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {one_core})


def send_without_waiting(socket: zmq.Socket, first: int) -> tuple[int, float]:
    """The series numbered from ``first``, each frame sent the moment ZeroMQ takes it; how often
    ZeroMQ held the sender back, and for how many seconds in all."""
    held_back, blocked = 0, 0.0
    socket.send_multipart(stins.encode_header(first, "overload.h5"))
    for frame in range(FRAMES):
        parts = stins.encode_image(first + 1 + frame, frame, pixels(frame, SHAPE), SHAPE, "uint16")
        while True:
            try:
                socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                break
            except zmq.Again:
                held_back += 1
                wait = time.monotonic()
                assert socket.poll(30000, zmq.POLLOUT), "the receiver took nothing for 30 s"
                blocked += time.monotonic() - wait
    socket.send_multipart(stins.encode_series_end(first + 1 + FRAMES))
    return held_back, blocked


def test_a_sender_faster_than_the_disk_is_held_back_and_nothing_is_lost(
    processes: Processes,
    context: zmq.Context,
    tmp_path: Path,
    fault_row: FaultRow,
    request: pytest.FixtureRequest,
) -> None:
    fault_row.case = "overload: sender faster than the disk, 1000 x 2 MiB"
    data_root = tmp_path / "data"
    data_root.mkdir()
    path = data_root / "overload.h5"
    request.addfinalizer(lambda: path.unlink(missing_ok=True))  # 2 GiB: not kept by pytest
    socket = context.socket(zmq.PUSH)
    socket.linger = 0
    socket.sndhwm = 4
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    args = [f"--{key.replace('_', '-')}={value}" for key, value in SETTINGS.items()]
    args.append("--gap-timeout=2")  # the default: a busy core must not make gaps of its own
    receiver = start_receiver(processes, data_root, *args, connect=f"tcp://127.0.0.1:{port}")
    on_one_core(receiver)
    wait_until(lambda: socket.poll(0, zmq.POLLOUT), 10, "the receiver to connect")

    # A small series first, so that what the first file loads is in the baseline.
    socket.send_multipart(stins.encode_header(0, "warm-up.h5"))
    for frame in range(3):
        parts = stins.encode_image(frame + 1, frame, pixels(frame, SHAPE), SHAPE, "uint16")
        socket.send_multipart(parts)
    socket.send_multipart(stins.encode_series_end(4))
    receiver.series_closed(1)
    time.sleep(0.3)
    baseline = receiver.memory("VmRSS")
    reset_peak(receiver)

    started = time.monotonic()
    held_back, blocked = send_without_waiting(socket, 5)  # numbered on, as one stream
    status = receiver.series_closed(2, timeout=90)
    elapsed = time.monotonic() - started
    growth = receiver.memory("VmHWM") - baseline
    socket.close()

    check = check_file(path)
    last = status["last_series"]
    fault_row.acknowledged = FRAMES
    fault_row.written = last["frames_written"]
    fault_row.readable = check.right
    fault_row.saw(status)
    fault_row.figures = {
        "sender held back": f"{held_back} times, {blocked:.1f} of {elapsed:.1f} s",
        "written MB/s": round(FRAMES * FRAME_BYTES / 1e6 / elapsed),
        "peak memory growth MiB": growth // MiB,
        "documented bound MiB": documented_bound() // MiB,
    }

    assert status["state"] == "idle", status["error"]
    assert (last["frames_written"], last["missing_count"]) == (FRAMES, 0)
    assert (check.listed, check.right) == (FRAMES, FRAMES), check.wrong[:10]
    assert held_back > 0, "the sender was never held back: it was not faster than the receiver"
    assert growth <= documented_bound() + ALLOWANCE, (
        f"the receiver grew by {growth // MiB} MiB, beyond the {documented_bound() // MiB} MiB "
        "that docs/receiver.md gives for these settings"
    )

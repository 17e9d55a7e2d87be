"""A real full file system: a 50 MB tmpfs as the data root, a series of 100 frames of 1 MiB.

The guarantee (README, "Guarantees and errors"): ``error`` with the reason,
the file closed and readable with the frames that fit, the receiver still
serving. With ``min_free_bytes`` below the 64 MiB the writer writes between
two looks at the free space, the disk fills before the receiver stops
(issue 23: a real ENOSPC left a file nothing could open while /status said
"closed with the 26 frames written"); with 0 it always does. The default
(256 MiB) refuses the series at its start, before anything is written.
Skipped with the reason where a tmpfs cannot be mounted (not root).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zmq

from tests.faults.support import (
    FaultRow,
    ReceiverProcess,
    StinsSender,
    check_file,
    shorten,
    start_receiver,
    tmpfs,
)
from tests.helpers import Processes

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.timeout(90)]

MiB = 1024**2
SHAPE = (512, 1024)
"""uint16: 1 MiB a frame."""
FRAMES = 100


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "tmpfs", "50m") as mounted:
        yield mounted


def fill(sender: StinsSender, receiver: ReceiverProcess) -> tuple[int, dict[str, Any] | None]:
    """Send the series; (frames ZeroMQ accepted, the status once it closed, None if the
    receiver died or stopped taking frames)."""
    accepted = 0
    status = None
    try:
        sender.header("full.h5")
        for frame in range(FRAMES):
            sender.frame(frame + 1, frame, SHAPE)
            accepted += 1
        sender.end(FRAMES + 1)
        status = receiver.series_closed(1)
    except (AssertionError, httpx.HTTPError):
        pass
    with contextlib.suppress(httpx.HTTPError):
        status = receiver.status() if receiver.alive() else None
    return accepted, status


@pytest.mark.parametrize(
    "min_free", [0, 16 * MiB, None], ids=["min_free_0", "min_free_16MiB", "min_free_default"]
)
def test_a_full_disk_is_an_error_with_the_reason_and_a_readable_file(
    small_disk: Path,
    processes: Processes,
    context: zmq.Context,
    fault_row: FaultRow,
    min_free: int | None,
) -> None:
    shown = "default 256 MiB" if min_free is None else f"{min_free // MiB} MiB"
    fault_row.case = f"full disk: 50 MB tmpfs, 100 x 1 MiB, min_free_bytes {shown}"
    sender = StinsSender(context, timeout_ms=10000)
    args = [] if min_free is None else ["--min-free-bytes", str(min_free)]
    receiver = start_receiver(
        processes, small_disk, "--flush-interval", "0.2", *args, connect=sender.endpoint
    )
    sender.connected()
    accepted, status = fill(sender, receiver)
    sender.close()
    alive = status is not None
    code = receiver.terminate()
    path = small_disk / "full.h5"
    check = check_file(path) if path.exists() else None

    last = status["last_series"] if status else None
    fault_row.acknowledged = accepted
    fault_row.written = last["frames_written"] if last else "?"
    if check is None:
        fault_row.readable = "no file"
    elif check.readable:
        fault_row.readable = check.right
    else:
        fault_row.readable = f"0 (unreadable: {shorten(check.error, 80)})"
    if status is not None:
        fault_row.saw(status, 260, root=small_disk)
    else:
        fault_row.user_saw = (
            f"the receiver died (exit {receiver.proc.returncode}"
            f"{', a segmentation fault' if receiver.proc.returncode == -11 else ''}) after "
            "HDF5 reported 'No space left on device'"
        )
    fault_row.figures = {"exit code": code}

    assert alive, f"the receiver died on a full disk:\n{receiver.log()}"
    assert status is not None
    assert status["state"] == "error"
    assert "space" in status["error"] or "disk nearly full" in status["error"], status["error"]
    assert code == 0, "it stops on SIGTERM"
    if min_free is None:
        assert "disk nearly full" in status["error"]
        assert not path.exists(), "refused at the start: nothing written"
        assert last is not None and last["frames_rejected"] == FRAMES
        return
    assert check is not None and check.readable, check and check.error
    assert last is not None and last["frames_written"] > 0, "the frames that fit are kept"
    assert check.listed == last["frames_written"], "the file holds what the status says"
    assert check.right == check.listed and not check.wrong

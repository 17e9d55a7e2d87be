"""What the fault-matrix cases share: a receiver process, a STINS sender, file checks, a tmpfs.

Everything is real: ``stream-receiver`` as a process on free ports of
127.0.0.1, a ZeroMQ PUSH socket in the test, the HTTP API over TCP, the file
read back with h5py, a tmpfs mounted for a full disk. Frame *k* carries
*k* in its pixels (``pixels``), so a check of the file tells a wrong frame
from a right one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers the bslz4 filter for reading
import httpx
import numpy as np
import pytest
import zmq

from protocols import stins
from tests.helpers import VENV_BIN, Processes, wait_until
from tooling.ports import free_port

DETECTOR = "entry/instrument/detector"


@dataclass
class FaultRow:
    """One case of the matrix as docs/reliability.md shows it."""

    case: str
    test: str
    acknowledged: int | str = "-"
    """Frames sent and accepted by the receiver's side (ZeroMQ took them, or the status counted them)."""
    written: int | str = "-"
    """Frames the receiver says it wrote (or made durable)."""
    readable: int | str = "-"
    """Frames read back afterwards with their right pixels."""
    user_saw: str = ""
    """The state and message a user sees (``/status``, Tango), shortened."""
    figures: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""
    seconds: float = 0.0

    def saw(self, status: dict[str, Any], limit: int = 220, root: Path | None = None) -> None:
        """Fill ``user_saw`` from a ``/status`` document: state and the reason (paths below
        ``root`` shown as ``<data root>``)."""
        reason = status["error"]
        if root is not None:
            reason = reason.replace(str(root), "<data root>")
        self.user_saw = f"{status['state']}: {shorten(reason, limit)}".rstrip(": ")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def shorten(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Frames whose pixels say which frame they are


def pixels(frame: int, shape: tuple[int, int]) -> np.ndarray:
    """Frame ``frame``: every pixel ``frame`` mod 2**16, the last one the next 16 bits."""
    image = np.full(shape, frame % 65536, np.uint16)
    image[-1, -1] = frame // 65536 % 65536
    return image


def frame_of(chunk: np.ndarray) -> int:
    """The frame number ``pixels`` wrote into ``chunk``."""
    return int(chunk[0, 0]) + 65536 * int(chunk[-1, -1])


# Reading files back


@dataclass
class FileCheck:
    """What a plain reader finds in a series file."""

    readable: bool
    error: str = ""
    listed: int = 0
    """Frames ``sequence_number`` names (entries >= 0)."""
    right: int = 0
    """Listed frames whose pixels are the frame they are listed as."""
    wrong: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)


def check_file(path: Path, swmr: bool = False, pixel_check: bool = True) -> FileCheck:
    """Open ``path`` with h5py (plain, or as a SWMR reader) and check every listed frame."""
    try:
        with h5py.File(path, "r", swmr=swmr) as f:
            detector = f[DETECTOR]
            numbers = detector["sequence_number"][()]
            data = detector.get("data")
            check = FileCheck(readable=True)
            for index, number in enumerate(numbers):
                if number < 0:
                    continue
                check.listed += 1
                check.frames.append(int(number))
                if not pixel_check or data is None:
                    continue
                if index < data.shape[0] and frame_of(data[index]) == number:
                    check.right += 1
                else:
                    check.wrong.append(int(number))
            return check
    except (OSError, KeyError, ValueError) as exc:
        return FileCheck(readable=False, error=shorten(str(exc), 200))


def recover(path: Path) -> subprocess.CompletedProcess[str]:
    """``daq-recover path``, as a user runs it after a crash."""
    return subprocess.run(
        [str(VENV_BIN / "daq-recover"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# A STINS sender in the test


class StinsSender:
    """A PUSH socket bound on 127.0.0.1, as a detector control unit binds its stream."""

    def __init__(self, context: zmq.Context, hwm: int = 1000, timeout_ms: int = 30000) -> None:
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.socket = context.socket(zmq.PUSH)
        self.socket.linger = 0
        self.socket.sndhwm = hwm
        self.socket.sndtimeo = timeout_ms
        self.socket.bind(self.endpoint)
        self.sent = 0
        """Messages ZeroMQ accepted."""

    def send(self, parts: list[Any]) -> None:
        try:
            self.socket.send_multipart(parts, copy=False)
        except zmq.Again:
            raise AssertionError("the receiver took nothing for 30 s") from None
        self.sent += 1

    def header(
        self, filename: str, msg_number: int = 0, meta: dict[str, Any] | None = None
    ) -> None:
        self.send(stins.encode_header(msg_number, filename, meta))

    def frame(self, msg_number: int, frame: int, shape: tuple[int, int]) -> None:
        self.send(stins.encode_image(msg_number, frame, pixels(frame, shape), shape, "uint16"))

    def end(self, msg_number: int) -> None:
        self.send(stins.encode_series_end(msg_number))

    def series(self, filename: str, frames: int, shape: tuple[int, int], first: int = 0) -> int:
        """Header at ``first``, frame k at ``first + 1 + k``, the end; the next free number."""
        self.header(filename, first)
        for frame in range(frames):
            self.frame(first + 1 + frame, frame, shape)
        self.end(first + 1 + frames)
        return first + 2 + frames

    def connected(self, timeout: float = 10) -> None:
        wait_until(lambda: self.socket.poll(0, zmq.POLLOUT), timeout, "the receiver to connect")

    def close(self) -> None:
        self.socket.close()


# The receiver as a process


@dataclass
class ReceiverProcess:
    """A ``stream-receiver`` started by :func:`start_receiver`."""

    proc: subprocess.Popen[bytes]
    processes: Processes
    url: str
    data_root: Path
    args: list[str]
    """Every argument it was started with."""

    def status(self, timeout: float = 10) -> dict[str, Any]:
        reply = httpx.get(f"{self.url}/status", timeout=timeout)
        reply.raise_for_status()
        document: dict[str, Any] = reply.json()
        return document

    def alive(self) -> bool:
        return self.proc.poll() is None

    def series_closed(self, count: int = 1, timeout: float = 30) -> dict[str, Any]:
        """The status once ``count`` series have been opened and the last one closed."""

        def done() -> dict[str, Any] | None:
            assert self.alive(), f"the receiver died ({self.proc.returncode}):\n{self.log()}"
            status = self.status()
            ok = status["series_count"] >= count and not status["series_open"]
            return status if ok else None

        return wait_until(done, timeout, f"series {count} to close", interval=0.05)

    def memory(self, key: str = "VmRSS") -> int:
        """Bytes of ``key`` (VmRSS now, VmHWM the peak) from /proc/PID/status."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, as a supervisor stops it; the exit code (fails after ``timeout``)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the receiver ignored SIGTERM for {timeout} s") from None

    def log(self) -> str:
        return self.processes.output(self.proc)[-4000:]

    def again(self) -> ReceiverProcess:
        """Another receiver with the same arguments (the same ports), serving before it returns."""
        proc = self.processes.start("stream-receiver", *self.args)
        self.processes.wait_serving(proc, self.url)
        return ReceiverProcess(proc, self.processes, self.url, self.data_root, self.args)


def start_receiver(
    processes: Processes,
    data_root: Path,
    *args: str,
    connect: str | None = None,
    http_host: str = "127.0.0.1",
) -> ReceiverProcess:
    """``stream-receiver`` on a free HTTP port, a short gap timeout, serving before it returns."""
    port = free_port()
    argv = [
        "--http", f"{http_host}:{port}", "--data-root", str(data_root),
        "--gap-timeout", "0.5", "--log-level", "WARNING",
    ]  # fmt: skip
    if connect is not None:
        argv += ["--connect", connect]
    argv += list(args)
    proc = processes.start("stream-receiver", *argv)
    url = f"http://{http_host}:{port}"
    processes.wait_serving(proc, url)
    return ReceiverProcess(proc, processes, url, data_root, argv)


# A real full file system


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip(
            "a real full file system needs a tmpfs mount, which needs root (CI runs as root)"
        )
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not allowed here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        done = subprocess.run(["umount", str(path)], capture_output=True, check=False)
        if done.returncode != 0:  # still in use by a process that outlived the test: detach it
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)

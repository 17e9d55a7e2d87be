"""One measurement each: the full receiver and the baselines (sink, sink + write, write).

The receiver and the generator run as separate processes on 127.0.0.1, as in
production; the receiver's own series timing (header to file closed) gives
the rate, its ``/status`` the frame counts, ``/proc`` its peak memory and the
CPU time it spent on the run.

The receiver runs bare (``forward`` ``none``) or as it is deployed: every MAX
IV entry has a ``data_port``, so its forwarder is bound, with no consumer
(``bound``) or with one receiving everything it is sent (``consumer``, a
``bench.sink --consume`` process).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tooling.ports import free_port

BIN = Path(sys.executable).parent
DISTINCT_FRAMES = 4
FORWARD_MODES = ("none", "bound", "consumer")
"""No forwarder; a forwarder bound with no consumer; a forwarder with a consumer."""


class BenchError(RuntimeError):
    """A run failed; the message names the process and points at its output."""


@dataclass(frozen=True)
class Case:
    """One frame size: raw uint16 frames of ``shape``, ``frames`` of them per run."""

    label: str
    shape: tuple[int, int]
    frames: int

    @property
    def frame_bytes(self) -> int:
        return self.shape[0] * self.shape[1] * 2

    @property
    def warm_bytes(self) -> int:
        """Memory to warm before a run (see settle): its data and half again for the rest."""
        return self.frames * self.frame_bytes * 3 // 2


@dataclass(frozen=True)
class Measurement:
    kind: str
    case: str
    frame_bytes: int
    frames: int
    seconds: float
    workers: int = 0
    io_threads: int = 1
    write: bool = True
    lost: int = 0
    peak_rss: int = 0
    forward: str = "none"
    cpu_seconds: float = 0.0
    """The receiver process's CPU time (user + system, all threads) over the run."""
    forwarded: int = 0
    """Messages the forwarder sent during the run."""

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_frame(self) -> float:
        return self.cpu_seconds / self.frames * 1e6 if self.frames else 0.0

    @property
    def gb_per_s(self) -> float:
        return self.frames_per_s * self.frame_bytes / 1e9


def parse_size(text: str) -> int:
    """``20kB``, ``2MB``, ``1.5GB`` or plain bytes (decimal units, as MAX IV's figures use)."""
    units = {"gb": 10**9, "mb": 10**6, "kb": 10**3, "b": 1}
    lowered = text.strip().lower()
    for unit, factor in units.items():
        if lowered.endswith(unit):
            return round(float(lowered[: -len(unit)]) * factor)
    return int(lowered)


def make_case(size_text: str, target_bytes: int, min_frames: int, max_frames: int) -> Case:
    """A near-square uint16 frame of the asked size and enough frames to last a while."""
    pixels = max(1, parse_size(size_text) // 2)
    height = max(1, math.isqrt(pixels))
    width = max(1, pixels // height)
    frame_bytes = height * width * 2
    frames = min(max_frames, max(min_frames, target_bytes // frame_bytes))
    return Case(size_text, (height, width), frames)


def _generator(endpoint: str, case: Case, filename: str) -> subprocess.Popen[str]:
    args = [
        str(BIN / "daq-generator"),
        "--bind", endpoint,
        "--frames", str(case.frames),
        "--shape", *map(str, case.shape),
        "--dtype", "uint16",
        "--distinct-frames", str(DISTINCT_FRAMES),
        "--filename", filename,
        "--timeout", "120",
        "--log-level", "WARNING",
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen[str], name: str, timeout: float = 300) -> str:
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise BenchError(f"{name} did not finish in {timeout:.0f} s: {output[-500:]}") from None
    if proc.returncode != 0:
        raise BenchError(f"{name} failed (exit {proc.returncode}): {output[-500:]}")
    return output


WARM_CHUNK = 8 * 1024**2


def settle(data_dir: Path, warm_bytes: int) -> None:
    """Start every run from the same memory and page-cache state.

    Dirty pages are flushed first, so a run does not pay for the write-back
    of the one before. Then ``warm_bytes`` are written to a file that is
    deleted at once: on virtual machines that hand free memory back to the
    host (virtio-balloon free page reporting, as on this one), memory freed
    for more than a moment costs a host page fault on its next use, and a
    run that happens to follow a large free is several times faster than one
    that does not (1 GB of 20 MB writes: 0.5 or 5 GB/s). The file takes that
    cost before the run, and the run reuses the pages it leaves, as a
    receiver running for hours does.
    """
    os.sync()
    path = data_dir / "warm-up.bin"
    chunk = bytes(WARM_CHUNK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(max(1, warm_bytes // WARM_CHUNK)):
            os.write(fd, chunk)
    finally:
        os.close(fd)
        path.unlink()


def measure_sink(case: Case, io_threads: int, data_dir: Path, write: bool = False) -> Measurement:
    """The bare ZeroMQ PULL sink receiving the same generator's stream.

    With ``write`` it also writes every blob to a file in ``data_dir`` (``sink-write``).
    """
    settle(data_dir, case.warm_bytes)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    messages = case.frames + 2
    args = [sys.executable, "-m", "bench.sink", endpoint, str(messages), str(io_threads)]
    path = data_dir / "sink-write.bin" if write else None
    if path:
        args.append(str(path))
    sink = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        generator = _generator(endpoint, case, "")
        _finish(generator, "daq-generator")
        result = json.loads(_finish(sink, "the ZeroMQ sink").strip().splitlines()[-1])
    finally:
        if path:
            path.unlink(missing_ok=True)
    kind = "sink-write" if path else "sink"
    return Measurement(kind, case.label, case.frame_bytes, case.frames, result["seconds"])


def measure_write(case: Case, data_dir: Path) -> Measurement:
    """The bare sequential write of the same bytes, one write per frame, file closed at the end."""
    path = data_dir / "baseline.bin"
    buffer = os.urandom(case.frame_bytes)
    settle(data_dir, case.warm_bytes)
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for _ in range(case.frames):
            os.write(fd, buffer)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - start
    path.unlink()
    return Measurement("write", case.label, case.frame_bytes, case.frames, seconds)


class ReceiverProcess:
    """A ``stream-receiver`` process kept for several runs of one configuration.

    ``forward``: one of :data:`FORWARD_MODES`. ``tree``: run the receiver of
    another checkout (its C extensions built in place) with the same
    generator, consumer and measurement, to compare commits. ``connect``
    False: the streams are named in ``config`` (a multi-module detector's).
    """

    def __init__(
        self,
        workers: int,
        io_threads: int,
        write: bool,
        data_dir: Path,
        config: Path | None = None,
        forward: str = "none",
        tree: Path | None = None,
        connect: bool = True,
    ) -> None:
        if forward not in FORWARD_MODES:
            raise ValueError(f"forward must be one of {', '.join(FORWARD_MODES)}, not {forward!r}")
        self.workers, self.io_threads, self.write = workers, io_threads, write
        self.forward = forward
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.url = f"http://127.0.0.1:{free_port()}"
        self._data_dir = data_dir
        self._series = 0
        self._consumer: subprocess.Popen[str] | None = None
        name = f"receiver-{workers}w-{io_threads}io-{write}-{forward}"
        self._log = (data_dir / f"{name}.log").open("w")
        args = [
            str(BIN / "stream-receiver"),
            *(["--connect", self.endpoint] if connect else []),
            "--http", self.url.removeprefix("http://"),
            "--data-root", str(data_dir),
            "--workers", str(workers),
            "--io-threads", str(io_threads),
            "--log-level", "WARNING",
        ]  # fmt: skip
        if not write:
            args.append("--no-write")
        forward_endpoint = f"tcp://127.0.0.1:{free_port()}"
        if forward != "none":
            args += ["--forward", forward_endpoint]
        if config is not None:
            args += ["--config", str(config)]
        env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}
        try:
            self._proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        except BaseException:
            self._log.close()
            raise
        try:
            self._wait_ready()
            if forward == "consumer":
                self._consumer = subprocess.Popen(
                    [sys.executable, "-m", "bench.sink", "--consume", forward_endpoint],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                self._wait_consumer()
        except BaseException:
            self.close()  # a receiver that never became ready is not left running
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BenchError(f"stream-receiver exited; see {self._log.name}")
            try:
                requests.get(f"{self.url}/status", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise BenchError("stream-receiver did not start within 60 s")

    def _wait_consumer(self) -> None:
        """Until the forwarder counts the consumer: frames sent before are not forwarded."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            forwarder = self._status().get("forwarder")
            if isinstance(forwarder, dict) and forwarder.get("consumers", 0) > 0:
                return
            time.sleep(0.05)
        raise BenchError(f"the consumer did not connect to the forwarder; see {self._log.name}")

    def _status(self) -> dict[str, Any]:
        status = requests.get(f"{self.url}/status", timeout=5).json()
        if not isinstance(status, dict):
            raise BenchError(f"the receiver's /status is not a JSON object: {status!r:.200}")
        return status

    def measure(self, case: Case) -> Measurement:
        settle(self._data_dir, case.warm_bytes)
        self._reset_peak_memory()
        self._series += 1
        filename = f"bench_{self._series:04d}.h5"
        sent_before = _forwarder_sent(self._status())
        cpu_before = self._cpu_seconds()
        _finish(_generator(self.endpoint, case, filename), "daq-generator")
        status = self.wait_series_closed(self._series)
        cpu = self._cpu_seconds() - cpu_before
        last = status["last_series"]
        if status["state"] != "idle":
            raise BenchError(f"the receiver reports {status['state']}: {status['error']}")
        stored = last["frames_written"] if self.write else status["frames_received"]
        forwarded = _forwarder_sent(status) - sent_before
        if self.forward == "consumer" and forwarded == 0:
            raise BenchError(
                f"the consumer of the forwarded stream got nothing; see {self._log.name}"
            )
        (self._data_dir / filename).unlink(missing_ok=True)
        return Measurement(
            "receiver",
            case.label,
            case.frame_bytes,
            case.frames,
            last["finished"] - last["started"],
            self.workers,
            self.io_threads,
            self.write,
            lost=case.frames - stored,
            peak_rss=self._peak_memory(),
            forward=self.forward,
            cpu_seconds=cpu,
            forwarded=forwarded,
        )

    def wait_series_closed(self, series: int) -> dict[str, Any]:
        """The receiver's status once it has closed its ``series``-th series."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status = self._status()
            if status["series_count"] >= series and not status["series_open"]:
                return status
            time.sleep(0.05)
        raise BenchError("the receiver did not close the series within 300 s")

    def wait_forwarded(self, messages: int, timeout_s: float = 120) -> tuple[dict[str, Any], float]:
        """The status once the forwarder has accounted for ``messages`` (sent, missed or
        unconnected), and the Unix time it had; the forwarder may lag behind the file."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._status()
            forwarder = status.get("forwarder") or {}
            done = sum(int(forwarder.get(key, 0)) for key in ("sent", "missed", "unconnected"))
            if done >= messages:
                return status, time.time()
            time.sleep(0.02)
        raise BenchError(f"the forwarder did not account for {messages} messages in {timeout_s} s")

    def _cpu_seconds(self) -> float:
        """CPU time of the receiver's threads so far, to the nanosecond: the sum of their
        ``/proc/<pid>/task/<tid>/schedstat`` (its threads live as long as the process)."""
        total = 0
        for task in Path(f"/proc/{self._proc.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue  # a thread that ended meanwhile
        return total / 1e9

    def _reset_peak_memory(self) -> None:
        with open(f"/proc/{self._proc.pid}/clear_refs", "w") as clear:
            clear.write("5")

    def _peak_memory(self) -> int:
        with open(f"/proc/{self._proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    def close(self) -> None:
        for proc in (self._consumer, self._proc):
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        self._log.close()


def _forwarder_sent(status: dict[str, Any]) -> int:
    forwarder = status.get("forwarder")
    return int(forwarder["sent"]) if isinstance(forwarder, dict) else 0

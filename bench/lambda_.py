"""``daq-bench --lambda``: ForMAX's four-module Lambda windmill at 500 frames/s.

Two measurements, each with the forwarder bound and a consumer that keeps
up, as MAX IV deploys it:

- **receiver**: four module streams of 512 x 1536 uint16 frames, bslz4 as
  the streamers send them (compressed once beforehand, so sending costs
  nothing), from this process at the detector's rate into a
  ``stream-receiver`` process that matches, writes and forwards them: frames
  written per second, lost, and forwarded frames against frames written.
- **chain**: the whole DCU side too - two ``lambda-streamer`` processes over
  the fake SDK (``sim.lambda_fake``), which compress every module frame - at
  a shutter time the fake SDK could take, so the chain runs as fast as these
  cores let it: the highest rate the whole chain reaches here.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import zmq

from bench.measure import BIN, BenchError, ReceiverProcess
from protocols import bslz4, stins
from protocols.model import Buffer
from sim.generator import Pacer
from sim.geometry import windmill
from sim.lambda_fake import expected_frame, library_path, windmill_systems
from tooling.ports import free_port

SHAPE = (512, 1536)
MODULES = 4
RATE = 500.0
DISTINCT = 8
CHAIN_SHUTTER_S = 0.0005
"""The Lambda's shortest shutter time at 12 bits: the fake delivers as fast as it is read."""


@dataclass(frozen=True, slots=True)
class LambdaResult:
    case: str
    workers: int
    frames: int
    requested_fps: float
    sent_fps: float
    written_fps: float
    lost: int
    forwarded: int
    forwarded_fps: float
    forward_missed: int

    def line(self) -> str:
        return (
            f"Lambda windmill 4 x {SHAPE[0]}x{SHAPE[1]} uint16 bslz4, {self.case}, "
            f"{self.workers} worker(s) per module: sent {self.sent_fps:.0f} frames/s "
            f"(asked {self.requested_fps:.0f}), written {self.written_fps:.0f} frames/s, "
            f"lost {self.lost}; forwarded {self.forwarded} of {self.frames - self.lost} "
            f"at {self.forwarded_fps:.0f} frames/s (missed {self.forward_missed})"
        )


def _config(data_dir: Path, endpoints: list[str], name: str, forward_modules: str) -> Path:
    path = data_dir / f"{name}.json"
    modules = [{"name": f"m{k}", "connect": endpoint} for k, endpoint in enumerate(endpoints)]
    path.write_text(json.dumps({"modules": modules, "forward_modules": forward_modules}))
    return path


def measure_receiver(
    workers: int, frames: int, data_dir: Path, forward_modules: str, rate: float = RATE
) -> LambdaResult:
    """Pre-encoded module streams at ``rate`` into a receiver that writes and forwards
    (``forward_modules``: the stack as received, or assembled)."""
    endpoints = [f"tcp://127.0.0.1:{free_port()}" for _ in range(MODULES)]
    blobs = [
        [bslz4.compress(expected_frame(k, n, *SHAPE)) for n in range(DISTINCT)]
        for k in range(MODULES)
    ]
    config = _config(
        data_dir, endpoints, f"lambda-receiver-{workers}w-{forward_modules}", forward_modules
    )
    receiver = ReceiverProcess(
        workers, 1, True, data_dir, config=config, forward="consumer", connect=False
    )
    filename = f"lambda_{workers}w.h5"
    try:
        sent_fps = _send(endpoints, filename, blobs, frames, rate)
        status = receiver.wait_series_closed(1)
        forwarded = receiver.wait_forwarded(frames + 2)
    finally:
        receiver.close()
        (data_dir / filename).unlink(missing_ok=True)
    case = f"receiver, forwarding {forward_modules}"
    return _result(case, workers, frames, rate, sent_fps, status, forwarded)


def measure_chain(workers: int, frames: int, data_dir: Path) -> LambdaResult:
    """Two lambda-streamer processes over the fake SDK into a receiver, as fast as it goes."""
    controls: list[str] = []
    streamers: list[subprocess.Popen[bytes]] = []
    receiver: ReceiverProcess | None = None
    filename = f"lambda_chain_{workers}w.h5"
    try:
        for k, system in enumerate(windmill_systems(SHAPE)):
            control = f"127.0.0.1:{free_port()}"
            path = system.write(data_dir / f"dcu{k + 1}.conf")
            streamers.append(_streamer(path, control, data_dir / f"streamer{k + 1}.log"))
            controls.append(control)
        endpoints = [
            module["endpoint"] for control in controls for module in _streamer_status(control)
        ]
        config = _config(data_dir, endpoints, f"lambda-chain-{workers}w", "stacked")
        receiver = ReceiverProcess(
            workers, 1, True, data_dir, config=config, forward="consumer", connect=False
        )
        arm = {"frames": frames, "shutter_time": CHAIN_SHUTTER_S, "filename": filename}
        started = time.monotonic()
        for control in controls:
            requests.post(f"http://{control}/arm", json=arm, timeout=10).raise_for_status()
        status = receiver.wait_series_closed(1)
        sent_fps = frames / (time.monotonic() - started)
        forwarded = receiver.wait_forwarded(frames + 2)
    finally:
        if receiver is not None:
            receiver.close()
        for proc in streamers:
            proc.terminate()
            proc.wait(timeout=30)
        (data_dir / filename).unlink(missing_ok=True)
    case = "whole chain, forwarding stacked"
    return _result(case, workers, frames, 1 / CHAIN_SHUTTER_S, sent_fps, status, forwarded)


def _streamer(system: Path, control: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "lambda-streamer"),
                "--library", library_path(),
                "--system", str(system),
                "--stream", "tcp://127.0.0.1:*",
                "--control", control,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"lambda-streamer exited; see {log}")
        try:
            _streamer_status(control)
            return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.terminate()
    raise BenchError(f"lambda-streamer did not answer on {control} within 30 s; see {log}")


def _streamer_status(control: str) -> list[dict[str, Any]]:
    response = requests.get(f"http://{control}/status", timeout=2)
    response.raise_for_status()
    modules: list[dict[str, Any]] = response.json()["modules"]
    return modules


def _result(
    case: str,
    workers: int,
    frames: int,
    rate: float,
    sent_fps: float,
    status: dict[str, Any],
    forwarded: tuple[dict[str, Any], float],
) -> LambdaResult:
    if status["state"] != "idle":
        raise BenchError(f"the receiver reports {status['state']}: {status['error']}")
    last = status["last_series"]
    written = last["frames_written"]
    drained, drained_at = forwarded
    forwarder = drained["forwarder"]
    sent = max(int(forwarder["sent"]) - 2, 0)  # the header and the series end are sent too
    return LambdaResult(
        case,
        workers,
        frames,
        rate,
        sent_fps,
        written / (last["finished"] - last["started"]),
        frames - written,
        sent,
        sent / (drained_at - last["started"]),
        int(forwarder["missed"]),
    )


def _send(
    endpoints: list[str], filename: str, blobs: list[list[bytes]], frames: int, rate: float
) -> float:
    """One series on every module stream at ``rate``, as the streamers would send it."""
    geometry = windmill(SHAPE)
    stacked, chunks = [MODULES, *SHAPE], [1, *SHAPE]
    with zmq.Context() as context:
        sockets = []
        for endpoint in endpoints:
            push = context.socket(zmq.PUSH)
            push.sndhwm = 16
            push.linger = 60_000
            push.bind(endpoint)
            sockets.append(push)
        time.sleep(0.5)
        number = 0

        def send_all(make: Any) -> None:
            for k, push in enumerate(sockets):
                parts: list[Buffer] = make(k)
                push.send_multipart(parts, copy=False)

        def header(k: int) -> list[Buffer]:
            place = geometry.modules[k]
            meta = {
                "x": place.x,
                "y": place.y,
                "rotation": place.rotation * 90,
                "full_shape": list(geometry.full_shape),
            }
            return stins.encode_header(number, filename, meta)

        send_all(header)
        number += 1
        pacer = Pacer(rate)
        started = time.monotonic()
        for frame in range(frames):
            pacer.wait(frame)
            send_all(
                lambda k, f=frame, n=number: stins.encode_image(
                    n, f, blobs[k][f % DISTINCT], stacked, "uint16", "bslz4", chunks=chunks
                )
            )
            number += 1
        sent_fps = frames / (time.monotonic() - started)
        send_all(lambda k: stins.encode_series_end(number))
        for push in sockets:
            push.close()
    return sent_fps


def run(frames: int, workers: list[int], data_dir: Path) -> None:
    """For each worker count: the receiver forwarding both ways, then the whole chain."""
    for count in workers:
        for forward_modules in ("assembled", "stacked"):
            print(measure_receiver(count, frames, data_dir, forward_modules).line(), flush=True)
        print(measure_chain(count, frames, data_dir).line(), flush=True)

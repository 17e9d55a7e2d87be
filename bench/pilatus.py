"""``daq-bench --pilatus``: can the receiver keep up with a Pilatus3 2M at 250 frames/s?

DanMAX runs a Pilatus3 2M at 250 frames/s; its frames arrive as whole CBF
files (from ``pilatus-streamer``) that the workers decode and recompress to
bslz4 (MAX IV needed 8 workers: docs/architecture.md#performance-anchors). This case sends such a stream
from this process at the detector's rate - real CBF files of 1679 x 1475
int32 synthetic frames, encoded once beforehand so that sending costs
nothing - into a ``stream-receiver`` process with the ``cbf`` transform,
writing, and reports the rate it sustained and the frames it lost.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import zmq

from bench.measure import BenchError, ReceiverProcess
from protocols import stins
from protocols.cbf import CbfHeader, encode
from protocols.model import Buffer
from sim.frames import synthetic_frame
from sim.generator import Pacer

SHAPE = (1679, 1475)
RATE = 250.0
DISTINCT = 8


@dataclass(frozen=True, slots=True)
class PilatusResult:
    workers: int
    frames: int
    requested_fps: float
    sent_fps: float
    written_fps: float
    lost: int

    @property
    def kept_up(self) -> bool:
        return self.lost == 0 and self.written_fps >= 0.98 * self.requested_fps

    def line(self) -> str:
        verdict = "kept up" if self.kept_up else "fell behind"
        return (
            f"Pilatus3 2M CBF {SHAPE[0]}x{SHAPE[1]} int32, {self.workers} workers: "
            f"sent {self.sent_fps:.0f} frames/s (asked {self.requested_fps:.0f}), "
            f"written {self.written_fps:.0f} frames/s, lost {self.lost}: {verdict}"
        )


def measure(workers: int, frames: int, data_dir: Path, rate: float = RATE) -> PilatusResult:
    blobs = [
        encode(
            synthetic_frame(k, SHAPE, "int32"), f"bench_{k:05d}.cbf", CbfHeader(), datetime.now()
        )
        for k in range(DISTINCT)
    ]
    config = data_dir / f"pilatus-{workers}w.json"
    config.write_text(json.dumps({"transforms": [{"kind": "cbf"}]}))
    receiver = ReceiverProcess(workers, 1, True, data_dir, config=config)
    try:
        filename = f"pilatus_{workers}w.h5"
        sent_fps = _send(receiver.endpoint, filename, blobs, frames, rate)
        status = receiver.wait_series_closed(1)
    finally:
        receiver.close()
        (data_dir / filename).unlink(missing_ok=True)
    last = status["last_series"]
    if status["state"] != "idle":
        raise BenchError(f"the receiver reports {status['state']}: {status['error']}")
    elapsed = last["finished"] - last["started"]
    written = last["frames_written"]
    return PilatusResult(workers, frames, rate, sent_fps, written / elapsed, frames - written)


def _send(endpoint: str, filename: str, blobs: list[bytes], frames: int, rate: float) -> float:
    """Send one series at ``rate``; the receiver's PULL sockets connect to this bound PUSH."""
    with zmq.Context() as context, context.socket(zmq.PUSH) as push:
        push.sndhwm = 16
        push.bind(endpoint)
        time.sleep(0.5)
        number = 0

        def send(parts: list[Buffer]) -> None:
            nonlocal number
            push.send_multipart(parts, copy=False)
            number += 1

        send(stins.encode_header(number, filename))
        pacer = Pacer(rate)
        started = time.monotonic()
        for frame in range(frames):
            pacer.wait(frame)
            blob = blobs[frame % len(blobs)]
            send(stins.encode_image(number, frame, blob, SHAPE, "int32", "cbf"))
        sent_fps = frames / (time.monotonic() - started)
        send(stins.encode_series_end(number))
        push.linger = 60_000
    return sent_fps

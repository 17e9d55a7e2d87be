"""The bare ZeroMQ PULL sink baselines: receive and count, or receive and write.

Run as ``python -m bench.sink ENDPOINT MESSAGES [IO_THREADS [FILE]]``; prints
one JSON line with the time from the first to the last message (with FILE:
to the file closed), the same span the receiver's series timing covers. It
receives without copying, as the receiver does.

``python -m bench.sink --consume ENDPOINT`` is the consumer of a receiver's
forwarded stream: it connects, receives and counts until SIGTERM, then
prints the counts as one JSON line.

With FILE it also writes each message's blob to FILE, in a thread of its
own fed with batches: the least any receiver that writes must do, on the
same cores. On a machine with few cores this, not min(sink, write), is the
limit a writing receiver can reach, since receiving and writing share them.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path

import zmq

BATCH = 256
QUEUED_BATCHES = 8


def sink(
    endpoint: str, messages: int, io_threads: int = 1, path: Path | None = None
) -> dict[str, float]:
    context = zmq.Context(io_threads=io_threads)
    socket = context.socket(zmq.PULL)
    socket.connect(endpoint)
    writer = _Writer(path) if path else None
    nbytes = 0
    try:
        frames = socket.recv_multipart(copy=False)
        start = time.perf_counter()
        batch: list[memoryview] = []
        for _ in range(messages - 1):
            frames = socket.recv_multipart(copy=False)
            nbytes += sum(len(f) for f in frames)
            if writer is not None and len(frames) > 1:
                batch.append(frames[1].buffer)
                if len(batch) == BATCH or not socket.poll(0):
                    writer.put(batch)
                    batch = []
        if writer is not None:
            writer.close(batch)
        seconds = time.perf_counter() - start
    finally:
        socket.close(linger=0)
        context.term()
    return {"messages": messages, "bytes": nbytes, "seconds": seconds}


class _Writer(threading.Thread):
    """One sequential ``write`` per blob, in the order received, as batches come."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="write", daemon=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._queue: queue.Queue[list[memoryview] | None] = queue.Queue(QUEUED_BATCHES)
        self.start()

    def put(self, batch: list[memoryview]) -> None:
        self._queue.put(batch)

    def close(self, last: list[memoryview]) -> None:
        self._queue.put(last)
        self._queue.put(None)
        self.join()
        os.close(self._fd)

    def run(self) -> None:
        while (batch := self._queue.get()) is not None:
            for blob in batch:
                os.write(self._fd, blob)


def consume(endpoint: str) -> dict[str, int]:
    """Receive the forwarded stream as fast as it comes, counting, until SIGTERM."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    context = zmq.Context()
    socket = context.socket(zmq.PULL)
    socket.rcvtimeo = 100
    socket.connect(endpoint)
    messages = nbytes = 0
    try:
        while not stopping:
            try:
                frames = socket.recv_multipart(copy=False)
            except zmq.Again:
                continue
            messages += 1
            nbytes += sum(len(f) for f in frames)
    finally:
        socket.close(linger=0)
        context.term()
    return {"messages": messages, "bytes": nbytes}


def main() -> int:
    if sys.argv[1] == "--consume":
        print(json.dumps(consume(sys.argv[2])), flush=True)
        return 0
    endpoint, messages = sys.argv[1], int(sys.argv[2])
    io_threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    path = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    print(json.dumps(sink(endpoint, messages, io_threads, path)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The bare ZeroMQ PULL sink baseline: receive and count, nothing else.

Run as ``python -m bench.sink ENDPOINT MESSAGES``; prints one JSON line with
the time from the first to the last message, the same span the receiver's
series timing covers. It receives without copying, as the receiver does.
"""

from __future__ import annotations

import json
import sys
import time

import zmq


def sink(endpoint: str, messages: int, io_threads: int = 1) -> dict[str, float]:
    context = zmq.Context(io_threads=io_threads)
    socket = context.socket(zmq.PULL)
    socket.connect(endpoint)
    nbytes = 0
    try:
        frames = socket.recv_multipart(copy=False)
        start = time.perf_counter()
        for _ in range(messages - 1):
            frames = socket.recv_multipart(copy=False)
            nbytes += sum(len(f) for f in frames)
        seconds = time.perf_counter() - start
    finally:
        socket.close(linger=0)
        context.term()
    return {"messages": messages, "bytes": nbytes, "seconds": seconds}


def main() -> int:
    endpoint, messages = sys.argv[1], int(sys.argv[2])
    io_threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    print(json.dumps(sink(endpoint, messages, io_threads)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

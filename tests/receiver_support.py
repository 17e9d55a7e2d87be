"""In-process receivers for the tests: started from settings, stopped at teardown, waited on."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np
import zmq

from protocols import stins
from receiver.config import load
from receiver.receiver import Receiver
from tests.helpers import wait_until


class InProcessReceivers:
    """Starts receivers writing under ``data_root``, with no HTTP port and a short gap timeout."""

    def __init__(self, data_root: Path) -> None:
        self._data_root = data_root
        self._started: list[Receiver] = []

    def start(self, **settings: object) -> Receiver:
        receiver = Receiver(
            load(
                overrides={
                    "data_root": str(self._data_root),
                    "http_port": 0,
                    "gap_timeout": 0.3,
                    **settings,
                }
            )
        )
        receiver.start()
        self._started.append(receiver)
        return receiver

    def stop_all(self) -> None:
        for receiver in self._started:
            receiver.stop()


def series_closed(receiver: Receiver, series: int = 1, timeout: float = 20) -> dict:
    """The receiver's status once it has closed its ``series``-th series."""

    def done() -> dict | None:
        status = receiver.status()
        ok = status["series_count"] >= series and not status["series_open"]
        return status if ok else None

    return wait_until(done, timeout, f"series {series} to close")


class SeriesSender:
    """A STINS sender on a PUSH socket, numbering messages by their place in the series.

    Header 0, frame k at k + 1, the end after the last; frame k's pixels all
    hold k (modulo 2**16), so a file read back tells which frame each index holds.
    """

    def __init__(
        self, context: zmq.Context, shape: tuple[int, int], endpoint: str = "tcp://127.0.0.1:*"
    ) -> None:
        self.shape = shape
        self.socket = context.socket(zmq.PUSH)
        self.socket.linger = 0
        self.socket.bind(endpoint)
        self.endpoint = self.socket.last_endpoint.decode()

    def header(self, filename: str) -> None:
        self.socket.send_multipart(stins.encode_header(0, filename))

    def frames(self, numbers: Iterable[int], pause: float = 0.0) -> None:
        for frame in numbers:
            pixels = np.full(self.shape, frame % 65536, np.uint16)
            self.socket.send_multipart(
                stins.encode_image(frame + 1, frame, pixels, self.shape, "uint16")
            )
            if pause:
                time.sleep(pause)

    def end(self, count: int) -> None:
        self.socket.send_multipart(stins.encode_series_end(count + 1))

    def series(self, filename: str, order: list[int], pause: float = 0.0) -> None:
        """Header, the frames in ``order``, end."""
        self.header(filename)
        self.frames(order, pause)
        self.end(len(order))

    def connected(self) -> bool:
        """True once a receiver's worker can take messages."""
        return bool(self.socket.poll(0, zmq.POLLOUT))

    def close(self) -> None:
        self.socket.close()


def stored_frames(path: Path, detector: str = "detector") -> list[int]:
    """The frame each index of ``path`` holds, read from its pixels (see SeriesSender)."""
    with h5py.File(path, "r") as f:
        data = f[f"entry/instrument/{detector}/data"]
        return [int(data[i, 0, 0]) for i in range(data.shape[0])]

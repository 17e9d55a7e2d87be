"""In-process receivers for the tests: started from settings, stopped at teardown, waited on."""

from __future__ import annotations

from pathlib import Path

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

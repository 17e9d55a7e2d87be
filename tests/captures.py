"""The real Dectris captures in ``tests/data`` (see its README), for golden-message tests."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from sim.replay import read_capture

DATA = Path(__file__).resolve().parent / "data"
"""The real captures (published with MAX IV's streaming-receiver tests), kept in the
repository so that CI runs every test that needs them."""
STREAM1 = DATA / "dectris-stream1-capture.cbors.gz"
STREAM2 = DATA / "dectris-stream2-capture.cbors.gz"

V1_SERIES = 14
V1_FRAMES = 9
V2_SERIES = (16, "01HRCJF83SA63WH8M5X1VBKFJM")
V2_FRAMES = 10
SHAPE = (1065, 1030)


@cache
def _read(path: Path) -> tuple[tuple[bytes, ...], ...]:
    return tuple(tuple(message) for message in read_capture(path))


def capture(path: Path) -> list[list[bytes]]:
    """The messages of a capture (a fresh list each time)."""
    return [list(message) for message in _read(path)]

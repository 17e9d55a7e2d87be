"""Suite-wide rules: a test fails when the code under test logs an unexpected error."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from sim.pilatus import CamserverSimulator
from streamers.pilatus import PilatusStreamer
from tests.helpers import Processes
from tests.pilatus_support import SHAPE, StreamCollector, start_streamer
from tests.receiver_support import InProcessReceivers
from tests.tango_bench import Bench, running_bench


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    """The test's own ZeroMQ context; destroying it closes every socket even when a test fails."""
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[InProcessReceivers]:
    """Receivers in this process, writing under tmp_path; all stopped at teardown."""
    started = InProcessReceivers(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture(autouse=True)
def fail_on_error_log(request: pytest.FixtureRequest) -> Iterator[None]:
    handler = _ErrorCollector()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
    if handler.records and request.node.get_closest_marker("allow_error_log") is None:
        messages = "\n".join(handler.format(r) for r in handler.records)
        pytest.fail(f"the code under test logged errors:\n{messages}")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """A Tango database (DatabaseDS, sqlite) on 127.0.0.1 for one test module."""
    yield from running_bench(tmp_path_factory.mktemp("tango"))


# The Pilatus pieces (tests/test_pilatus_*.py): a RAM disk, camserver, streamer, its stream.


@pytest.fixture
def imgpath(tmp_path: Path) -> Path:
    path = tmp_path / "ramdisk"
    path.mkdir()
    return path


@pytest.fixture
def camserver(imgpath: Path) -> Iterator[CamserverSimulator]:
    sim = CamserverSimulator(imgpath, trigger_endpoint="tcp://127.0.0.1:*", shape=SHAPE)
    yield sim
    sim.close()


@pytest.fixture
def streamer(imgpath: Path, camserver: CamserverSimulator) -> Iterator[PilatusStreamer]:
    app = start_streamer(imgpath, camserver)
    yield app
    app.close()


@pytest.fixture
def stream(streamer: PilatusStreamer) -> Iterator[StreamCollector]:
    collector = StreamCollector(streamer.stream_endpoint)
    yield collector
    collector.close()

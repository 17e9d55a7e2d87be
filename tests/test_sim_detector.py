"""The simulated detector: trigger semantics, the stream it sends, and its refusals."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
import zmq

from protocols import bslz4, stins
from protocols.model import Image, SeriesEnd, SeriesStart
from sim import sim_cli
from sim.detector import DetectorError, DetectorState, Exposure, SimulatedDetector
from sim.frames import synthetic_frame
from sim.trigger_input import fire
from tests.helpers import wait_until
from tooling.ports import free_port

SHAPE = (16, 8)


class Collector:
    """A PULL socket on the detector's stream, parsing what arrives in a thread."""

    def __init__(self, endpoint: str) -> None:
        self.messages: list[SeriesStart | Image | SeriesEnd] = []
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PULL)
        self._socket.rcvtimeo = 50
        self._socket.connect(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(stins.parse(self._socket.recv_multipart()))
            except zmq.Again:
                continue

    def images(self) -> list[Image]:
        return [m for m in self.messages if isinstance(m, Image)]

    def ended(self) -> bool:
        return bool(self.messages) and isinstance(self.messages[-1], SeriesEnd)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close(linger=0)
        self._context.term()


@pytest.fixture
def detector() -> Iterator[SimulatedDetector]:
    det = SimulatedDetector("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", SHAPE, "uint16", "bslz4")
    yield det
    det.close()


@pytest.fixture
def stream(detector: SimulatedDetector) -> Iterator[Collector]:
    collector = Collector(detector.stream_endpoint)
    yield collector
    collector.close()


def exposure(mode: str, n_triggers: int = 2, frames_per_trigger: int = 3) -> Exposure:
    return Exposure(0.001, 0.002, mode, n_triggers, frames_per_trigger)


def finished(detector: SimulatedDetector, stream: Collector) -> None:
    wait_until(stream.ended, 5, "the series end")
    wait_until(lambda: detector.state is DetectorState.IDLE, 5, "the detector to go idle")


def test_internal_sends_header_every_frame_in_order_and_series_end(
    detector: SimulatedDetector, stream: Collector
) -> None:
    detector.configure(exposure("INTERNAL"))
    detector.arm("scan_001.h5")
    finished(detector, stream)
    header, *images, end = stream.messages
    assert isinstance(header, SeriesStart)
    assert header.filename == "scan_001.h5"
    assert header.meta["ntrigger"] == 2 and header.meta["nimages"] == 3
    assert header.meta["count_time"] == 0.001
    assert [i.frame for i in images] == list(range(6))
    assert isinstance(end, SeriesEnd)
    assert [m.seq for m in stream.messages] == list(range(8))
    pixels = bslz4.decompress(images[4].data, SHAPE, np.dtype("uint16"))
    np.testing.assert_array_equal(pixels, synthetic_frame(4, SHAPE, "uint16"))


def test_software_mode_gives_frames_per_trigger_on_each_trigger_only(
    detector: SimulatedDetector, stream: Collector
) -> None:
    detector.configure(exposure("SOFTWARE"))
    detector.arm("sw.h5")
    wait_until(lambda: stream.messages, 5, "the header")
    assert stream.images() == []
    detector.trigger()
    wait_until(lambda: len(stream.images()) == 3, 5, "the first trigger's frames")
    assert detector.state is DetectorState.ARMED
    detector.trigger()
    finished(detector, stream)
    assert [i.frame for i in stream.images()] == list(range(6))


def test_msg_number_runs_on_across_series(detector: SimulatedDetector, stream: Collector) -> None:
    detector.configure(exposure("INTERNAL", 1, 1))
    for name in ("a.h5", "b.h5"):
        detector.arm(name)
        wait_until(lambda: detector.state is DetectorState.IDLE, 5, "the series to end")
    wait_until(lambda: len(stream.messages) == 6, 5, "both series")
    assert [m.seq for m in stream.messages] == list(range(6))


def test_external_waits_for_one_pulse_then_sends_all_frames(
    detector: SimulatedDetector, stream: Collector
) -> None:
    detector.configure(exposure("EXTERNAL"))
    detector.arm("ext.h5")
    wait_until(lambda: stream.messages, 5, "the header")
    assert detector.trigger_endpoint is not None
    fire(detector.trigger_endpoint)
    finished(detector, stream)
    assert len(stream.images()) == 6


def test_external_multi_takes_one_burst_per_pulse(
    detector: SimulatedDetector, stream: Collector
) -> None:
    detector.configure(exposure("EXTERNAL_MULTI"))
    detector.arm("multi.h5")
    assert detector.trigger_endpoint is not None
    fire(detector.trigger_endpoint)
    wait_until(lambda: len(stream.images()) == 3, 5, "the first burst")
    assert detector.state is DetectorState.ARMED
    fire(detector.trigger_endpoint)
    finished(detector, stream)
    assert [i.frame for i in stream.images()] == list(range(6))


def test_gate_takes_one_frame_per_gate_pulse(
    detector: SimulatedDetector, stream: Collector
) -> None:
    detector.configure(exposure("GATE", n_triggers=3, frames_per_trigger=1))
    detector.arm("gate.h5")
    assert detector.trigger_endpoint is not None
    fire(detector.trigger_endpoint, count=3, width=0.01)
    finished(detector, stream)
    assert [i.frame for i in stream.images()] == [0, 1, 2]


def test_pulses_when_not_armed_are_ignored_and_counted(detector: SimulatedDetector) -> None:
    detector.fire_external()
    assert detector.triggers_ignored == 1


def test_stop_ends_the_series_at_once_with_a_series_end(
    detector: SimulatedDetector, stream: Collector
) -> None:
    detector.configure(Exposure(0.01, 0.05, "INTERNAL", 1, 1000))
    detector.arm("long.h5")
    wait_until(stream.images, 5, "the first frame")
    detector.stop()
    assert detector.state is DetectorState.IDLE
    wait_until(stream.ended, 5, "the series end")
    assert 0 < len(stream.images()) < 1000


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("INTERNAL", "need trigger mode SOFTWARE"), ("SOFTWARE", None)],
)
def test_software_trigger_refusals(
    detector: SimulatedDetector, stream: Collector, mode: str, reason: str | None
) -> None:
    with pytest.raises(DetectorError, match="not armed: Arm first"):
        detector.trigger()
    detector.configure(Exposure(0.01, 0.01, mode, 1, 1000))
    detector.arm("x.h5")
    if reason is None:
        with pytest.raises(DetectorError, match="cannot configure while armed"):
            detector.configure(exposure("INTERNAL"))
        with pytest.raises(DetectorError, match="already armed"):
            detector.arm("y.h5")
    else:
        with pytest.raises(DetectorError, match=reason):
            detector.trigger()
    detector.stop()


def test_unknown_trigger_mode_is_refused_with_the_known_ones(detector: SimulatedDetector) -> None:
    with pytest.raises(DetectorError, match="unknown; use one of INTERNAL, SOFTWARE"):
        detector.configure(exposure("BURST"))


@pytest.mark.allow_error_log
def test_no_receiver_puts_the_detector_in_error_with_advice() -> None:
    det = SimulatedDetector("tcp://127.0.0.1:*", None, SHAPE, send_timeout_s=0.2)
    try:
        det.configure(exposure("INTERNAL"))
        det.arm("nobody.h5")
        wait_until(lambda: det.state is DetectorState.ERROR, 5, "the error state")
        assert "no receiver took the data stream" in det.error
        assert "is the receiver running and connected?" in det.error
    finally:
        det.close()


def test_a_busy_stream_port_is_refused_with_the_address(detector: SimulatedDetector) -> None:
    with pytest.raises(DetectorError, match=r"cannot bind the data stream on tcp://127\.0\.0\.1:"):
        SimulatedDetector(detector.stream_endpoint)


def test_fire_without_a_listener_times_out_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sim.trigger_input.DELIVERY_TIMEOUT_MS", 100)
    with pytest.raises(TimeoutError, match="no simulated detector listens for triggers"):
        fire(f"tcp://127.0.0.1:{free_port()}")


def test_daq_sim_trigger_pulses_an_armed_detector(
    detector: SimulatedDetector, stream: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    detector.configure(exposure("EXTERNAL"))
    detector.arm("cli.h5")
    assert detector.trigger_endpoint is not None
    assert sim_cli.main(["trigger", detector.trigger_endpoint]) == 0
    finished(detector, stream)
    assert len(stream.images()) == 6
    assert "1 pulse(s) sent" in capsys.readouterr().out

"""A simulated DECTRIS EIGER (1M, the real capture's configuration) speaking SIMPLON 1.8."""

from sim.eiger.detector import EigerDetector, SimplonError, State
from sim.eiger.server import EigerSimulator, SimulatorError
from sim.eiger.stream import ImageTiming, NullSink, RecordingSink, SeriesConfig, StreamSink

__all__ = [
    "EigerDetector",
    "EigerSimulator",
    "ImageTiming",
    "NullSink",
    "RecordingSink",
    "SeriesConfig",
    "SimplonError",
    "SimulatorError",
    "State",
    "StreamSink",
]

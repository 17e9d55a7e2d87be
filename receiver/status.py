"""The receiver's ``/status`` document as one typed model, shared by both ends of the wire.

The receiver builds it, the HTTP API serves it (so the OpenAPI schema describes
every field), and a Tango device watching a receiver in another process parses
the answer with the same model: a field renamed or retyped on one side is a
clear error on the other instead of a default quietly read in its place.
Fields beyond the model are ignored when parsing, so a newer receiver that
reports more still serves an older device.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

MISSING_LISTED = 100
"""Missing frame numbers listed in the status; the count and the file have all of them."""


class State(StrEnum):
    """idle (waiting for a header), running (a series' file is open), error (with a reason)."""

    IDLE = "idle"
    RUNNING = "running"
    ERROR = "error"


class _Report(BaseModel):
    model_config = ConfigDict(frozen=True)


class SeriesReport(_Report):
    """What happened to one series, as the writer counted it."""

    filename: str = Field(description="file name the header asked for; empty: not saved")
    path: str = Field(description="absolute path of the file once opened, else empty")
    frames_written: int = Field(ge=0, description="frames stored in the file")
    frames_durable: int = Field(
        default=0,
        ge=0,
        description="frames of the file as of its last flush: what readers see now, and what "
        "stays readable if the receiver dies (0 from receivers older than this field)",
    )
    frames_discarded: int = Field(
        ge=0, description="frames the stream flagged discard: forwarded, not stored"
    )
    frames_rejected: int = Field(
        ge=0, description="frames not stored: refused series, wrong shape, duplicate, disk full"
    )
    missing_frames: list[int] = Field(
        description=f"the first {MISSING_LISTED} frame numbers that never arrived"
    )
    messages_lost: int = Field(ge=0, description="stream messages that never arrived")
    malformed_messages: int = Field(ge=0, description="unreadable messages skipped")
    started: float = Field(description="Unix time the header arrived, 0 before any")
    finished: float = Field(description="Unix time the series ended, 0 while it is open")
    missing_count: int = Field(ge=0, description="frames that never arrived, all of them")


class CurrentSeries(SeriesReport):
    """The series open now, or the last one once it is closed."""

    frames_received: int = Field(ge=0, description="frames received in this series")


class LastSeries(SeriesReport):
    """The last closed series and how it ended; kept when a new one starts."""

    ok: bool = Field(description="the series ended without error")
    error: str = Field(description="why it did not, empty when ok")


class Rates(_Report):
    """Throughput over about the last second; decays to zero once frames stop."""

    received_frames_per_s: float
    received_mb_per_s: float
    written_frames_per_s: float
    written_mb_per_s: float


class ForwarderStatus(_Report):
    """The republished stream: missed messages did not fit the forwarder's buffer."""

    endpoint: str = Field(description="ZeroMQ endpoint the forwarder binds")
    sent: int = Field(ge=0)
    missed: int = Field(ge=0)
    unconnected: int = Field(
        default=0, ge=0, description="messages not forwarded: no consumer was connected"
    )
    consumers: int = Field(default=0, ge=0, description="consumers connected now")


class ModuleStatus(_Report):
    """One module stream of a multi-module detector in the current (or last) series."""

    name: str
    connect: str = Field(description="the module's ZeroMQ endpoint")
    state: str = Field(description="waiting, open, silent, ended, absent or excluded")
    frames_received: int = Field(ge=0)
    frames_missing: int = Field(ge=0)
    first_missing: int | None = Field(description="the first frame it did not send, if any")


class ConfigSummary(_Report):
    """What the receiver was started with, so a client can tell which receiver it asks."""

    connect: list[str] = Field(description="the streams read: the modules' or connect")
    protocol: str
    workers: int = Field(ge=1, description="receiving threads per stream")
    data_root: str = Field(description="files are written below this directory")
    write: bool = Field(description="false: live view only, nothing is saved")


class ReceiverStatus(_Report):
    """``GET /status``: the state, the current and last series, rates, forwarder and modules."""

    state: State
    error: str = Field(description="why the state is error, empty otherwise")
    series_open: bool = Field(description="a series' file is open")
    series_count: int = Field(ge=0, description="headers received since the receiver started")
    series: CurrentSeries
    last_series: LastSeries | None = Field(description="null until a series has ended")
    filename: str = Field(description="the file of the current series: its path once opened")
    frames_received: int = Field(ge=0, description="frames received in the current series")
    frames_written: int = Field(ge=0, description="frames written in the current series")
    frames_missing: int = Field(ge=0, description="frames missing in the current series")
    rates: Rates
    forwarder: ForwarderStatus | None = Field(description="null when nothing is forwarded")
    unreadable_messages: int = Field(ge=0, description="messages no worker could parse, ever")
    modules: list[ModuleStatus] | None = Field(description="null for a single-stream detector")
    config: ConfigSummary

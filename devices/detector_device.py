"""``DetectorDevice``: the MAX IV standard detector Tango device (docs/protocols.md#tango-detector-interface).

Existing clients (Sardana, MAX IV scan scripts, jive, Taurus) drive it
unchanged: they write ExposureTime, FrameTime, TriggerMode by label, nTriggers
and DestinationFilename, call Arm, maybe SoftwareTrigger, and poll State until
ON. The device itself only maps Tango onto :class:`devices.acquisition.Acquisition`,
which runs the closed loop with the backend and receiver chosen by properties.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import json
import logging
import os
import re
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np
from tango import ApiUtil, AttrWriteType, DevFailed, DevState, Except
from tango.pyutil import parse_args as parse_tango_args
from tango.server import Device, attribute, command, device_property, run

from devices.acquisition import Acquisition, AcquisitionError, LoopState
from devices.backend import Backend as HardwareBackend
from devices.backend import BackendError, create_backend
from devices.change_events import ChangeEvents
from devices.receiver_link import (
    EmbeddedReceiver,
    ReceiverLink,
    ReceiverUnreachable,
    RemoteReceiver,
    embedded_config,
)
from devices.settings import (
    TRIGGER_MODE_HELP,
    SettingsError,
    TriggerMode,
    WrittenSettings,
    check_written,
    refuse_below,
)
from receiver.config import ConfigError
from receiver.status import ReceiverStatus

logger = logging.getLogger(__name__)

STATES = {
    LoopState.ON: DevState.ON,
    LoopState.RUNNING: DevState.RUNNING,
    LoopState.FAULT: DevState.FAULT,
}
MAX_IMAGE_SIDE = 8192
PROG = "DetectorDevice"
HELP_OPTIONS = {"-h", "-?", "--help"}
BACKEND_PROPERTIES = (
    "DetectorAddress",
    "StreamAddress",
    "StreamFormat",
    "HeaderDetail",
    "TriggerInputAddress",
    "FrameShape",
    "PixelType",
    "Compression",
    "SdkLibrary",
    "PixelEncoding",
    "RegionOfInterest",
)


def _refuse(reason: str, description: str, origin: str) -> NoReturn:
    """Raise Tango's DevFailed, which clients show as the error (``reason``: its kind)."""
    Except.throw_exception(reason, description, origin)
    raise AssertionError("Except.throw_exception returned")  # it always raises


class DetectorDevice(Device):
    """A detector and its stream-receiver, as one device a scan can drive."""

    Backend = device_property(
        dtype=str,
        default_value="simulator",
        doc="kind of detector hardware: simulator, eiger, pilatus, lambda, andor, hamamatsu",
    )
    DetectorAddress = device_property(
        dtype=str,
        default_value="",
        doc="control address of the hardware (unused by the simulator); lambda: the "
        "lambda-streamers' host:port, one per DCU, comma-separated",
    )
    StreamAddress = device_property(
        dtype=str,
        default_value="tcp://127.0.0.1:9999",
        doc="ZeroMQ endpoint of the detector's data stream (the simulator binds it)",
    )
    StreamFormat = device_property(
        dtype=str,
        default_value="legacy",
        doc="eiger: stream format, legacy (Dectris stream v1) or cbor (stream v2)",
    )
    HeaderDetail = device_property(
        dtype=str, default_value="basic", doc="eiger: stream header_detail, all, basic or none"
    )
    TriggerInputAddress = device_property(
        dtype=str,
        default_value="tcp://127.0.0.1:9998",
        doc="simulator: ZeroMQ endpoint of its external trigger input (daq-sim trigger)",
    )
    FrameShape = device_property(
        dtype=(int,), default_value=[512, 512], doc="simulator: frame height and width in pixels"
    )
    PixelType = device_property(
        dtype=str, default_value="uint16", doc="simulator: uint8, uint16, uint32, int32, float32"
    )
    Compression = device_property(dtype=str, default_value="bslz4", doc="simulator: none or bslz4")
    SdkLibrary = device_property(
        dtype=str,
        default_value="",
        doc="andor, hamamatsu with the streamer embedded: the SDK's shared library (empty: "
        "$ANDOR_SDK_LIBRARY / $DCAM_SDK_LIBRARY, then the SDK's usual place)",
    )
    PixelEncoding = device_property(
        dtype=str,
        default_value="Mono16",
        doc="andor, hamamatsu: Mono16, Mono12 (16-bit words) or Mono12p (ORCA 12-bit packed)",
    )
    RegionOfInterest = device_property(
        dtype=(int,),
        default_value=[],
        doc="andor, hamamatsu: column, row, width, height on the sensor; empty: the whole sensor",
    )
    Receiver = device_property(
        dtype=str,
        default_value="embedded",
        doc="'embedded' (a receiver in this server) or the URL of a stream-receiver's HTTP API",
    )
    DataRoot = device_property(
        dtype=str, default_value="/data", doc="embedded receiver: files are written below this"
    )
    DetectorName = device_property(
        dtype=str,
        default_value="detector",
        doc="embedded receiver: data go to /entry/instrument/<DetectorName>/data",
    )
    ReceiverWorkers = device_property(
        dtype=int, default_value=2, doc="embedded receiver: parallel receiving threads"
    )
    ReceiverHttpPort = device_property(
        dtype=int,
        default_value=0,
        doc="embedded receiver: HTTP API port on 127.0.0.1 (0: any free port, -1: no API)",
    )
    ReceiverTransforms = device_property(
        dtype=str,
        default_value="[]",
        doc="embedded receiver: per-frame transforms after the backend's own, as JSON, e.g. "
        '[{"kind": "rotate", "k": 1}, {"kind": "mask", "x": 0, "y": 0, "width": 8, "height": 8}]',
    )
    ReceiverForward = device_property(
        dtype=str, default_value="", doc="embedded receiver: ZeroMQ endpoint to republish frames"
    )
    ArmTimeout = device_property(
        dtype=float, default_value=10.0, doc="s to wait after Arm for the receiver to open the file"
    )
    CloseTimeout = device_property(
        dtype=float,
        default_value=30.0,
        doc="s to wait after the last frame for the receiver to close the file",
    )

    def init_device(self) -> None:
        super().init_device()
        self._written = WrittenSettings.defaults()
        self._acquisition: Acquisition | None = None
        self._startup = "starting"
        self._pushed: tuple[DevState, str, int] | None = None
        for name in ("State", "Status", "nFramesAcquired"):
            self.set_change_event(name, True, False)
        self._events = ChangeEvents(self._push_events)
        self._events.start()
        try:
            self._acquisition = self._build()
        except (BackendError, ReceiverUnreachable, ConfigError, OSError) as exc:
            self._startup = f"cannot start: {exc}; fix the properties, then Init"
        self._events.signal()

    def delete_device(self) -> None:
        self._events.stop()
        if self._acquisition is not None:
            self._acquisition.close()
            self._acquisition = None

    def dev_state(self) -> DevState:
        """Always the loop's own state, so a read right after a command is never stale."""
        if self._acquisition is None:
            return DevState.FAULT
        return STATES[self._acquisition.state]

    def dev_status(self) -> str:
        if self._acquisition is None:
            return self._startup
        if self._acquisition.state is LoopState.ON and self._acquisition.status == "ready":
            backend, receiver = self._acquisition.backend, self._acquisition.receiver
            return f"ready: {backend.name} detector, {receiver.description}"
        return self._acquisition.status

    def _build(self) -> Acquisition:
        options = {name: getattr(self, name) for name in BACKEND_PROPERTIES}
        backend = create_backend(self.Backend, options)
        try:
            transforms = [*backend.stream_transforms, *self._receiver_transforms()]
            receiver = self._receiver_link(backend, transforms)
        except Exception:
            backend.close()
            raise
        return Acquisition(
            backend,
            receiver,
            self.ArmTimeout,
            self.CloseTimeout,
            on_change=self._events.signal,
        )

    def _receiver_transforms(self) -> list[dict[str, Any]]:
        try:
            transforms = json.loads(self.ReceiverTransforms or "[]")
        except ValueError as exc:
            raise ConfigError(f"ReceiverTransforms is not JSON: {exc}") from None
        if not isinstance(transforms, list):
            raise ConfigError(
                'ReceiverTransforms must be a JSON list, e.g. [{"kind": "rotate", "k": 1}]'
            )
        return transforms

    def _receiver_link(
        self, backend: HardwareBackend, transforms: list[dict[str, Any]]
    ) -> ReceiverLink:
        if self.Receiver.strip().lower() != "embedded":
            return RemoteReceiver(self.Receiver.strip())
        config = embedded_config(
            backend.stream_endpoint,
            backend.stream_modules,
            backend.stream_protocol,
            transforms,
            self.DataRoot,
            self.DetectorName,
            self.ReceiverWorkers,
            self.ReceiverHttpPort,
            self.ReceiverForward,
        )
        return EmbeddedReceiver(config, serve_http=self.ReceiverHttpPort >= 0)

    def _push_events(self) -> None:
        """Push State, Status and nFramesAcquired, each only when it changed.

        Tango pushes its stored State and Status, so they are stored first.
        """
        now = (self.dev_state(), self.dev_status(), self._frames_acquired())
        before = self._pushed or (None, None, None)
        self._pushed = now
        self.set_state(now[0])
        self.set_status(now[1])
        if now[0] != before[0]:
            self.push_change_event("State")
        if now[1] != before[1]:
            self.push_change_event("Status")
        if now[2] != before[2]:
            self.push_change_event("nFramesAcquired", now[2])

    def _frames_acquired(self) -> int:
        return self._acquisition.frames_acquired if self._acquisition else 0

    def _loop(self) -> Acquisition:
        if self._acquisition is None:
            _refuse(
                "DetectorNotReady",
                f"the device could not start: {self._startup}",
                "DetectorDevice",
            )
        return self._acquisition

    def _settable(self, name: str) -> None:
        """Settings are refused while RUNNING: they would not apply to the series in progress."""
        if self.dev_state() == DevState.RUNNING:
            _refuse(
                "DetectorBusy",
                f"cannot write {name} while RUNNING: call Stop or wait for state ON",
                f"DetectorDevice.write_{name}",
            )

    def _update(self, name: str, **change: Any) -> None:
        """Keep a written value; the settings are checked as a whole when Arm builds them."""
        self._settable(name)
        self._written = dataclasses.replace(self._written, **change)

    def _in_limits(self, name: str, value: float, least: float | None = None) -> None:
        """Refuse a value below the attribute's limit with the limit, as Tango's min_value did.

        The limits are checked here rather than by Tango (``min_value``), whose
        refusal names no limit and no value; ``least`` for an attribute that is
        not a setting of the model (LatencyTime).
        """
        try:
            if least is None:
                check_written(name, value)
            else:
                refuse_below(name, value, least, "s")
        except SettingsError as exc:
            _refuse("BadSetting", str(exc), f"DetectorDevice.write_{name}")

    # Commands

    @command(doc_in="", doc_out="")
    def Arm(self) -> None:
        """Arm with the current settings; returns once the receiver has the file open (RUNNING)."""
        self._run(lambda loop: loop.arm(self._written.settings()), "Arm")

    @command
    def SoftwareTrigger(self) -> None:
        """One software trigger (TriggerMode SOFTWARE): nFramesPerTrigger frames."""
        self._run(lambda loop: loop.trigger(), "SoftwareTrigger")

    @command
    def Stop(self) -> None:
        """End the series now; returns once the receiver has closed the file (ON)."""
        self._run(lambda loop: loop.stop(), "Stop")

    def _run(self, action: Any, name: str) -> None:
        loop = self._loop()
        try:
            action(loop)
        except (AcquisitionError, SettingsError) as exc:
            _refuse("DetectorError", str(exc), f"DetectorDevice.{name}")

    # Settings

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="s",
        format="%8.6f",
        doc="exposure (count) time of each frame (at least 0 s; more than 0 at Arm)",
    )
    def ExposureTime(self) -> float:
        return self._written.exposure_time

    @ExposureTime.write
    def ExposureTime(self, value: float) -> None:
        self._in_limits("ExposureTime", value)
        frame_time = max(self._written.frame_time, value)
        self._update("ExposureTime", exposure_time=value, frame_time=frame_time)

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="s",
        format="%8.6f",
        doc="period of the frames within a trigger (>= ExposureTime)",
    )
    def FrameTime(self) -> float:
        return self._written.frame_time

    @FrameTime.write
    def FrameTime(self, value: float) -> None:
        self._in_limits("FrameTime", value)
        if value < self._written.exposure_time:
            _refuse(
                "BadSetting",
                f"FrameTime ({value:g} s) must be at least ExposureTime "
                f"({self._written.exposure_time:g} s)",
                "DetectorDevice.write_FrameTime",
            )
        self._update("FrameTime", frame_time=value)

    @attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="s",
        format="%8.6f",
        doc="dead time between frames, at least 0 s: FrameTime - ExposureTime (writing it sets FrameTime)",
    )
    def LatencyTime(self) -> float:
        return self._written.frame_time - self._written.exposure_time

    @LatencyTime.write
    def LatencyTime(self, value: float) -> None:
        self._in_limits("LatencyTime", value, least=0.0)
        self._update("LatencyTime", frame_time=self._written.exposure_time + value)

    @attribute(
        dtype=TriggerMode,
        access=AttrWriteType.READ_WRITE,
        doc=TRIGGER_MODE_HELP,
    )
    def TriggerMode(self) -> TriggerMode:
        return self._written.trigger_mode

    @TriggerMode.write
    def TriggerMode(self, value: int) -> None:
        self._update("TriggerMode", trigger_mode=TriggerMode(value))

    @attribute(
        dtype=int,
        access=AttrWriteType.READ_WRITE,
        format="%d",
        doc="triggers in the series, at least 1 (INTERNAL: bursts run back to back)",
    )
    def nTriggers(self) -> int:
        return self._written.n_triggers

    @nTriggers.write
    def nTriggers(self, value: int) -> None:
        self._in_limits("nTriggers", value)
        self._update("nTriggers", n_triggers=value)

    @attribute(
        dtype=int,
        access=AttrWriteType.READ_WRITE,
        format="%d",
        doc="frames taken for each trigger, at least 1",
    )
    def nFramesPerTrigger(self) -> int:
        return self._written.frames_per_trigger

    @nFramesPerTrigger.write
    def nFramesPerTrigger(self, value: int) -> None:
        self._in_limits("nFramesPerTrigger", value)
        self._update("nFramesPerTrigger", frames_per_trigger=value)

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc="HDF5 file of the next series, absolute inside or relative to the receiver's "
        "data root; empty: do not save (live view only)",
    )
    def DestinationFilename(self) -> str:
        return self._written.filename

    @DestinationFilename.write
    def DestinationFilename(self, value: str) -> None:
        self._update("DestinationFilename", filename=value)

    @attribute(
        dtype=str,
        access=AttrWriteType.READ_WRITE,
        doc="the same as DestinationFilename (the name MAX IV's Pilatus clients use)",
    )
    def Filename(self) -> str:
        return self._written.filename

    @Filename.write
    def Filename(self, value: str) -> None:
        self._update("Filename", filename=value)

    # Progress and receiver

    @attribute(dtype=int, format="%d", doc="frames received in the current or last series")
    def nFramesAcquired(self) -> int:
        return self._frames_acquired()

    @attribute(dtype=int, format="%d", doc="frames the current or last series will hold")
    def nFramesExpected(self) -> int:
        return self._written.n_triggers * self._written.frames_per_trigger

    @attribute(dtype=str, doc="the receiver's state: idle, running or error")
    def ReceiverState(self) -> str:
        return str(self._receiver_status().state)

    @attribute(
        dtype=int, format="%d", doc="frames the receiver wrote in the current or last series"
    )
    def nFramesWritten(self) -> int:
        return self._receiver_status().frames_written

    @attribute(dtype=str, doc="the file the receiver writes (or last wrote)")
    def ReceiverFile(self) -> str:
        return self._receiver_status().filename

    @attribute(dtype=str, doc="the receiver in use: embedded (with its HTTP API) or remote URL")
    def ReceiverDescription(self) -> str:
        return self._loop().receiver.description

    @attribute(
        dtype=((np.float32,),),
        max_dim_x=MAX_IMAGE_SIDE,
        max_dim_y=MAX_IMAGE_SIDE,
        unit="counts",
        doc="the latest frame the receiver got, downsampled as the receiver is set (live view)",
    )
    def LastImage(self) -> np.ndarray:
        try:
            image = self._loop().receiver.last_image()
        except ReceiverUnreachable as exc:
            _refuse("ReceiverUnreachable", str(exc), "DetectorDevice.LastImage")
        if image is None:
            return np.zeros((0, 0), np.float32)
        while image.ndim > 2:
            image = image[0]
        return np.asarray(image, np.float32)

    def _receiver_status(self) -> ReceiverStatus:
        try:
            return self._loop().receiver.status()
        except ReceiverUnreachable as exc:
            _refuse("ReceiverUnreachable", str(exc), "DetectorDevice")


def main(args: list[str] | None = None) -> int:
    """``DetectorDevice <instance>``: the device server (standard Tango options apply).

    Started by hand or by Starter, it behaves the same: one process per
    instance and database, ended cleanly by SIGTERM or SIGINT.
    """
    argv = [PROG, *(sys.argv[1:] if args is None else args[1:])]
    # Starter forks its servers from a thread that blocks SIGINT, SIGTERM and more, and a
    # signal mask survives exec: without this, the server ignored both. Cleared before any
    # thread starts, so every thread of the server starts with an empty mask.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if HELP_OPTIONS.intersection(argv[1:]):
        print(
            f"{PROG} INSTANCE: the detector-daq Tango device server (MAX IV detector interface). "
            "INSTANCE is a server loaded into the database of TANGO_HOST (daq-tango load), "
            "e.g. det01; its device's properties are described in docs/tango.md.\n"
        )
        parse_tango_args(list(argv))  # prints Tango's own options and exits
        return 0
    refusal = _argument_refusal(argv)
    if refusal is not None:
        print(f"{PROG}: error: {refusal}", file=sys.stderr)
        return 2
    instance = argv[1]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    tango_host = _tango_host(argv)
    lock = contextlib.nullcontext() if tango_host is None else instance_lock(instance, tango_host)
    try:
        with lock:
            run((DetectorDevice,), args=argv, raises=True)
    except InstanceRunning as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the lock's directory or file
        print(f"{PROG}: cannot take the instance lock: {exc}", file=sys.stderr)
        return 1
    except DevFailed as exc:
        print(f"{PROG} {instance}: {_desc(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _argument_refusal(argv: list[str]) -> str | None:
    """What is wrong with the command line, in one line (None when Tango can take it).

    Tango's own parser (pytango's) reads the options; its usage and error go
    to stderr on two lines, so it is asked here with stderr captured, and
    only its error line is kept.
    """
    if len(argv) < 2 or argv[1].startswith("-"):
        return (
            "give the server instance first, e.g. DetectorDevice det01 "
            "(the instance loaded with daq-tango load; Tango options after it, see --help)"
        )
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            parse_tango_args(list(argv))
    except SystemExit as exc:
        lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        message = lines[-1] if lines else str(exc.code)
        return message.split(": error: ", 1)[-1]
    return None


def _tango_host(argv: list[str]) -> str | None:
    """The database this server registers with; None for -nodb and -file servers (no lock)."""
    if any(arg in ("-nodb", "--nodb") or arg.startswith(("-file", "--file")) for arg in argv):
        return None
    try:
        return str(ApiUtil.get_env_var("TANGO_HOST") or "")
    except DevFailed:
        return ""


def _desc(exc: DevFailed) -> str:
    """The most specific description of a DevFailed, on one line."""
    errors = exc.args
    text = errors[0].desc if errors else str(exc)
    return " ".join(str(text).split())


class InstanceRunning(RuntimeError):
    """Another process already serves this instance on this database."""


def instance_lock_path(instance: str, tango_host: str) -> Path:
    """The lock file of ``instance`` on database ``tango_host``, for this user."""
    key = re.sub(r"[^A-Za-z0-9._-]", "_", f"{instance}@{tango_host}".lower())
    return Path(tempfile.gettempdir()) / f"detector-daq-{os.getuid()}" / f"{PROG}-{key}.lock"


@contextlib.contextmanager
def instance_lock(instance: str, tango_host: str) -> Iterator[Path]:
    """Hold, while the server runs, the lock that makes it start once per instance and database.

    Tango refuses a second server of one instance only once the first has
    exported its admin device; one started while the first is still starting
    (Starter takes DevStart again until it sees the first running) can pass
    that check and run beside it. The lock is the kernel's (``flock``), so it
    ends with the process however the process ends; the file is removed on
    the way out.
    """
    path = instance_lock_path(instance, tango_host)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    while True:
        lock = path.open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            where = f"on TANGO_HOST {tango_host}" if tango_host else "on the default database"
            raise InstanceRunning(
                f"{instance} is already running {where} (pid {holder}); stop that one first "
                f"(DevStop on Starter, or kill {holder})"
            ) from None
        if _same_file(lock, path):
            break
        lock.close()  # the holder removed it on its way out between our open and our lock
    try:
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield path
    finally:
        path.unlink(missing_ok=True)
        lock.close()


def _same_file(lock: TextIO, path: Path) -> bool:
    try:
        return os.fstat(lock.fileno()).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False

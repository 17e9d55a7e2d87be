"""A simulated Pilatus3 camserver: its TCP command protocol and the CBF files it writes.

The protocol follows PROTOCOLS.md ("Pilatus camserver (TCP)") to the
character, and what real clients expect of it (MAX IV's Pilatus client
regexes, LIMA's Pilatus plugin and the areaDetector driver, which between
them terminate commands with ``\\0``, ``\\x18`` or ``\\n``: all three are
accepted; ``\\r`` is ignored). Every reply ends in ``\\x18``:

====================  =========================================================
command               reply
====================  =========================================================
``exptime [s]``       ``15 OK Exposure time set to: 0.1000000 sec.``
``expperiod [s]``     ``15 OK Exposure period set to: 0.1000000 sec``
``nimages [n]``       ``15 OK N images set to: 10``
``nexpframe [n]``     ``15 OK Exposures per frame set to: 1`` (text not verified)
``delay [s]``         ``15 OK Delay time set to: 0.0000000 sec.`` (text not verified)
``setenergy [eV]``    ``15 OK Energy setting: 12000 eV``
``imgpath [dir]``     ``10 OK /ramdisk/images/``
``exposure <file>``   ``15 OK  Starting 0.1000000 second background: 2024-Jun-01T12:00:00.000``,
                      later ``7 OK /ramdisk/images/<last file>`` (or ``7 ERR <why>``)
``exttrigger``,       the same; the series waits for the trigger input (one trigger for
``extmtrigger``,      all frames, one per frame, or one gate per frame)
``extenable <file>``
``k``, ``camcmd k``   ``13 ERR kill`` (LIMA's capture of a real camserver), then the
                      series' ``7 OK <last file>``
unknown               ``1 ERR *** Unrecognized command: <word>``
refused setting       ``15 ERR ERROR: <reason>`` (``10 ERR ...`` for imgpath)
====================  =========================================================

A setting without a value reads it back. Command words are case-insensitive
and may be abbreviated to any unique prefix (``expt``, ``ni``), as camserver
allows. One image file per frame, named by camserver's rule (see
:func:`series_names`), written at the exposure period into ``imgpath`` by a
:class:`~sim.pilatus.ramdisk.RamDisk`; pixels are
:func:`sim.frames.synthetic_frame` of the frame's index in the series, so a
test can check every file. External triggers and gates arrive on a ZeroMQ
:class:`~sim.trigger_input.TriggerInput`, as for the generic simulated detector.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import zmq

from sim.frames import synthetic_frame
from sim.pilatus import cbf
from sim.pilatus.ramdisk import RamDisk, RamDiskFull
from sim.trigger_input import TriggerInput

logger = logging.getLogger(__name__)

PILATUS3_2M_SHAPE = (1679, 1475)
READOUT_S = 0.00095
"""Pilatus3 readout time: the exposure period must exceed the exposure time by this."""
ENERGY_RANGE_EV = (2_000.0, 40_000.0)
MAX_IMAGES = 999_999
REPLY_END = b"\x18"
COMMAND_END = re.compile(rb"[\x00\x18\n]")
ACQUISITIONS = ("exposure", "exttrigger", "extmtrigger", "extenable")
COMMANDS = (
    "exptime",
    "expperiod",
    "nimages",
    "nexpframe",
    "delay",
    "setenergy",
    "imgpath",
    *ACQUISITIONS,
    "k",
    "camcmd",
)
WAIT_S = 0.1


class CamserverError(RuntimeError):
    """The simulator cannot start (a port or trigger input that cannot be bound)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """camserver's settings, as its commands set and read them."""

    exptime: float = 1.0
    expperiod: float = 1.05
    nimages: int = 1
    nexpframe: int = 1
    delay: float = 0.0
    energy: float = 12_000.0


@dataclass(frozen=True, slots=True)
class SeriesNames:
    """The file names of one series, by camserver's rule (areaDetector's Pilatus doc).

    One image: the name as given. Several: the digits after the last ``_``
    (at least 3) give the first number and the width (5 when fewer than 3,
    or too few for the count); otherwise ``_`` is appended and numbering
    starts at 0 with 5 digits: ``test6.cbf`` -> ``test6_00000.cbf``,
    ``test6_014.cbf`` -> ``test6_014.cbf``, ``test6_015.cbf``, ...
    """

    given: str
    count: int
    prefix: str
    start: int
    width: int
    extension: str

    def name(self, index: int) -> str:
        if self.count == 1:
            return self.given
        return f"{self.prefix}{self.start + index:0{self.width}d}{self.extension}"


def series_names(given: str, count: int) -> SeriesNames:
    """How camserver names the ``count`` files of a series started with file name ``given``."""
    stem, dot, extension = given.rpartition(".")
    if not dot or "/" in extension or len(extension) > 4:
        stem, extension = given, ""
    else:
        extension = "." + extension
    head, _, last = stem.rpartition("_")
    digits = re.match(r"\d*", last)[0] if _ else ""
    if len(digits) >= 3 and digits == last:
        width = len(digits)
        if width < 3 or (width == 3 and count > 999) or (width == 4 and count > 9999):
            width = 5
        return SeriesNames(given, count, head + "_", int(digits), width, extension)
    prefix = stem if stem.endswith("_") else stem + "_"
    return SeriesNames(given, count, prefix, 0, 5, extension)


def resolve_command(word: str) -> str | None:
    """The command ``word`` names: exact, or a unique prefix (case-insensitive)."""
    word = word.lower()
    if word in COMMANDS:
        return word
    matches = [name for name in COMMANDS if name.startswith(word)]
    return matches[0] if len(matches) == 1 else None


def _timestamp(when: datetime) -> str:
    return when.strftime("%Y-%b-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


class _Connection:
    """One client; replies may come from its reader and from a series thread."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self._lock = threading.Lock()

    def reply(self, text: str) -> None:
        with self._lock:
            try:
                self.sock.sendall(text.encode("ascii", "replace") + REPLY_END)
            except OSError:
                logger.info("camserver: client %s gone; reply %r dropped", self.peer, text)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class _Stopped(Exception):
    """A kill (or the simulator's close) ended the series."""


@dataclass
class _Series:
    command: str
    names: SeriesNames
    directory: Path
    settings: Settings
    client: _Connection
    kill: threading.Event
    triggers: queue.Queue[float]
    thread: threading.Thread | None = None
    last_file: Path | None = None


class CamserverSimulator:
    """Listens on ``host:port`` (0 = any free port) at construction; ``close`` ends everything.

    ``ramdisk`` decides how files appear and how much room there is;
    ``trigger_endpoint`` (a ZeroMQ address) is the external trigger input.
    """

    def __init__(
        self,
        imgpath: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        trigger_endpoint: str | None = None,
        shape: Sequence[int] = PILATUS3_2M_SHAPE,
        ramdisk: RamDisk | None = None,
        detector: str = "PILATUS3 2M, S/N 24-0000 (simulated)",
    ) -> None:
        self.shape = tuple(int(n) for n in shape)
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise CamserverError(f"a Pilatus frame is rows x columns, not {shape}")
        self.detector = detector
        self.ramdisk = ramdisk or RamDisk()
        self._imgpath = Path(imgpath)
        self._settings = Settings()
        self._lock = threading.Lock()
        self._series: _Series | None = None
        self._closing = threading.Event()
        self._clients: set[_Connection] = set()
        self._threads: list[threading.Thread] = []
        self.received: list[str] = []
        """Every command line received, in order (tests assert what a client sent)."""
        self.frames_written = 0
        self.series_started = 0
        self.triggers_ignored = 0
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(WAIT_S)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._context = zmq.Context()
        self._trigger_input: TriggerInput | None = None
        if trigger_endpoint:
            try:
                self._trigger_input = TriggerInput(self._context, trigger_endpoint, self._pulse)
            except OSError as exc:
                self._listener.close()
                self._context.term()
                raise CamserverError(str(exc)) from None
            self._trigger_input.start()
        self._acceptor = threading.Thread(target=self._accept, name="camserver-accept")
        self._acceptor.start()

    @property
    def trigger_endpoint(self) -> str | None:
        return self._trigger_input.endpoint if self._trigger_input else None

    @property
    def imgpath(self) -> Path:
        return self._imgpath

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def running(self) -> bool:
        return self._series is not None

    def fire_external(self, width: float = 0.0) -> None:
        """A pulse on the trigger input, as :class:`TriggerInput` delivers it."""
        self._pulse(width)

    def close(self) -> None:
        """Go away as a camserver process that ends: series killed without a ``7`` reply."""
        self._closing.set()
        self._acceptor.join()
        self._listener.close()
        with self._lock:
            clients = list(self._clients)
            series = self._series
        if series is not None:
            series.kill.set()
        for client in clients:
            client.close()
        for thread in self._threads:
            thread.join()
        series = self._series or series
        if series is not None:
            series.kill.set()
            if series.thread is not None and series.thread.ident is not None:
                series.thread.join()
        if self._trigger_input is not None:
            self._trigger_input.stop()
        self._context.term()

    # --- connections -------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if not self._closing.is_set():
                    raise
                return
            client = _Connection(sock, f"{peer[0]}:{peer[1]}")
            with self._lock:
                self._clients.add(client)
            thread = threading.Thread(target=self._serve, args=(client,), name="camserver-client")
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: _Connection) -> None:
        logger.info("camserver: client %s connected", client.peer)
        pending = b""
        try:
            while True:
                try:
                    data = client.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                pending += data
                *commands, pending = COMMAND_END.split(pending)
                for raw in commands:
                    line = raw.decode("ascii", "replace").replace("\r", "").strip()
                    reply = self.execute(line, client) if line else None
                    if reply is not None:
                        client.reply(reply)
        finally:
            with self._lock:
                self._clients.discard(client)
            client.sock.close()
            logger.info("camserver: client %s disconnected", client.peer)

    # --- commands ----------------------------------------------------------------------

    def execute(self, line: str, client: _Connection) -> str | None:
        """The reply to one command line (without its terminator); None when already sent."""
        self.received.append(line)
        word, _, argument = line.partition(" ")
        argument = argument.strip()
        command = resolve_command(word)
        if command is None:
            return f"1 ERR *** Unrecognized command: {word}"
        if command in ACQUISITIONS:
            return self._start(command, argument, client)
        if command in ("k", "camcmd"):
            if command == "camcmd" and argument.lower() != "k":
                return f"1 ERR *** Unrecognized command: camcmd {argument}"
            self._kill(client)
            return None
        if command == "imgpath":
            return self._imgpath_command(argument)
        return self._setting(command, argument)

    def _setting(self, command: str, argument: str) -> str:
        if argument:
            if self._series is not None:
                return (
                    f"15 ERR ERROR: {command} cannot change while an exposure runs "
                    "(wait for its 7 reply or send k)"
                )
            try:
                self._settings = self._changed(command, argument)
            except ValueError as exc:
                return f"15 ERR ERROR: {exc}"
        s = self._settings
        texts = {
            "exptime": f"Exposure time set to: {s.exptime:.7f} sec.",
            "expperiod": f"Exposure period set to: {s.expperiod:.7f} sec",
            "nimages": f"N images set to: {s.nimages}",
            "nexpframe": f"Exposures per frame set to: {s.nexpframe}",
            "delay": f"Delay time set to: {s.delay:.7f} sec.",
            "setenergy": f"Energy setting: {s.energy:.0f} eV",
        }
        return f"15 OK {texts[command]}"

    def _changed(self, command: str, argument: str) -> Settings:
        s = self._settings
        if command in ("nimages", "nexpframe"):
            try:
                count = int(argument)
            except ValueError:
                raise ValueError(f"{command} takes a whole number, not {argument!r}") from None
            if not 1 <= count <= MAX_IMAGES:
                raise ValueError(f"{command} must be 1 to {MAX_IMAGES}, not {count}")
            return replace(s, **{command: count})
        try:
            value = float(argument)
        except ValueError:
            raise ValueError(f"{command} takes a number, not {argument!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{command} must be finite, not {argument!r}")
        if command == "setenergy":
            low, high = ENERGY_RANGE_EV
            if not low <= value <= high:
                raise ValueError(
                    f"energy {value:.0f} eV outside the calibrated range {low:.0f}-{high:.0f} eV"
                )
            return replace(s, energy=value)
        if command == "delay":
            if value < 0:
                raise ValueError(f"delay must be >= 0 s, not {value:g}")
            return replace(s, delay=value)
        if value <= 0:
            raise ValueError(f"{command} must be > 0 s, not {value:g}")
        return replace(s, **{command: value})

    def _imgpath_command(self, argument: str) -> str:
        if argument:
            if self._series is not None:
                return "10 ERR ERROR: imgpath cannot change while an exposure runs"
            directory = Path(argument)
            if not directory.is_dir():
                return f"10 ERR ERROR: {argument}: no such directory"
            self._imgpath = directory
        return f"10 OK {str(self._imgpath).rstrip('/')}/"

    def _start(self, command: str, argument: str, client: _Connection) -> str | None:
        """Refuse with the reason, or reply ``15 OK  Starting`` and start the series thread."""
        with self._lock:
            if self._series is not None:
                return (
                    "15 ERR ERROR: an exposure is already running (wait for its 7 reply or send k)"
                )
            if not argument:
                return f"15 ERR ERROR: {command} needs an image file name, e.g. {command} scan.cbf"
            if not argument.lower().endswith(".cbf"):
                return f"15 ERR ERROR: this camserver writes CBF only: name the file {argument}.cbf"
            path = Path(argument) if argument.startswith("/") else self._imgpath / argument
            if not path.parent.is_dir():
                return f"15 ERR ERROR: {path.parent}: no such directory"
            s = self._settings
            if (
                s.nimages > 1
                and command in ("exposure", "exttrigger")
                and s.expperiod < s.exptime + READOUT_S - 1e-12
            ):
                return (
                    f"15 ERR ERROR: exposure period {s.expperiod:.7f} s is shorter than the "
                    f"exposure time {s.exptime:.7f} s plus the {READOUT_S * 1e3:.2f} ms readout"
                )
            try:
                self.ramdisk.check_room(path.parent, self._frame_bytes())
            except RamDiskFull as exc:
                return f"15 ERR ERROR: {exc}"
            series = _Series(
                command,
                series_names(path.name, s.nimages),
                path.parent,
                s,
                client,
                threading.Event(),
                queue.Queue(),
            )
            if self._closing.is_set():
                return "15 ERR ERROR: camserver is shutting down"
            self._series = series
            self.series_started += 1
        client.reply(
            f"15 OK  Starting {s.exptime:.7f} second background: {_timestamp(datetime.now())}"
        )
        series.thread = threading.Thread(target=self._run, args=(series,), name="camserver-series")
        series.thread.start()
        return None

    def _frame_bytes(self) -> int:
        """A conservative size of one image file (byte-offset of low counts: about 1 byte/pixel)."""
        return self.shape[0] * self.shape[1] + 8192

    def _kill(self, client: _Connection) -> None:
        """``13 ERR kill`` first, then the series ends and sends its ``7`` reply."""
        client.reply("13 ERR kill")
        series = self._series
        if series is not None:
            series.kill.set()

    def _pulse(self, width: float) -> None:
        series = self._series
        if series is not None and series.command != "exposure":
            series.triggers.put(width)
        else:
            self.triggers_ignored += 1
            logger.info("camserver: trigger pulse ignored (no external-trigger series running)")

    # --- the series --------------------------------------------------------------------

    def _run(self, series: _Series) -> None:
        """Frames as the command says, then the ``7`` reply to the client that started it."""
        reply = ""
        try:
            self._frames(series)
        except _Stopped:
            logger.info("camserver: series killed after %s", series.last_file)
        except OSError as exc:
            reply = f"7 ERR ERROR: {exc}"
            logger.warning("camserver: series failed: %s", exc)
        with self._lock:
            self._series = None
        if not reply:
            last = series.last_file or series.directory / series.names.name(0)
            reply = f"7 OK {last}"
        if not self._closing.is_set():
            series.client.reply(reply)

    def _frames(self, series: _Series) -> None:
        s = series.settings
        if series.command == "exposure":
            self._burst(series, time.monotonic())
        elif series.command == "exttrigger":
            self._wait_trigger(series)
            self._burst(series, time.monotonic() + s.delay)
        elif series.command == "extmtrigger":
            for index in range(s.nimages):
                self._wait_trigger(series)
                self._sleep(series, s.delay + s.exptime)
                self._image(series, index, s.exptime)
        else:
            for index in range(s.nimages):
                width = self._wait_trigger(series)
                self._sleep(series, width)
                self._image(series, index, width)

    def _burst(self, series: _Series, start: float) -> None:
        s = series.settings
        for index in range(s.nimages):
            due = start + index * s.expperiod + s.exptime
            self._sleep(series, due - time.monotonic())
            self._image(series, index, s.exptime)

    def _wait_trigger(self, series: _Series) -> float:
        while True:
            if series.kill.is_set():
                raise _Stopped
            try:
                return series.triggers.get(timeout=WAIT_S)
            except queue.Empty:
                continue

    def _sleep(self, series: _Series, seconds: float) -> None:
        if series.kill.is_set() or (seconds > 0 and series.kill.wait(seconds)):
            raise _Stopped

    def _image(self, series: _Series, index: int, exposure_time: float) -> None:
        name = series.names.name(index)
        header = cbf.CbfHeader(
            detector=self.detector,
            exposure_time=exposure_time,
            exposure_period=series.settings.expperiod,
            energy_ev=series.settings.energy,
            image_path=str(series.directory),
        )
        pixels = synthetic_frame(index, self.shape, "int32")
        data = cbf.encode(pixels, name, header, datetime.now())
        path = series.directory / name
        self.ramdisk.write(path, data, series.kill)
        series.last_file = path
        self.frames_written += 1

"""A simulated Pilatus3 camserver: its TCP command protocol and the CBF files it writes.

It answers camserver's dialogue as :mod:`protocols.camserver` defines it
(commands, abbreviations, reply texts to the character; docs/pilatus.md says
which texts real clients confirm) and writes the files :mod:`protocols.cbf`
encodes: one per frame, named by camserver's rule
(:class:`~protocols.camserver.SeriesNames`), written at the exposure period
into ``imgpath`` by a :class:`~sim.pilatus.ramdisk.RamDisk`. Pixels are
:func:`sim.frames.synthetic_frame` of the frame's index in the series, so a
test can check every file. External triggers and gates arrive on a ZeroMQ
:class:`~sim.trigger_input.TriggerInput`, as for the generic simulated detector.

What a real camserver was not seen to answer is this simulator's choice: the
refusals' reasons, the replies while a series runs (settings refused), ``7 ERR``
texts (RAM disk full), ``13 ERR kill`` when nothing runs. ``setenergy`` sets
the threshold to half the energy, as a Pilatus3 does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import zmq

from protocols import cbf
from protocols.camserver import (
    ACQUISITIONS,
    CODE_COMMAND,
    CODE_IMGPATH,
    CODE_KILL,
    CODE_SERIES_END,
    EXPOSURE,
    EXTMTRIGGER,
    EXTTRIGGER,
    GAINS,
    READOUT_S,
    THRESHOLD_SET,
    SeriesNames,
    encode_reply,
    format_reply,
    is_burst,
    read_commands,
    refusal,
    resolve_command,
    setting_reply,
    split_command,
    starting_reply,
    threshold_reply,
    unrecognized,
)
from sim.frames import synthetic_frame
from sim.pilatus.ramdisk import RamDisk, RamDiskFull
from sim.trigger_input import TriggerInput

logger = logging.getLogger(__name__)

PILATUS3_2M_SHAPE = (1679, 1475)
ENERGY_RANGE_EV = (2_000.0, 40_000.0)
MAX_IMAGES = 999_999
WAIT_S = 0.1


class CamserverError(RuntimeError):
    """The simulator cannot start (a port or trigger input that cannot be bound)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """camserver's settings, as its commands set and read them (``gain`` as read back)."""

    exptime: float = 1.0
    expperiod: float = 1.05
    nimages: int = 1
    nexpframe: int = 1
    delay: float = 0.0
    energy: float = 12_000.0
    threshold: float = 6_000.0
    gain: str = "mid"


def _busy(command: str) -> str:
    return f"{command} cannot change while an exposure runs (wait for its 7 reply or send k)"


class _Connection:
    """One client; replies may come from its reader and from a series thread."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self._lock = threading.Lock()

    def reply(self, text: str) -> None:
        with self._lock:
            try:
                self.sock.sendall(encode_reply(text))
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
                lines, pending = read_commands(pending + data)
                for line, _ in lines:
                    reply = self.execute(line, client)
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
        word, argument = split_command(line)
        command = resolve_command(word)
        if command is None:
            return unrecognized(word)
        if command in ACQUISITIONS:
            return self._start(command, argument, client)
        if command in ("k", "camcmd"):
            if command == "camcmd" and argument.lower() != "k":
                return unrecognized(f"camcmd {argument}")
            self._kill(client)
            return None
        if command == "imgpath":
            return self._imgpath_command(argument)
        if command == "setthreshold":
            return self._threshold(argument)
        return self._setting(command, argument)

    def _setting(self, command: str, argument: str) -> str:
        if argument:
            if self._series is not None:
                return refusal(CODE_COMMAND, _busy(command))
            try:
                self._settings = self._changed(command, argument)
            except ValueError as exc:
                return refusal(CODE_COMMAND, str(exc))
        s = self._settings
        values = {
            "exptime": s.exptime,
            "expperiod": s.expperiod,
            "nimages": s.nimages,
            "nexpframe": s.nexpframe,
            "delay": s.delay,
            "setenergy": s.energy,
        }
        return setting_reply(command, values[command])

    def _threshold(self, argument: str) -> str:
        """``setthreshold [gain] eV`` sets the threshold; bare, it reads it back."""
        if not argument:
            return threshold_reply(self._settings.gain, self._settings.threshold)
        if self._series is not None:
            return refusal(CODE_COMMAND, _busy("setthreshold"))
        *gain_word, value = argument.split()
        gain = GAINS.get(gain_word[0].lower()) if gain_word else self._settings.gain
        if gain is None or len(gain_word) > 1:
            return refusal(CODE_COMMAND, f"unknown gain setting: {argument}")
        try:
            threshold = float(value)
        except ValueError:
            return refusal(CODE_COMMAND, f"setthreshold takes [gain] eV, not {argument!r}")
        if not (math.isfinite(threshold) and threshold >= 0):
            return refusal(CODE_COMMAND, f"threshold must be >= 0 eV, not {value}")
        self._settings = replace(self._settings, gain=gain, threshold=threshold)
        return format_reply(CODE_COMMAND, True, THRESHOLD_SET)

    def _changed(self, command: str, argument: str) -> Settings:
        s = self._settings
        if command in ("nimages", "nexpframe"):
            try:
                count = int(argument)
            except ValueError:
                raise ValueError(f"{command} takes a whole number, not {argument!r}") from None
            if not 1 <= count <= MAX_IMAGES:
                raise ValueError(f"{command} must be 1 to {MAX_IMAGES}, not {count}")
            return (
                replace(s, nimages=count) if command == "nimages" else replace(s, nexpframe=count)
            )
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
            return replace(s, energy=value, threshold=value / 2)
        if command == "delay":
            if value < 0:
                raise ValueError(f"delay must be >= 0 s, not {value:g}")
            return replace(s, delay=value)
        if value <= 0:
            raise ValueError(f"{command} must be > 0 s, not {value:g}")
        return replace(s, exptime=value) if command == "exptime" else replace(s, expperiod=value)

    def _imgpath_command(self, argument: str) -> str:
        if argument:
            if self._series is not None:
                return refusal(CODE_IMGPATH, "imgpath cannot change while an exposure runs")
            directory = Path(argument)
            if not directory.is_dir():
                return refusal(CODE_IMGPATH, f"{argument}: no such directory")
            self._imgpath = directory
        return format_reply(CODE_IMGPATH, True, f"{str(self._imgpath).rstrip('/')}/")

    def _start(self, command: str, argument: str, client: _Connection) -> str | None:
        """Refuse with the reason, or reply ``15 OK  Starting`` and start the series thread."""
        with self._lock:
            if self._series is not None:
                return refusal(
                    CODE_COMMAND, "an exposure is already running (wait for its 7 reply or send k)"
                )
            if not argument:
                return refusal(
                    CODE_COMMAND, f"{command} needs an image file name, e.g. {command} scan.cbf"
                )
            if not argument.lower().endswith(".cbf"):
                return refusal(
                    CODE_COMMAND, f"this camserver writes CBF only: name the file {argument}.cbf"
                )
            path = Path(argument) if argument.startswith("/") else self._imgpath / argument
            if not path.parent.is_dir():
                return refusal(CODE_COMMAND, f"{path.parent}: no such directory")
            s = self._settings
            if is_burst(command, s.nimages) and s.expperiod < s.exptime + READOUT_S - 1e-12:
                return refusal(
                    CODE_COMMAND,
                    f"exposure period {s.expperiod:.7f} s is shorter than the exposure time "
                    f"{s.exptime:.7f} s plus the {READOUT_S * 1e3:.2f} ms readout",
                )
            try:
                self.ramdisk.check_room(path.parent, self._frame_bytes())
            except RamDiskFull as exc:
                return refusal(CODE_COMMAND, str(exc))
            series = _Series(
                command,
                SeriesNames.of(path.name, s.nimages),
                path.parent,
                s,
                client,
                threading.Event(),
                queue.Queue(),
            )
            if self._closing.is_set():
                return refusal(CODE_COMMAND, "camserver is shutting down")
            self._series = series
            self.series_started += 1
        client.reply(starting_reply(s.exptime, datetime.now()))
        series.thread = threading.Thread(target=self._run, args=(series,), name="camserver-series")
        series.thread.start()
        return None

    def _frame_bytes(self) -> int:
        """A conservative size of one image file (byte-offset of low counts: about 1 byte/pixel)."""
        return self.shape[0] * self.shape[1] + 8192

    def _kill(self, client: _Connection) -> None:
        """``13 ERR kill`` first, then the series ends and sends its ``7`` reply."""
        client.reply(format_reply(CODE_KILL, False, "kill"))
        series = self._series
        if series is not None:
            series.kill.set()

    def _pulse(self, width: float) -> None:
        series = self._series
        if series is not None and series.command != EXPOSURE:
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
            reply = refusal(CODE_SERIES_END, str(exc))
            logger.warning("camserver: series failed: %s", exc)
        with self._lock:
            self._series = None
        if not reply:
            last = series.last_file or series.directory / series.names.name(0)
            reply = format_reply(CODE_SERIES_END, True, str(last))
        if not self._closing.is_set():
            series.client.reply(reply)

    def _frames(self, series: _Series) -> None:
        s = series.settings
        if series.command == EXPOSURE:
            self._burst(series, time.monotonic())
        elif series.command == EXTTRIGGER:
            self._wait_trigger(series)
            self._burst(series, time.monotonic() + s.delay)
        elif series.command == EXTMTRIGGER:
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
            threshold_ev=series.settings.threshold,
            image_path=str(series.directory),
        )
        pixels = synthetic_frame(index, self.shape, "int32")
        data = cbf.encode(pixels, name, header, datetime.now())
        path = series.directory / name
        self.ramdisk.write(path, data, series.kill)
        series.last_file = path
        self.frames_written += 1

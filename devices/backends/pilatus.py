"""The Pilatus3 backend: camserver's TCP protocol, spoken to the DCU's ``pilatus-streamer``.

The streamer (:mod:`streamers.pilatus`) runs on the DCU beside camserver,
streams the CBF files as STINS and proxies camserver's protocol
(:mod:`protocols.camserver`), so this backend runs wherever the Tango device
does. Properties: ``DetectorAddress`` is the streamer's proxy ``host:port``
(its ``--listen``), ``StreamAddress`` the streamer's STINS stream (its
``--stream``, as the receiver reaches it).

Arm sends ``exptime``, ``expperiod``, ``nimages`` (nTriggers x
nFramesPerTrigger), ``streamer_filename`` (the receiver's file) and then the
acquisition command of the trigger mode, and waits for camserver's
``15 OK``; the series is over when camserver's ``7`` reply arrives (``7 ERR``
or a lost connection: ERROR with the reason). A Pilatus has no software
trigger, so SOFTWARE is not offered.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from devices.backend import Backend, BackendError, BackendState, parse_options
from devices.settings import AcquisitionSettings, TriggerMode
from protocols import camserver
from protocols.camserver import READOUT_S, Reply

logger = logging.getLogger(__name__)

MODE_COMMANDS = {
    TriggerMode.INTERNAL: camserver.EXPOSURE,
    TriggerMode.EXTERNAL: camserver.EXTTRIGGER,
    TriggerMode.EXTERNAL_MULTI: camserver.EXTMTRIGGER,
    TriggerMode.GATE: camserver.EXTENABLE,
}
CONNECT_TIMEOUT_S = 3.0
REPLY_TIMEOUT_S = 5.0
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
_LOST = "\0lost"
EMPTY = '""'
"""How ``streamer_filename`` is told "no file": live view only."""


class PilatusOptions(BaseModel):
    """The device properties this backend reads."""

    model_config = ConfigDict(extra="ignore")

    detector_address: str = Field(alias="DetectorAddress", min_length=1)
    stream_address: str = Field("tcp://127.0.0.1:9999", alias="StreamAddress")


def _host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.strip().rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BackendError(
            f"DetectorAddress {text!r} is not host:port: set it to the pilatus-streamer's "
            "proxy address, e.g. dcu-host:8888"
        )
    return host.strip("[]"), int(port)


def _reason(detail: str) -> str:
    """A ``7 ERR``/``15 ERR`` text as the user should read it, saying who refused."""
    if detail.startswith("streamer: "):
        return f"pilatus-streamer: {detail.removeprefix('streamer: ')}"
    return f"camserver: {detail.removeprefix(camserver.ERROR_PREFIX)}"


class PilatusBackend(Backend):
    name = "pilatus"
    trigger_modes = frozenset(MODE_COMMANDS)
    stream_transforms = ({"kind": "cbf"},)

    def __init__(self, address: tuple[str, int], stream_endpoint: str) -> None:
        self._address = address
        self._where = f"{address[0]}:{address[1]}"
        self._stream_endpoint = stream_endpoint
        self._condition = threading.Condition()
        self._state = BackendState.IDLE
        self._error = ""
        self._ended = 0
        self._series_mark = 0
        self._replies: queue.Queue[str] = queue.Queue()
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._connect()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        opts = parse_options(
            PilatusOptions,
            options,
            "pilatus",
            " (DetectorAddress is the pilatus-streamer's proxy host:port, e.g. dcu-host:8888)",
        )
        return cls(_host_port(opts.detector_address), opts.stream_address)

    @property
    def stream_endpoint(self) -> str:
        return self._stream_endpoint

    @property
    def state(self) -> BackendState:
        return self._state

    @property
    def error(self) -> str:
        return self._error

    def arm(self, settings: AcquisitionSettings) -> None:
        command = MODE_COMMANDS.get(settings.trigger_mode)
        if command is None:
            raise BackendError(
                f"a Pilatus has no trigger mode {settings.trigger_mode.name}: use "
                f"{', '.join(mode.name for mode in MODE_COMMANDS)}"
            )
        if self._state is BackendState.ARMED:
            raise BackendError("already armed: stop the series first")
        nimages = settings.total_frames
        period = self._period(settings, command, nimages)
        if self._sock is None:
            self._connect()
        self._check(f"exptime {settings.exposure_time:.7f}")
        self._check(f"expperiod {period:.7f}")
        self._check(f"nimages {nimages}")
        self._check(f"streamer_filename {settings.filename or EMPTY}")
        name = datetime.now().strftime("series-%Y%m%d-%H%M%S-%f.cbf")
        with self._condition:
            mark = self._ended
        reply = self._ask(f"{command} {name}", START_TIMEOUT_S)
        self._raise_unless_ok(f"{command} {name}", reply)
        with self._condition:
            self._series_mark = mark
            if self._ended == mark:
                self._state, self._error = BackendState.ARMED, ""
        logger.info("pilatus: %s %s, %d images, armed", command, name, nimages)

    @staticmethod
    def _period(settings: AcquisitionSettings, command: str, nimages: int) -> float:
        """The exposure period to send; BackendError where the settings cannot work."""
        if command == camserver.EXTMTRIGGER and settings.frames_per_trigger != 1:
            raise BackendError(
                "a Pilatus takes one frame per trigger in EXTERNAL_MULTI: set nFramesPerTrigger "
                "to 1 and nTriggers to the number of triggers (or use EXTERNAL: one trigger, "
                "all frames)"
            )
        shortest = settings.exposure_time + READOUT_S
        if camserver.is_burst(command, nimages) and settings.frame_time < shortest:
            raise BackendError(
                f"FrameTime {settings.frame_time:g} s is too short: a Pilatus3 needs "
                f"ExposureTime ({settings.exposure_time:g} s) plus its {READOUT_S * 1e3:.2f} ms "
                f"readout, so FrameTime >= {shortest:.7f} s (or ExposureTime <= "
                f"{settings.frame_time - READOUT_S:.7f} s)"
            )
        return max(settings.frame_time, shortest)

    def trigger(self) -> None:
        raise BackendError(
            "a Pilatus has no software trigger: use TriggerMode INTERNAL, EXTERNAL, "
            "EXTERNAL_MULTI or GATE"
        )

    def stop(self) -> None:
        """Kill the series (``k``) and wait for camserver's ``7`` reply; never raises."""
        with self._condition:
            if self._state is not BackendState.ARMED:
                if self._state is BackendState.ERROR:
                    self._state, self._error = BackendState.IDLE, ""
                return
            mark = self._series_mark
        try:
            self._ask("k", REPLY_TIMEOUT_S)
        except BackendError as exc:
            self._fail(f"cannot stop the series: {exc}")
            return
        with self._condition:
            if not self._condition.wait_for(lambda: self._ended > mark, STOP_TIMEOUT_S):
                self._fail_locked(
                    f"camserver did not end the series within {STOP_TIMEOUT_S:g} s after k"
                )

    def close(self) -> None:
        self.stop()
        self._disconnect()

    # --- the connection ----------------------------------------------------------------

    def _connect(self) -> None:
        if self._reader is not None:
            self._reader.join()  # the reader of a lost connection, ending
            self._reader = None
        try:
            sock = socket.create_connection(self._address, timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            raise BackendError(
                f"cannot connect to the pilatus-streamer at {self._where} (DetectorAddress): "
                f"{exc.strerror or exc}; is pilatus-streamer running there?"
            ) from None
        sock.settimeout(None)
        self._replies = queue.Queue()
        self._sock = sock
        self._reader = threading.Thread(
            target=self._read, args=(sock, self._replies), name="pilatus-replies"
        )
        self._reader.start()
        reply = self._first_reply(sock)
        if reply.startswith("15 ERR streamer: "):
            self._disconnect()
            raise BackendError(
                f"the pilatus-streamer at {self._where} refused the connection: "
                f"{reply.removeprefix('15 ERR streamer: ')}"
            )
        if not reply.startswith("15 OK Streamer:"):
            self._disconnect()
            raise BackendError(
                f"{self._where} (DetectorAddress) is not a pilatus-streamer's proxy "
                f"(its answer to streamer_status: {reply!r}): point DetectorAddress at the "
                "streamer's --listen address, not at camserver"
            )

    def _first_reply(self, sock: socket.socket) -> str:
        """The answer to ``streamer_status`` on a new connection.

        Read from the inbox rather than through :meth:`_ask`: a proxy that
        refuses the connection sends its reason and hangs up at once, so the
        reader may already have marked the socket lost when the reason is read.
        """
        with contextlib.suppress(OSError):
            sock.sendall(b"streamer_status" + camserver.SEND_END)
        try:
            reply = self._replies.get(timeout=REPLY_TIMEOUT_S)
        except queue.Empty:
            self._disconnect()
            raise BackendError(
                f"no answer from {self._where} (DetectorAddress) to streamer_status within "
                f"{REPLY_TIMEOUT_S:g} s: is it a pilatus-streamer's proxy?"
            ) from None
        if reply == _LOST:
            self._disconnect()
            raise BackendError(
                f"{self._where} (DetectorAddress) closed the connection without answering: "
                "is it a pilatus-streamer's proxy?"
            )
        return reply

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._reader is not None:
            self._reader.join()
            self._reader = None

    def _read(self, sock: socket.socket, inbox: queue.Queue[str]) -> None:
        """Replies in order to the waiting command; ``7`` ends the series; EOF = lost."""
        pending = b""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            replies, pending = camserver.read_replies(pending + data)
            for text in replies:
                reply = camserver.parse_reply(text)
                if reply is not None and reply.code == camserver.CODE_SERIES_END:
                    self._series_over(reply)
                else:
                    inbox.put(text)
        inbox.put(_LOST)
        self._lost(sock)

    def _series_over(self, reply: Reply) -> None:
        with self._condition:
            self._ended += 1
            if reply.ok:
                if self._state is BackendState.ARMED:
                    self._state = BackendState.IDLE
                logger.info("pilatus: series done (%s)", reply.text)
            else:
                self._fail_locked(f"the series failed: {_reason(reply.text.strip())}")
            self._condition.notify_all()

    def _lost(self, sock: socket.socket) -> None:
        with self._condition:
            if self._sock is not sock:
                return  # closed on purpose, or an earlier connection
            self._sock = None
            sock.close()
            if self._state is BackendState.ARMED:
                self._fail_locked(
                    f"lost the connection to the pilatus-streamer at {self._where} during "
                    "the series: is pilatus-streamer still running?"
                )
            self._condition.notify_all()

    def _ask(self, command: str, timeout: float = REPLY_TIMEOUT_S) -> str:
        """Send ``command``, return its reply; replies nobody waited for are dropped first."""
        sock = self._sock
        if sock is None:
            raise BackendError(
                f"not connected to the pilatus-streamer at {self._where} (DetectorAddress)"
            )
        while not self._replies.empty():
            stale = self._replies.get_nowait()
            if stale == _LOST:
                self._replies.put(_LOST)
                break
            logger.warning("pilatus: unexpected reply %r before %r", stale, command)
        try:
            sock.sendall(command.encode("ascii") + camserver.SEND_END)
        except OSError as exc:
            raise BackendError(
                f"lost the connection to the pilatus-streamer at {self._where}: "
                f"{exc.strerror or exc}"
            ) from None
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise BackendError(
                f"no answer from the pilatus-streamer at {self._where} to {command!r} "
                f"within {timeout:g} s"
            ) from None
        if reply == _LOST:
            self._replies.put(_LOST)
            raise BackendError(
                f"the pilatus-streamer at {self._where} closed the connection "
                f"(sending {command!r}): is it still running?"
            )
        return reply

    def _check(self, command: str) -> str:
        reply = self._ask(command)
        self._raise_unless_ok(command, reply)
        return reply

    @staticmethod
    def _raise_unless_ok(command: str, reply: str) -> None:
        parsed = camserver.parse_reply(reply)
        if parsed is None:
            raise BackendError(f"unexpected answer to {command!r}: {reply!r}")
        if not parsed.ok:
            raise BackendError(f"{command!r} refused by {_reason(parsed.text)}")

    def _fail(self, reason: str) -> None:
        with self._condition:
            self._fail_locked(reason)

    def _fail_locked(self, reason: str) -> None:
        self._state, self._error = BackendState.ERROR, reason
        logger.warning("pilatus: %s", reason)

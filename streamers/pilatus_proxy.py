"""The Pilatus streamer's control side: camserver's TCP protocol, proxied.

The Tango device (its Pilatus backend) need not run on the DCU: it talks
camserver's own protocol (PROTOCOLS.md) to this proxy, which forwards every
command to camserver over one connection it keeps, and every reply back,
unchanged. On the way it learns what the image side must know: ``nimages``,
``exptime`` and ``expperiod`` from camserver's replies, and from an accepted
``exposure``/``exttrigger``/``extmtrigger``/``extenable <file>`` that a series
of ``nimages`` files named after ``<file>`` starts; camserver's ``7`` reply ends
it. MAX IV's own Pilatus streamer works the same way, on port 8888.

Commands the proxy answers itself (never forwarded):

``streamer_filename [name]``
    The receiver's file name for the next series (empty: live view only, not
    saved). It is sent in that series' STINS header and then forgotten, so a
    stale name never reaches the next series. Quotes around the name are
    removed (``streamer_filename ""`` sets it empty). Reply:
    ``15 OK Streamer filename set to: <name>``; without a value it reads it back.
``streamer_status``
    ``15 OK Streamer: idle|running <file>; <n> series, <m> frames sent on <endpoint>``.

The proxy refuses (``15 ERR streamer: <reason>``; ``10 ERR`` for imgpath)
what would leave files it cannot stream: an ``imgpath`` other than the
directory it watches (it sets that one on camserver itself when it
connects), an image name that is not a ``.cbf`` file directly in it, or
whose files are already there, and a second series while one runs. When
camserver's connection is lost, a running series ends (``7 ERR streamer:
...`` to the client, a series end on the stream) and every command waiting
for an answer gets ``ERR``; the next command reconnects. One client at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import selectors
import socket
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from streamers.pilatus_stream import CamserverNames, ImageStreamer, SeriesDone, SeriesStart

logger = logging.getLogger(__name__)

REPLY_END = b"\x18"
COMMAND_SPLIT = re.compile(rb"([\x00\x18\n])")
ACQUISITIONS = ("exposure", "exttrigger", "extmtrigger", "extenable")
CAMSERVER_COMMANDS = (
    "exptime",
    "expperiod",
    "nimages",
    "nexpframe",
    "delay",
    "setenergy",
    "setthreshold",
    "imgpath",
    *ACQUISITIONS,
    "k",
    "camcmd",
)
LEARN = {
    "nimages": (re.compile(r"N images set to: (\d+)"), int),
    "exptime": (re.compile(r"Exposure time set to: ([-+0-9.eE]+) sec"), float),
    "expperiod": (re.compile(r"Exposure period set to: ([-+0-9.eE]+) sec"), float),
    "energy": (re.compile(r"Energy setting: ([-+0-9.eE]+) eV"), float),
}
HANDSHAKE = ("nimages", "exptime", "expperiod")


class ProxyError(OSError):
    """camserver cannot be reached or refused the proxy's set-up; the text says which."""


@dataclass
class _Pending:
    """A forwarded command waiting for its reply, or a local reply waiting for its turn."""

    code: str
    command: str = ""
    start: SeriesStart | None = None
    local_reply: str | None = None
    to_client: bool = True


def resolve_command(word: str) -> str | None:
    """camserver's command for ``word``: exact or a unique prefix, case-insensitive."""
    word = word.lower()
    if word in CAMSERVER_COMMANDS:
        return word
    matches = [name for name in CAMSERVER_COMMANDS if name.startswith(word)]
    return matches[0] if len(matches) == 1 else None


def _address(host_port: tuple[str, int]) -> str:
    return f"{host_port[0]}:{host_port[1]}"


class CamserverProxy:
    """Listens on ``listen`` at construction; :meth:`connect` reaches camserver; ``close`` ends."""

    def __init__(
        self,
        listen: tuple[str, int],
        camserver: tuple[str, int],
        images: ImageStreamer,
        connect_timeout: float = 3.0,
    ) -> None:
        self.camserver = camserver
        self.images = images
        self.imgpath = images.imgpath
        self._connect_timeout = connect_timeout
        self._listener = socket.create_server(listen)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._client: socket.socket | None = None
        self._client_in = b""
        self._upstream: socket.socket | None = None
        self._upstream_in = b""
        self._pending: deque[_Pending] = deque()
        self._settings: dict[str, float] = {}
        self._filename = ""
        self._running: SeriesStart | None = None
        self._killed = False
        self._series_client: socket.socket | None = None
        self._stopping = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, "listener")
        self._selector.register(self._wake_read, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="pilatus-proxy")

    def connect(self) -> None:
        """Reach camserver now (raise :class:`ProxyError` with the reason), then start serving."""
        self._connect_upstream()
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        os.write(self._wake_write, b"x")
        if self._thread.ident is not None:
            self._thread.join()
        for sock in (self._client, self._upstream):
            if sock is not None:
                sock.close()
        self._selector.close()
        self._listener.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    # --- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            for key, _ in self._selector.select(timeout=1.0):
                if key.data == "listener":
                    self._accept()
                elif key.data == "client":
                    self._read_client()
                elif key.data == "upstream":
                    self._read_upstream()
                else:
                    os.read(self._wake_read, 4096)

    def _accept(self) -> None:
        sock, peer = self._listener.accept()
        if self._client is not None and self._client_gone():
            self._drop_client()
        if self._client is not None:
            other = self._client.getpeername()
            with contextlib.suppress(OSError):
                sock.sendall(
                    f"15 ERR streamer: {_address(other)} is connected to this proxy; "
                    "one client at a time".encode()
                    + REPLY_END
                )
            sock.close()
            logger.warning("refused client %s: %s is connected", _address(peer), _address(other))
            return
        self._client, self._client_in = sock, b""
        self._selector.register(sock, selectors.EVENT_READ, "client")
        logger.info("client %s connected", _address(peer))

    def _client_gone(self) -> bool:
        """The current client hung up but its end is not read yet (a reconnect races it)."""
        assert self._client is not None
        try:
            return self._client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _drop_client(self) -> None:
        client = self._client
        if client is None:
            return
        self._selector.unregister(client)
        client.close()
        self._client = None
        for pending in self._pending:
            pending.to_client = False
        while self._pending and self._pending[0].local_reply is not None:
            self._pending.popleft()
        logger.info("client disconnected")

    def _to_client(self, text: str, only: socket.socket | None = None) -> None:
        client = self._client
        if client is None or (only is not None and client is not only):
            return
        try:
            client.sendall(text.encode("ascii", "replace") + REPLY_END)
        except OSError:
            self._drop_client()

    def _read_client(self) -> None:
        assert self._client is not None
        try:
            data = self._client.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop_client()
            return
        parts = COMMAND_SPLIT.split(self._client_in + data)
        self._client_in = parts.pop()
        for raw, end in zip(parts[::2], parts[1::2], strict=True):
            line = raw.decode("ascii", "replace").replace("\r", "").strip()
            if line:
                self._command(line, end)

    # --- commands ----------------------------------------------------------------------

    def _command(self, line: str, end: bytes) -> None:
        word, _, argument = line.partition(" ")
        argument = argument.strip()
        if word.lower().startswith("streamer_"):
            self._local(self._streamer_command(word.lower(), argument))
            return
        command = resolve_command(word) or ""
        code = "10" if command == "imgpath" else "15"
        refusal = ""
        start = None
        if command == "imgpath" and argument and not self._is_imgpath(argument):
            refusal = (
                f"the streamer watches {self.imgpath}; camserver must write its images "
                f"there, not to {argument}"
            )
        elif command in ACQUISITIONS:
            refusal, start = self._check_start(command, argument)
        elif command in ("k", "camcmd") and self._running is not None:
            self._killed = True
        if refusal:
            self._local(f"{code} ERR streamer: {refusal}")
            return
        self._forward(line.encode("ascii", "replace") + end, _Pending(code, command, start))

    def _streamer_command(self, word: str, argument: str) -> str:
        if word == "streamer_filename":
            if argument:
                self._filename = argument.strip('"')
            return f"15 OK Streamer filename set to: {self._filename}"
        if word == "streamer_status":
            running = self._running
            state = f"running {running.camserver_file}" if running else "idle"
            return (
                f"15 OK Streamer: {state}; {self.images.series_count} series, "
                f"{self.images.frames_sent} frames sent on {self.images.endpoint}"
            )
        return f"1 ERR *** Unrecognized command: {word}"

    def _is_imgpath(self, argument: str) -> bool:
        return os.path.realpath(argument) == os.path.realpath(self.imgpath)

    def _check_start(self, command: str, argument: str) -> tuple[str, SeriesStart | None]:
        """Why the series cannot be streamed (empty if it can), and its description."""
        if self._running is not None:
            return (
                f"series {self._running.camserver_file} is still running: wait for its 7 "
                "reply or send k",
                None,
            )
        if not argument:
            return f"{command} needs an image file name, e.g. {command} scan.cbf", None
        path = Path(argument)
        if path.is_absolute():
            if not self._is_imgpath(str(path.parent)):
                return f"the images must go to {self.imgpath}, not {path.parent}", None
        elif len(path.parts) != 1:
            return f"the images must go directly into {self.imgpath}: give a bare file name", None
        name = path.name
        if name.startswith(".") or not name.lower().endswith(".cbf"):
            return (
                f"the streamer sends CBF files only: name the images like scan.cbf, not {name}",
                None,
            )
        nimages = int(self._settings.get("nimages", 1))
        names = CamserverNames.of(name, nimages)
        stale = [entry for entry in os.listdir(self.imgpath) if names.frame_of(entry) is not None]
        if stale:
            return (
                f"{len(stale)} file(s) named like {name} (e.g. {sorted(stale)[0]}) are already "
                f"in {self.imgpath}: remove them or choose another name",
                None,
            )
        meta = {
            "detector": "PILATUS",
            "trigger_mode": command,
            "nimages": nimages,
            "camserver_file": name,
        }
        for key, meta_key in (("exptime", "count_time"), ("expperiod", "frame_time")):
            if key in self._settings:
                meta[meta_key] = self._settings[key]
        if "energy" in self._settings:
            meta["photon_energy_ev"] = self._settings["energy"]
        return "", SeriesStart(name, nimages, self._filename, meta)

    def _local(self, reply: str) -> None:
        """Answer now, or after the replies camserver still owes to earlier commands."""
        if self._pending:
            self._pending.append(_Pending("", local_reply=reply))
        else:
            self._to_client(reply)

    def _forward(self, command: bytes, pending: _Pending) -> None:
        if self._upstream is None:
            try:
                self._connect_upstream()
            except ProxyError as exc:
                self._local(f"{pending.code} ERR streamer: {exc}")
                return
        assert self._upstream is not None
        try:
            self._upstream.sendall(command)
        except OSError as exc:
            self._lost_upstream(f"sending to it failed: {exc.strerror}")
            self._local(
                f"{pending.code} ERR streamer: camserver at {_address(self.camserver)} is gone"
            )
            return
        self._pending.append(pending)

    # --- camserver ---------------------------------------------------------------------

    def _connect_upstream(self) -> None:
        """Connect, point camserver at the watched directory and read its settings."""
        where = _address(self.camserver)
        try:
            sock = socket.create_connection(self.camserver, timeout=self._connect_timeout)
        except OSError as exc:
            raise ProxyError(
                f"cannot reach camserver at {where}: {exc.strerror or exc}; is camserver running?"
            ) from None
        try:
            reply = self._ask(sock, f"imgpath {self.imgpath}")
            if not reply.startswith("10 OK"):
                raise ProxyError(f"camserver at {where} refused imgpath {self.imgpath}: {reply}")
            for command in HANDSHAKE:
                self._learn(self._ask(sock, command))
        except OSError as exc:
            sock.close()
            if isinstance(exc, ProxyError):
                raise
            raise ProxyError(f"camserver at {where} did not answer: {exc}") from None
        sock.settimeout(None)
        self._upstream, self._upstream_in = sock, b""
        self._selector.register(sock, selectors.EVENT_READ, "upstream")
        logger.info("connected to camserver at %s; images in %s", where, self.imgpath)

    @staticmethod
    def _ask(sock: socket.socket, command: str) -> str:
        sock.sendall(command.encode() + b"\0")
        reply = b""
        while not reply.endswith(REPLY_END):
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("connection closed")
            reply += data
        return reply[:-1].decode("ascii", "replace")

    def _lost_upstream(self, why: str) -> None:
        sock = self._upstream
        if sock is None:
            return
        self._selector.unregister(sock)
        sock.close()
        self._upstream = None
        where = _address(self.camserver)
        logger.warning("lost the connection to camserver at %s: %s", where, why)
        while self._pending:
            pending = self._pending.popleft()
            if pending.local_reply is not None:
                self._to_client(pending.local_reply)
            elif pending.to_client:
                self._to_client(f"{pending.code} ERR streamer: lost the connection to camserver")
        if self._running is not None:
            reason = f"lost the connection to camserver at {where} during the series ({why})"
            self._to_client(f"7 ERR streamer: {reason}", only=self._series_client)
            self.images.end_series(SeriesDone(None, ok=False, reason=reason))
            self._running = None

    def _read_upstream(self) -> None:
        assert self._upstream is not None
        try:
            data = self._upstream.recv(65536)
        except OSError as exc:
            self._lost_upstream(exc.strerror or str(exc))
            return
        if not data:
            self._lost_upstream("camserver closed it")
            return
        *replies, self._upstream_in = (self._upstream_in + data).split(REPLY_END)
        for raw in replies:
            self._reply(raw.decode("ascii", "replace"))

    def _reply(self, text: str) -> None:
        self._learn(text)
        if text.startswith("7 "):
            self._series_over(text)
            return
        pending = self._pending.popleft() if self._pending else None
        if pending is not None and pending.start is not None and text.startswith("15 OK"):
            self._running, self._killed = pending.start, False
            self._series_client = self._client
            self._filename = ""
            self.images.start_series(pending.start)
        if pending is None or pending.to_client:
            self._to_client(text)
        while self._pending and self._pending[0].local_reply is not None:
            reply = self._pending.popleft().local_reply
            assert reply is not None
            self._to_client(reply)

    def _series_over(self, text: str) -> None:
        ok = text.startswith("7 OK")
        detail = text[5:].strip() if ok else text[6:].strip()
        if self._running is not None:
            self.images.end_series(
                SeriesDone(
                    detail if ok and detail else None,
                    ok=ok,
                    killed=self._killed,
                    reason="" if ok else f"camserver: {detail}",
                )
            )
            self._running = None
        self._to_client(text, only=self._series_client)

    def _learn(self, text: str) -> None:
        if not text.startswith("15 OK"):
            return
        for key, (pattern, kind) in LEARN.items():
            found = pattern.search(text)
            if found:
                with contextlib.suppress(ValueError):
                    self._settings[key] = kind(found[1])

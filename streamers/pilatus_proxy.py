"""The Pilatus streamer's control side: camserver's TCP protocol, proxied.

The Tango device (its Pilatus backend) need not run on the DCU: it talks
camserver's own protocol (:mod:`protocols.camserver`) to this proxy, which
forwards every command to camserver over one connection it keeps, and every
reply back, unchanged. On the way it learns what the image side must know:
``nimages``, ``exptime`` and ``expperiod`` from camserver's replies, and from
an accepted ``exposure``/``exttrigger``/``extmtrigger``/``extenable <file>``
that a series of ``nimages`` files named after ``<file>`` starts; camserver's
``7`` reply ends it. MAX IV's own Pilatus streamer works the same way, on port 8888.

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
import selectors
import socket
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from protocols import camserver
from protocols.camserver import CODE_COMMAND, CODE_SERIES_END, Reply
from streamers.pilatus_stream import ImageStreamer, SeriesDone, SeriesStart

logger = logging.getLogger(__name__)

HANDSHAKE = ("nimages", "exptime", "expperiod")
"""What the proxy reads from camserver when it connects (it learns the rest from replies)."""


class ProxyError(OSError):
    """camserver cannot be reached or refused the proxy's set-up; the text says which."""


@dataclass
class _Pending:
    """A forwarded command waiting for its reply, or a local reply waiting for its turn."""

    code: int = CODE_COMMAND
    command: str = ""
    start: SeriesStart | None = None
    local_reply: str | None = None
    to_client: bool = True


def _refusal(code: int, reason: str) -> str:
    """The proxy's own ``ERR``: ``streamer:`` tells the client camserver never saw the command."""
    return camserver.format_reply(code, False, f"streamer: {reason}")


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
                    camserver.encode_reply(
                        _refusal(
                            CODE_COMMAND,
                            f"{_address(other)} is connected to this proxy; one client at a time",
                        )
                    )
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
            client.sendall(camserver.encode_reply(text))
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
        lines, self._client_in = camserver.read_commands(self._client_in + data)
        for line, end in lines:
            self._command(line, end)

    # --- commands ----------------------------------------------------------------------

    def _command(self, line: str, end: bytes) -> None:
        word, argument = camserver.split_command(line)
        if word.lower().startswith("streamer_"):
            self._local(self._streamer_command(word.lower(), argument))
            return
        command = camserver.resolve_command(word) or ""
        code = camserver.reply_code(command)
        refusal = ""
        start = None
        if command == "imgpath" and argument and not self._is_imgpath(argument):
            refusal = (
                f"the streamer watches {self.imgpath}; camserver must write its images "
                f"there, not to {argument}"
            )
        elif command in camserver.ACQUISITIONS:
            refusal, start = self._check_start(command, argument)
        elif command in ("k", "camcmd") and self._running is not None:
            self._killed = True
        if refusal:
            self._local(_refusal(code, refusal))
            return
        self._forward(line.encode("ascii", "replace") + end, _Pending(code, command, start))

    def _streamer_command(self, word: str, argument: str) -> str:
        if word == "streamer_filename":
            if argument:
                self._filename = argument.strip('"')
            return camserver.format_reply(
                CODE_COMMAND, True, f"Streamer filename set to: {self._filename}"
            )
        if word == "streamer_status":
            running = self._running
            state = f"running {running.camserver_file}" if running else "idle"
            return camserver.format_reply(
                CODE_COMMAND,
                True,
                f"Streamer: {state}; {self.images.series_count} series, "
                f"{self.images.frames_sent} frames sent on {self.images.endpoint}",
            )
        return camserver.unrecognized(word)

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
        names = camserver.SeriesNames.of(name, nimages)
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
            self._pending.append(_Pending(local_reply=reply))
        else:
            self._to_client(reply)

    def _forward(self, command: bytes, pending: _Pending) -> None:
        if self._upstream is None:
            try:
                self._connect_upstream()
            except ProxyError as exc:
                self._local(_refusal(pending.code, str(exc)))
                return
        assert self._upstream is not None
        try:
            self._upstream.sendall(command)
        except OSError as exc:
            self._lost_upstream(f"sending to it failed: {exc.strerror}")
            self._local(_refusal(pending.code, f"camserver at {_address(self.camserver)} is gone"))
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
            accepted = camserver.parse_reply(reply)
            if accepted is None or accepted.code != camserver.CODE_IMGPATH or not accepted.ok:
                raise ProxyError(f"camserver at {where} refused imgpath {self.imgpath}: {reply}")
            for command in HANDSHAKE:
                self._settings.update(camserver.read_back(self._ask(sock, command)))
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
        sock.sendall(command.encode() + camserver.SEND_END)
        reply = b""
        while not reply.endswith(camserver.REPLY_END):
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
                self._to_client(_refusal(pending.code, "lost the connection to camserver"))
        if self._running is not None:
            reason = f"lost the connection to camserver at {where} during the series ({why})"
            self._to_client(_refusal(CODE_SERIES_END, reason), only=self._series_client)
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
        replies, self._upstream_in = camserver.read_replies(self._upstream_in + data)
        for text in replies:
            self._reply(text)

    def _reply(self, text: str) -> None:
        self._settings.update(camserver.read_back(text))
        parsed = camserver.parse_reply(text)
        if parsed is not None and parsed.code == CODE_SERIES_END:
            self._series_over(text, parsed)
            return
        pending = self._pending.popleft() if self._pending else None
        started = parsed is not None and parsed.code == CODE_COMMAND and parsed.ok
        if pending is not None and pending.start is not None and started:
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

    def _series_over(self, text: str, reply: Reply) -> None:
        """camserver's ``7`` reply: the series ends on the stream; the reply goes to its client."""
        detail = reply.text.strip()
        if self._running is not None:
            self.images.end_series(
                SeriesDone(
                    detail if reply.ok and detail else None,
                    ok=reply.ok,
                    killed=self._killed,
                    reason="" if reply.ok else f"camserver: {detail}",
                )
            )
            self._running = None
        self._to_client(text, only=self._series_client)

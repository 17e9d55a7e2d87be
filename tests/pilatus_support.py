"""What the Pilatus tests share: a camserver client, a STINS collector, CBF checks."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from protocols.model import Image
from receiver.transforms import cbf
from sim.frames import synthetic_frame
from sim.pilatus import CamserverSimulator
from streamers.pilatus import PilatusStreamer, StreamerConfig
from tests.helpers import Processes, wait_until
from tooling.ports import free_port

SHAPE = (12, 10)


class CamserverClient:
    """A plain TCP client speaking camserver's protocol, as MAX IV's scripts do."""

    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self._buffer = b""

    def send(self, command: str, end: bytes = b"\0") -> None:
        self.sock.sendall(command.encode() + end)

    def reply(self) -> str:
        """The next reply, without its ``\\x18``."""
        while b"\x18" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"connection closed; unread: {self._buffer!r}")
            self._buffer += data
        reply, _, self._buffer = self._buffer.partition(b"\x18")
        return reply.decode()

    def raw_reply(self) -> bytes:
        """The next reply with its terminator, byte for byte."""
        return self.reply().encode() + b"\x18"

    def ask(self, command: str, end: bytes = b"\0") -> str:
        self.send(command, end)
        return self.reply()

    def close(self) -> None:
        self.sock.close()


@dataclass
class Message:
    fields: dict[str, Any]
    parts: list[bytes] = field(default_factory=list)

    @property
    def htype(self) -> str:
        return self.fields["htype"]


class StreamCollector:
    """A plain PULL socket on a STINS stream, keeping every message (CBF blobs raw)."""

    def __init__(self, endpoint: str) -> None:
        self.messages: list[Message] = []
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
                parts = self._socket.recv_multipart()
            except zmq.Again:
                continue
            self.messages.append(Message(json.loads(parts[0]), parts[1:]))

    def of(self, htype: str) -> list[Message]:
        return [m for m in self.messages if m.htype == htype]

    def series_ends(self) -> int:
        return len(self.of("series_end"))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close(linger=0)
        self._context.term()


def decode_cbf(message: Message) -> np.ndarray:
    """The pixels of an image message whose blob is a CBF file (the receiver's decoder)."""
    fields = message.fields
    image = Image(
        seq=fields["msg_number"],
        frame=fields["frame"],
        shape=tuple(fields["shape"]),
        dtype=np.dtype(fields["type"]),
        compression=fields["compression"],
        data=message.parts[0],
    )
    return cbf.decode(image)


def assert_frames(images: list[Message], count: int, shape: tuple[int, int] = SHAPE) -> None:
    """Frames 0..count-1 in order, each the synthetic frame of its number, sent as CBF."""
    assert [m.fields["frame"] for m in images] == list(range(count))
    for message in images:
        assert message.fields["compression"] == "cbf"
        assert message.fields["type"] == "int32"
        assert message.fields["shape"] == list(shape)
        expected = synthetic_frame(message.fields["frame"], shape, "int32")
        np.testing.assert_array_equal(decode_cbf(message), expected)


def start_chain(processes: Processes, imgpath: Path, shape: tuple[int, int]) -> dict[str, object]:
    """camserver simulator and pilatus-streamer as processes, as on a DCU."""
    camserver_port, proxy_port = free_port(), free_port()
    stream = f"tcp://127.0.0.1:{free_port()}"
    trigger = f"tcp://127.0.0.1:{free_port()}"
    camserver = processes.start(
        "python",
        "-m",
        "sim.pilatus",
        "--imgpath",
        str(imgpath),
        "--port",
        str(camserver_port),
        "--shape",
        *map(str, shape),
        "--trigger-input",
        trigger,
    )
    wait_until(lambda: _listening(camserver_port, camserver), 30, "the camserver simulator")
    streamer = processes.start(
        "pilatus-streamer",
        "--imgpath",
        str(imgpath),
        "--camserver",
        f"127.0.0.1:{camserver_port}",
        "--listen",
        f"127.0.0.1:{proxy_port}",
        "--stream",
        stream,
    )
    wait_until(lambda: _listening(proxy_port, streamer), 30, "pilatus-streamer")
    return {
        "camserver": camserver,
        "streamer": streamer,
        "options": {"DetectorAddress": f"127.0.0.1:{proxy_port}", "StreamAddress": stream},
        "trigger": trigger,
    }


def _listening(port: int, proc: subprocess.Popen) -> bool:
    assert proc.poll() is None, f"exited with {proc.returncode}"
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def start_streamer(imgpath: Path, camserver: CamserverSimulator) -> PilatusStreamer:
    """pilatus-streamer in this process, on free ports, for ``camserver``'s RAM disk."""
    return PilatusStreamer(
        StreamerConfig(
            imgpath=imgpath,
            camserver=camserver.address,
            listen=("127.0.0.1", 0),
            stream="tcp://127.0.0.1:*",
            file_timeout=2.0,
        )
    )


def configure(client: CamserverClient, exptime: float, expperiod: float, nimages: int) -> None:
    assert client.ask(f"exptime {exptime}").startswith("15 OK")
    assert client.ask(f"expperiod {expperiod}").startswith("15 OK")
    assert client.ask(f"nimages {nimages}").startswith("15 OK")

"""Processes killed mid-series: the receiver (SIGKILL, then started again) and the streamer.

Receiver: every frame the status called durable before the kill is in the
file once ``daq-recover`` has cleared HDF5's open-for-writing mark, and the
next receiver on the same ports writes the next series normally.

Streamer (the Pilatus chain today: camserver simulator, pilatus-streamer and
stream-receiver as processes, as on a DCU and a DAQ node): the frames the
streamer sent before it died are in the file, which is closed when the next
series' header comes from a restarted streamer, and that series is written
normally. The receiver alone cannot tell a dead streamer from a detector
waiting for triggers: the Tango device sees the streamer's connection drop
and goes FAULT (tests/test_pilatus_e2e.py).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import zmq

from tests.faults.support import (
    FaultRow,
    StinsSender,
    check_file,
    recover,
    shorten,
    start_receiver,
)
from tests.helpers import Processes, wait_until
from tests.pilatus_support import CamserverClient, configure
from tooling.ports import free_port

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.timeout(120)]

SHAPE = (256, 512)
"""uint16: 256 kB a frame."""


def test_a_receiver_killed_mid_series_leaves_a_recoverable_file_and_the_next_one_writes(
    processes: Processes, context: zmq.Context, tmp_path: Path, fault_row: FaultRow
) -> None:
    fault_row.case = "receiver SIGKILLed mid-series, then started again"
    data_root = tmp_path / "data"
    data_root.mkdir()
    sender = StinsSender(context)
    receiver = start_receiver(
        processes, data_root, "--flush-interval", "0.2", connect=sender.endpoint
    )
    sender.connected()
    sender.header("killed.h5")
    for frame in range(400):
        sender.frame(frame + 1, frame, SHAPE)

    def durable() -> dict | None:
        status = receiver.status()
        done = status["frames_received"] == 400 and status["series"]["frames_durable"] >= 300
        return status if done else None

    before = wait_until(durable, 30, "400 frames received, 300 durable", interval=0.05)
    receiver.proc.kill()
    receiver.proc.wait(10)
    promised = before["series"]["frames_durable"]

    path = data_root / "killed.h5"
    plain = check_file(path)
    recovered = recover(path)
    after = check_file(path)

    again = receiver.again()
    sender.series("next.h5", 10, SHAPE)
    status = again.series_closed(1)
    sender.close()
    following = check_file(data_root / "next.h5")

    fault_row.acknowledged = before["frames_received"]
    fault_row.written = f"{promised} durable"
    fault_row.readable = f"{after.right} after daq-recover (0 before)"
    fault_row.user_saw = (
        f"receiver gone (exit {receiver.proc.returncode}); plain h5py: "
        f"{'opens' if plain.readable else 'refuses the file'}; daq-recover: "
        f"{shorten(recovered.stdout.replace(str(data_root) + '/', ''), 120)}; "
        f"next series: {status['state']}, "
        f"{status['last_series']['frames_written']} frames"
    )
    fault_row.figures = {"next series readable": following.right}

    assert receiver.proc.returncode == -signal.SIGKILL
    assert recovered.returncode == 0, recovered.stderr
    assert after.readable, after.error
    assert after.right >= promised, "every frame called durable is in the file"
    assert not after.wrong
    assert (status["state"], status["last_series"]["ok"]) == ("idle", True), status["error"]
    assert (following.listed, following.right) == (10, 10)


class PilatusChain:
    """camserver simulator and pilatus-streamer as processes, on free ports, as on a DCU."""

    SHAPE = (195, 487)
    """One Pilatus3 module."""

    def __init__(self, processes: Processes, imgpath: Path) -> None:
        self.processes = processes
        camserver_port, self.proxy_port = free_port(), free_port()
        self.stream = f"tcp://127.0.0.1:{free_port()}"
        camserver = processes.start(
            "python", "-m", "sim.pilatus", "--imgpath", str(imgpath),
            "--port", str(camserver_port), "--shape", *map(str, self.SHAPE),
        )  # fmt: skip
        self.streamer_args = [
            "--imgpath", str(imgpath), "--camserver", f"127.0.0.1:{camserver_port}",
            "--listen", f"127.0.0.1:{self.proxy_port}", "--stream", self.stream,
            "--file-timeout", "1",
        ]  # fmt: skip
        wait_until(lambda: _listening(camserver_port, camserver), 30, "the camserver simulator")
        self.streamer = processes.start("pilatus-streamer", *self.streamer_args)
        wait_until(lambda: _listening(self.proxy_port, self.streamer), 30, "pilatus-streamer")
        self.starts = 1

    def series(self, filename: str, nimages: int, period: float) -> None:
        """A series of ``nimages`` in INTERNAL mode, into the receiver's ``filename``."""
        client = CamserverClient(("127.0.0.1", self.proxy_port))
        assert client.ask(f"streamer_filename {filename}").startswith("15 OK")
        configure(client, exptime=0.01, expperiod=period, nimages=nimages)
        assert client.ask(f"exposure {Path(filename).stem}.cbf").startswith("15 OK")
        client.close()

    def start_again(self) -> None:
        """Start the streamer until one stays up: it refuses to start while camserver's series
        runs on (its imgpath cannot be set then), so an operator starts it again."""

        def started() -> bool:
            self.starts += 1
            proc = self.processes.start("pilatus-streamer", *self.streamer_args)
            while proc.poll() is None and not _answers(self.proxy_port):
                time.sleep(0.05)
            answer = ""
            try:
                probe = CamserverClient(("127.0.0.1", self.proxy_port))
            except OSError:
                pass
            else:
                try:
                    answer = probe.ask("streamer_status")
                except OSError:
                    pass  # it hung up: a streamer that refused to start
                finally:
                    probe.close()
            if answer.startswith("15 OK") and proc.poll() is None:
                self.streamer = proc
                return True
            self.processes.stop(proc)
            return False

        wait_until(started, 30, "pilatus-streamer to start again", interval=0.3)


def test_a_streamer_killed_mid_series_leaves_its_frames_and_the_next_series_writes(
    processes: Processes, tmp_path: Path, fault_row: FaultRow
) -> None:
    fault_row.case = "streamer (pilatus-streamer) SIGKILLed mid-series, then started again"
    imgpath, data_root = tmp_path / "ramdisk", tmp_path / "data"
    imgpath.mkdir()
    data_root.mkdir()
    chain = PilatusChain(processes, imgpath)
    receiver = start_receiver(
        processes, data_root, "--transforms", '[{"kind": "cbf"}]', "--flush-interval", "0.2",
        connect=chain.stream,
    )  # fmt: skip

    chain.series("killed.h5", 20, 0.05)
    wait_until(lambda: receiver.status()["frames_received"] >= 5, 20, "5 frames", interval=0.05)
    chain.streamer.kill()
    chain.streamer.wait(10)
    sent = receiver.status()["frames_received"]
    wait_until(
        lambda: receiver.status()["series"]["frames_durable"] >= sent, 10, "the frames flushed"
    )
    during = receiver.status()
    live = check_file(data_root / "killed.h5", swmr=True, pixel_check=False)

    chain.start_again()
    chain.series("next.h5", 5, 0.02)
    status = receiver.series_closed(2)
    killed = check_file(data_root / "killed.h5", pixel_check=False)
    following = check_file(data_root / "next.h5", pixel_check=False)

    fault_row.acknowledged = sent
    fault_row.written = during["series"]["frames_durable"]
    fault_row.readable = killed.listed
    fault_row.user_saw = (
        f"receiver after the kill: {during['state']} "
        f"{shorten(during['error'], 60) or '(no error)'} with {during['frames_received']} frames "
        f"(SWMR readers: {live.listed}); next series: {status['state']}, "
        f"{status['last_series']['frames_written']} frames"
    )
    fault_row.figures = {
        "next series readable": following.listed,
        "streamer starts until one stayed up": chain.starts - 1,
    }

    assert during["state"] == "running", "the receiver keeps the series open for more frames"
    assert killed.readable, killed.error
    assert killed.frames == list(range(sent)), "the frames sent before the kill, in order"
    assert status["state"] == "idle", status["error"]
    assert following.frames == list(range(5))


def _listening(port: int, proc: subprocess.Popen) -> bool:
    assert proc.poll() is None, f"exited with {proc.returncode}"
    return _answers(port)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True

"""``daq-bench --camera zyla|orca``: the whole camera chain at the camera's full frame rate.

The fake SDK (``sim.andor_fake`` or ``sim.dcam_fake``) makes every frame at
the camera's rate, a ``camera-streamer`` process reads it through the
binding and sends it as STINS, a ``stream-receiver`` process (forwarder
bound, as deployed) writes it: frames written per second and lost, against
the same run's bare sink that writes (the least any receiver spends on
these cores for frames of that size, ``sink + write``).

- zyla: an Andor Zyla 5.5, 2560 x 2160 at 100 frames/s, which its interface
  carries only in its 12-bit packing (Mono12Packed, 8.3 MB frames, unpacked
  by the receiver's mono12packed transform);
- orca: a Hamamatsu ORCA-Lightning 12M, 4608 x 2592 12-bit packed (Mono12p,
  unpacked by the receiver's mono12p transform), 120 frames/s: about 2 GB/s
  of 16-bit pixels, the highest full-frame rate of the MAX IV paper's table 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.measure import BIN, BenchError, Case, ReceiverProcess, measure_sink
from sim.andor_fake import CONFIG_ENV as ANDOR_CONFIG
from sim.andor_fake import library_path as andor_library
from sim.andor_fake.config_file import ConfigFile as AndorConfig
from sim.dcam_fake import CONFIG_VARIABLE as DCAM_CONFIG
from sim.dcam_fake import ConfigFile as DcamConfig
from sim.dcam_fake import library_path as dcam_library
from tooling.ports import free_port


@dataclass(frozen=True, slots=True)
class Camera:
    label: str
    sdk: str
    shape: tuple[int, int]
    rate: float
    pixel_encoding: str

    @property
    def frame_time(self) -> float:
        return 1.0 / self.rate


CAMERAS = {
    "zyla": Camera("Andor Zyla 5.5", "andor", (2160, 2560), 100.0, "Mono12Packed"),
    "orca": Camera("Hamamatsu ORCA-Lightning 12M", "dcam", (2592, 4608), 120.0, "Mono12p"),
}


@dataclass(frozen=True, slots=True)
class CameraResult:
    camera: Camera
    workers: int
    frames: int
    written_fps: float
    lost: int
    baseline_fps: float

    def line(self) -> str:
        rows, columns = self.camera.shape
        return (
            f"{self.camera.label} {columns}x{rows} {self.camera.pixel_encoding} at "
            f"{self.camera.rate:.0f} frames/s, {self.workers} worker(s), forwarder bound: "
            f"written {self.written_fps:.0f} frames/s, lost {self.lost}; sink + write "
            f"{self.baseline_fps:.0f} frames/s ({self.written_fps / self.baseline_fps:.2f})"
        )


def _fake_env(camera: Camera, data_dir: Path) -> tuple[dict[str, str], str]:
    """The environment that describes the fake camera, and the fake's library."""
    if camera.sdk == "andor":
        path = AndorConfig(model="zyla-5.5").write(data_dir / "zyla.conf")
        return {ANDOR_CONFIG: str(path)}, andor_library()
    path = DcamConfig(model="ORCA-Lightning").write(data_dir / "orca.conf")
    return {DCAM_CONFIG: str(path)}, dcam_library()


def measure(name: str, workers: int, frames: int, data_dir: Path) -> CameraResult:
    camera = CAMERAS[name]
    config = data_dir / f"camera-{name}-{workers}w.json"
    decoders = {"Mono12p": "mono12p", "Mono12Packed": "mono12packed"}
    decoder = decoders.get(camera.pixel_encoding)
    transforms = [{"kind": decoder}] if decoder else []
    config.write_text(json.dumps({"transforms": transforms}))
    env, library = _fake_env(camera, data_dir)
    receiver = ReceiverProcess(workers, 1, True, data_dir, config=config, forward="bound")
    control = f"127.0.0.1:{free_port()}"
    log = (data_dir / f"camera-streamer-{name}.log").open("wb")
    streamer = subprocess.Popen(
        [
            str(BIN / "camera-streamer"),
            "--sdk", camera.sdk,
            "--library", library,
            "--pixel-encoding", camera.pixel_encoding,
            "--stream", receiver.endpoint,
            "--control", control,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )  # fmt: skip
    filename = f"camera_{name}_{workers}w.h5"
    try:
        _wait_serving(streamer, control, log.name)
        arm = {
            "frames": frames,
            "exposure_time": camera.frame_time,
            "frame_time": camera.frame_time,
            "filename": filename,
        }
        response = requests.post(f"http://{control}/arm", json=arm, timeout=30)
        if not response.ok:
            raise BenchError(f"camera-streamer refused the series: {response.text}")
        status = receiver.wait_series_closed(1)
    finally:
        streamer.terminate()
        streamer.wait(timeout=30)
        log.close()
        receiver.close()
        (data_dir / filename).unlink(missing_ok=True)
    written_fps, lost = _written(status, frames)
    baseline = measure_sink(Case(name, camera.shape, frames), 1, data_dir, write=True)
    return CameraResult(camera, workers, frames, written_fps, lost, frames / baseline.seconds)


def _wait_serving(streamer: subprocess.Popen[bytes], control: str, log: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if streamer.poll() is not None:
            raise BenchError(f"camera-streamer exited; see {log}")
        try:
            requests.get(f"http://{control}/status", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise BenchError(f"camera-streamer did not answer on {control} within 30 s; see {log}")


def _written(status: dict[str, Any], frames: int) -> tuple[float, int]:
    """Frames written per second and frames lost; frames the camera's ring lost are
    missing from the file, which the receiver reports: they count as lost here."""
    last = status["last_series"]
    if last is None:
        raise BenchError(f"the receiver closed no series: {status['error']}")
    written = int(last["frames_written"])
    return written / (last["finished"] - last["started"]), frames - written


def run(names: list[str], frames: int, workers: list[int], data_dir: Path) -> None:
    """Each camera with each worker count, printed as they finish."""
    for name in names:
        for count in workers:
            print(measure(name, count, frames, data_dir).line(), flush=True)

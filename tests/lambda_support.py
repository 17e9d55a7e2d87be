"""What the Lambda tests share: DCU streamer processes over the fake SDK, and references."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from sim.geometry import windmill
from sim.lambda_fake import expected_frame, library_path, windmill_systems
from tests.helpers import Processes
from tooling.ports import free_port

SHAPE = (24, 40)
"""One module's frame: small for quick tests, not square, so a wrong turn shows."""


@dataclass
class Dcus:
    """Two DCUs' lambda-streamer processes (ForMAX's windmill: two modules each)."""

    streamers: list[subprocess.Popen[bytes]]
    controls: list[str]

    @property
    def detector_address(self) -> str:
        return ", ".join(self.controls)

    def status(self, k: int) -> dict[str, object]:
        response = httpx.get(f"http://{self.controls[k]}/status", timeout=5)
        response.raise_for_status()
        document: dict[str, object] = response.json()
        return document


def start_dcus(
    processes: Processes,
    directory: Path,
    shape: tuple[int, int] = SHAPE,
    faults: str = "",
    stall_timeout_s: float = 5.0,
    **settings: object,
) -> Dcus:
    """Write the windmill's two system files and start one lambda-streamer per DCU."""
    streamers, controls = [], []
    for k, system in enumerate(windmill_systems(shape, **settings)):
        path = system.write(directory / f"dcu{k + 1}.conf")
        control = f"127.0.0.1:{free_port()}"
        proc = processes.start(
            "lambda-streamer",
            "--library",
            library_path(),
            "--system",
            str(path),
            "--stream",
            "tcp://127.0.0.1:*",
            "--control",
            control,
            "--stall-timeout",
            str(stall_timeout_s),
            env={"LAMBDA_FAKE_FAULTS": faults},
        )
        processes.wait_serving(proc, f"http://{control}")
        streamers.append(proc)
        controls.append(control)
    return Dcus(streamers, controls)


def full_reference(frame: int, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """The windmill's assembled frame ``frame`` as the fake's modules make it."""
    geometry = windmill(shape)
    full = np.zeros(geometry.full_shape, np.uint16)
    for k, place in enumerate(geometry.modules):
        plane = np.rot90(expected_frame(k, frame, *shape), place.rotation)
        full[place.y : place.y + plane.shape[0], place.x : place.x + plane.shape[1]] = plane
    return full


def assemble(detector: object, index: int) -> np.ndarray:
    """Frame ``index`` of a file's NXdetector, assembled from its modules as docs/receiver.md says."""
    data = detector["data"]  # type: ignore[index]
    full = np.zeros(tuple(detector["full_image_shape"][()]), data.dtype)  # type: ignore[index]
    for module in detector.values():  # type: ignore[attr-defined]
        if module.attrs.get("NX_class") != "NXdetector_module":
            continue
        turns = int(module["full_image_rotation"][()])
        plane = np.rot90(data[index, module["data_origin"][0]], turns)
        y, x = module["full_image_origin"][()]
        full[y : y + plane.shape[0], x : x + plane.shape[1]] = plane
    return full

"""Helpers shared by the tests: readiness polling, processes that always end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import tango
from tango.test_context import DeviceTestContext

T = TypeVar("T")

VENV_BIN = Path(sys.executable).parent


def wait_until(probe: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``probe`` until it returns a truthy value; fail the test with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Processes:
    """Starts console scripts of this project and ends each one, by its PID, at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._procs: list[tuple[subprocess.Popen, Path]] = []

    def start(
        self, command: str, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen:
        """Start ``command`` from the venv (or an absolute path) with ``env`` added to ours."""
        log = self._log_dir / f"{Path(command).name}-{len(self._procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(VENV_BIN / command), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        self._procs.append((proc, log))
        return proc

    def wait_serving(self, proc: subprocess.Popen, url: str, timeout: float = 30) -> None:
        """Wait until ``proc`` answers ``GET url/status``; fail with its output if it exits."""

        def ready() -> bool:
            assert proc.poll() is None, self.output(proc)
            try:
                return httpx.get(f"{url}/status").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout, f"{url}/status to answer")

    @property
    def started(self) -> list[subprocess.Popen]:
        return [proc for proc, _ in self._procs]

    def output(self, proc: subprocess.Popen) -> str:
        for known, log in self._procs:
            if known is proc:
                return log.read_text(errors="replace")
        raise KeyError("not a process started here")

    def stop(self, proc: subprocess.Popen) -> None:
        """End one process started here: SIGINT, then SIGKILL after 10 s."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for proc, _ in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, _ in self._procs:
            self.stop(proc)


STARTS = 3


@contextlib.contextmanager
def device_context(device_class: type, **kwargs: Any) -> Iterator[tango.DeviceProxy]:
    """pytango's DeviceTestContext, started again when its first ping fails.

    Under load the context's first ping can reach the new server before it
    serves and fail with "The connection request was delayed"; that is the
    test harness, not the device, so the start is tried again (at most
    ``STARTS`` times) and any other failure is raised at once.
    """
    for attempt in range(1, STARTS + 1):
        context = DeviceTestContext(device_class, **kwargs)
        try:
            proxy = context.__enter__()
        except tango.DevFailed as exc:
            context.server = None  # it never answered: stop ends the process without asking it
            context.stop()
            delayed = "API_CantConnectToDevice" in str(exc)
            if not delayed or attempt == STARTS:
                raise
            time.sleep(1.0)
            continue
        try:
            yield proxy
        finally:
            context.__exit__(None, None, None)
        return

"""The README's "Tango device by hand" steps, run as a new user runs them: pasted into a shell.

The blocks are read from README.md and run verbatim by bash, from a
directory laid out like the repository (``.venv`` and
``tango_db_config/det01.json``), with two substitutions only: the database
port 10000 and det01's data directory ``/tmp/detector-daq/data`` become free
ones of the test, and so do the fixed ports of ``det01.json`` in the copy the
steps load. Background jobs (``&``) are ended by their PID when the steps are
done, with the signals the README names.

Variants: as written (the Starter registered and not running), with
``daq-tango load --no-starter``, with a Starter running, and through Starter
(the README's Starter block in place of the ``DetectorDevice det01 &`` line).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the bslz4 filter for reading
import pytest

from tests.helpers import VENV_BIN, wait_until
from tooling.ports import free_port
from tooling.tango_db import DEFAULT_CONFIG, STARTER

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

README = Path(__file__).resolve().parents[1] / "README.md"
BY_HAND = "### The Tango device by hand"
THROUGH_STARTER = "#### Through Starter"
README_PORT = "10000"
README_DATA = "/tmp/detector-daq/data"
DEVICE_LINE = ".venv/bin/DetectorDevice det01 &"
LOAD_COMMAND = ".venv/bin/daq-tango load tango_db_config/det01.json"
HOST = socket.gethostname().split(".")[0]


def sh_block(heading: str) -> str:
    """The first ``sh`` code block after ``heading`` in README.md."""
    text = README.read_text()
    start = text.index(heading)
    match = re.search(r"```sh\n(.*?)```", text[start:], re.DOTALL)
    assert match, f"no sh block after {heading!r} in README.md"
    return match.group(1)


@dataclass
class Steps:
    """A directory laid out like the repository, and what the test put into the README's steps."""

    cwd: Path
    port: int
    data: Path

    def localized(self, script: str) -> str:
        """The steps with the test's database port and data directory."""
        assert README_PORT in script and README_DATA in script
        return script.replace(README_PORT, str(self.port)).replace(README_DATA, str(self.data))

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with bash, as pasted into a shell; its output in files, not pipes.

        Background jobs keep bash's stdout and stderr open: with pipes, waiting for
        their end would wait for the jobs.
        """
        full = f"set -e\n{self.localized(script)}"
        env = {k: v for k, v in os.environ.items() if k not in ("TANGO_HOST", "ORBendPoint")}
        out, err = self.cwd / "steps.out", self.cwd / "steps.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.run(
                ["bash", "-c", full],
                cwd=self.cwd,
                env={**env, "PYTHONUNBUFFERED": "1"},
                stdout=stdout,
                stderr=stderr,
                timeout=180,
                check=False,
            )
        return subprocess.CompletedProcess(
            proc.args, proc.returncode, out.read_text(), err.read_text()
        )

    def started_by(self, program: str) -> list[int]:
        """The ``program`` processes among :meth:`started`."""
        return [pid for pid in self.started() if pid in _pids(program)]

    def started(self) -> list[int]:
        """The processes the steps started: every one has their TANGO_HOST in its environment."""
        tango_host = f"TANGO_HOST=127.0.0.1:{self.port}".encode()
        return _pids(environ=lambda env: tango_host in env.split(b"\0"))


@pytest.fixture
def steps(tmp_path: Path) -> Iterator[Steps]:
    cwd = tmp_path / "checkout"
    (cwd / "tango_db_config").mkdir(parents=True)
    (cwd / ".venv").symlink_to(VENV_BIN.parent)
    data = tmp_path / "data"
    config = json.loads(DEFAULT_CONFIG.read_text())
    properties = config["servers"]["DetectorDevice"]["det01"]["DetectorDevice"][
        "sim/detector/det01"
    ]["properties"]
    assert properties["DataRoot"] == [README_DATA]
    properties.update(
        DataRoot=[str(data)],
        StreamAddress=[f"tcp://127.0.0.1:{free_port()}"],
        TriggerInputAddress=[f"tcp://127.0.0.1:{free_port()}"],
        ReceiverHttpPort=[str(free_port())],
        FrameShape=["64", "48"],
    )
    (cwd / "tango_db_config" / "det01.json").write_text(json.dumps(config))
    steps = Steps(cwd, free_port(), data)
    yield steps
    stop(steps.started(), signal.SIGTERM)


def test_the_steps_run_as_written(steps: Steps) -> None:
    run_and_check(steps, sh_block(BY_HAND))


def test_the_steps_run_without_starter(steps: Steps) -> None:
    script = sh_block(BY_HAND)
    assert LOAD_COMMAND in script
    run_and_check(steps, script.replace(LOAD_COMMAND, LOAD_COMMAND + " --no-starter"))


def test_the_steps_run_while_a_starter_runs(steps: Steps) -> None:
    """The README's Starter, running beside the server started by hand (its log in tmp)."""
    script = sh_block(BY_HAND)
    starter = (
        f"{LOAD_COMMAND}\n"
        '.venv/bin/python -c "import tango; tango.Database().put_device_property('
        f"'tango/admin/{HOST}', {{'LogFileHome': ['{steps.cwd}']}})\"\n"
        f"{STARTER} {HOST} > starter.log 2>&1 &\n"
        f".venv/bin/daq-tango wait tango/admin/{HOST}\n"
    )
    run_and_check(steps, re.sub(rf"^{re.escape(LOAD_COMMAND)}.*\n", starter, script, flags=re.M))


def test_the_steps_run_through_starter(steps: Steps) -> None:
    """The Starter block in place of the DetectorDevice line, the snippet where it says."""
    others = _pids("DetectorDevice", "det01")
    if others:
        pytest.skip(
            f"DetectorDevice det01 of another database runs here (pid {others}): Starter "
            "knows servers by name and would take it for this one"
        )
    by_hand = sh_block(BY_HAND).splitlines(keepends=True)
    through = sh_block(THROUGH_STARTER).splitlines(keepends=True)
    (device,) = [i for i, line in enumerate(by_hand) if line.startswith(DEVICE_LINE)]
    (snippet,) = [i for i, line in enumerate(through) if line.startswith("# ... the Python")]
    script = "".join(
        by_hand[:device] + through[:snippet] + by_hand[device + 1 :] + through[snippet + 1 :]
    )

    result = steps.run(script)

    check_series(steps, result)
    # The last step stopped it through Starter: it is gone, and no other was left.
    assert not steps.started_by("DetectorDevice")


def run_and_check(steps: Steps, script: str) -> None:
    result = steps.run(script)
    check_series(steps, result)
    (server,) = steps.started_by("DetectorDevice")
    # Ctrl-C does not reach a background job; SIGINT sent to it does, and ends it.
    os.kill(server, signal.SIGINT)
    wait_until(lambda: not _alive(server), 15, "DetectorDevice det01 to end on SIGINT")


def check_series(steps: Steps, result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    expected = f"ON ready; last series: 5 of 5 frames into {steps.data}/scan_0001.h5"
    assert expected in result.stdout, output
    with h5py.File(steps.data / "scan_0001.h5") as f:
        assert f["/entry/instrument/det01/data"].shape == (5, 64, 48)


def stop(pids: list[int], signum: signal.Signals) -> None:
    """End the steps' background jobs (ours, by PID); SIGKILL what is left after 15 s."""
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signum)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in pids if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after {signum.name}: {left}"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _pids(
    program: str = "", *args: str, environ: Callable[[bytes], bool] = lambda _: True
) -> list[int]:
    """Processes running ``program`` (any, if empty) with ``args``, whose environment passes."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        named = not program or any(arg.endswith(f"/{program}".encode()) for arg in argv[:2])
        if named and all(arg.encode() in argv for arg in args) and environ(env):
            pids.append(int(entry.name))
    return pids

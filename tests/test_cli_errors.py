"""Bad arguments to every console script, as a user meets them in a shell.

Each case runs the script from the virtualenv in an empty directory. The
refusal is one line on stderr naming what to fix (the flag, not a field
name or a regular expression), the exit status is not 0, there is no
traceback, the script ends within a bound (no hang), and the directory,
with everything the arguments point into, is left as it was: no empty run
directory, no database file, no log. stream-receiver and daq-generator have
their flags checked in detail in tests/test_cli_arguments.py; here they
appear for what starts something (a port in use).

The scripts' ``--help`` is checked too: every option shows its default, no
reStructuredText markup, no ``python -m`` name.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import VENV_BIN
from tooling.ports import free_port

CAPTURE = Path(__file__).parent / "data" / "dectris-stream1-capture.cbors.gz"
README = Path(__file__).resolve().parents[1] / "README.md"
BOUND_S = 20.0
"""The longest a refusal may take: the slowest waits 5 s for a trigger input that is not there."""


@dataclass(frozen=True)
class Case:
    script: str
    argv: tuple[str, ...]
    says: str
    """Text the one line holds; ``{busy}`` and ``{dead}`` stand for the test's ports."""
    status: int = 2


BUSY = "{busy}"
DEAD = "{dead}"
MISSING = "{tmp}/missing"

CASES = [
    # stream-receiver and daq-generator: what their own table cannot hold (a port in use)
    Case("stream-receiver", ("--http", f"127.0.0.1:{BUSY}", "--data-root", "{tmp}"),
         f"cannot serve the HTTP API on 127.0.0.1:{BUSY} (Address already in use): pass "
         "another --http", status=1),
    Case("daq-generator", ("--frames", "-1"), "--frames: Input should be greater than or equal"),
    # daq-replay
    Case("daq-replay", (MISSING,), f"cannot read capture {MISSING}"),
    Case("daq-replay", (str(README),), "is not an array of byte strings"),
    Case("daq-replay", ("--rate", "-1", str(CAPTURE)), "argument --rate: must be a finite number"),
    Case("daq-replay", ("--timeout", "0", str(CAPTURE)), "argument --timeout: must be more than 0"),
    Case("daq-replay", ("--bind", "localhost:9999", str(CAPTURE)), "argument --bind: 'localhost"),
    Case("daq-replay", ("--log-level", "LOUD", str(CAPTURE)), "argument --log-level: invalid"),
    Case("daq-replay", (), "the following arguments are required: capture"),
    # daq-demo
    Case("daq-demo", ("--triggers", "0"), "argument --triggers: must be at least 1, got 0"),
    Case("daq-demo", ("--frames-per-trigger", "x"), "argument --frames-per-trigger: 'x' is not"),
    Case("daq-demo", ("--frame-time", "0"), "argument --frame-time: must be more than 0 s"),
    Case("daq-demo", ("--data-root", MISSING), f"--data-root {MISSING}: no such directory"),
    Case("daq-demo", ("--colour", "blue"), "unrecognized arguments: --colour blue"),
    # daq-stream-demo
    Case("daq-stream-demo", ("--frames", "-1"), "argument --frames: must be at least 1, got -1"),
    Case("daq-stream-demo", ("--data-root", MISSING), f"--data-root {MISSING}: no such directory"),
    Case("daq-stream-demo", ("--shape", "0", "4"), "argument --shape: must be at least 1, got 0"),
    Case("daq-stream-demo", ("--rate", "inf"), "argument --rate: must be a finite number"),
    Case("daq-stream-demo", ("--workers", "65"), "argument --workers: must be at most 64"),
    # daq-tango
    Case("daq-tango", (), "the following arguments are required: COMMAND"),
    Case("daq-tango", ("begin",), "argument COMMAND: invalid choice: 'begin'"),
    Case("daq-tango", ("database", "--port", "99999"), "argument --port: 99999 is not a port"),
    Case("daq-tango", ("database", "--port", "0"), "--port: give the port clients will use"),
    Case("daq-tango", ("database", "--port", DEAD, "--file", f"{MISSING}/tango.db"),
         f"--file {MISSING}/tango.db: no directory {MISSING}"),
    Case("daq-tango", ("database", "--port", BUSY), f"--port {BUSY}: 127.0.0.1:{BUSY} is in use",
         status=1),
    Case("daq-tango", ("load", MISSING), f"{MISSING}: no such file"),
    Case("daq-tango", ("load", str(README)), "not a dsconfig JSON document"),
    Case("daq-tango", ("load", "--property", "DataRoot=/data"), "--property 'DataRoot=/data': "
         "expected DEVICE/NAME=VALUE"),
    Case("daq-tango", ("load", "--property", "a/b/c/DataRoot=/data"),
         "--property: device 'a/b/c' is not in the configuration"),
    Case("daq-tango", ("load", "--startup-level", "-1"), "argument --startup-level: must be at"),
    Case("daq-tango", ("load", "--wait", "0.2"), f"no Tango database answered on 127.0.0.1:{DEAD} "
         f"within 0.2 s: is it running? (daq-tango database --port {DEAD})", status=1),
    Case("daq-tango", ("wait", "sim/detector/det01", "--timeout", "0.2"),
         "sim/detector/det01 did not answer within 0.2 s", status=1),
    Case("daq-tango", ("start", "DetectorDevice/det01", "--timeout", "0.2"),
         "tango/admin/", status=1),
    Case("daq-tango", ("stop", "DetectorDevice/det01"), f"database on host 127.0.0.1 with port "
         f"{DEAD}", status=1),
    Case("daq-tango", ("stop",), "the following arguments are required: server"),
    # daq-sim
    Case("daq-sim", (), "the following arguments are required: SIMULATOR"),
    Case("daq-sim", ("trigger", "notaurl"), "argument address: 'notaurl' is not a ZeroMQ endpoint"),
    Case("daq-sim", ("trigger", "tcp://127.0.0.1:9998", "--count", "0"),
         "argument --count: must be at least 1, got 0"),
    Case("daq-sim", ("trigger", "tcp://127.0.0.1:9998", "--width", "-1"),
         "argument --width: must be a finite number of at least 0"),
    Case("daq-sim", ("trigger", f"tcp://127.0.0.1:{DEAD}"),
         f"no simulated detector listens for triggers on tcp://127.0.0.1:{DEAD}", status=1),
    Case("daq-sim", ("eiger", "--port", "99999"), "argument --port: 99999 is not a port number"),
    Case("daq-sim", ("eiger", "--stream", "9999"), "argument --stream: '9999' is not a ZeroMQ"),
    Case("daq-sim", ("eiger", "--port", BUSY, "--stream", "none"), f"127.0.0.1:{BUSY}", status=1),
    Case("daq-sim", ("pilatus",), "daq-sim pilatus: error: the following arguments are required"),
    Case("daq-sim", ("pilatus", "--imgpath", MISSING), f"--imgpath {MISSING}: no such directory"),
    Case("daq-sim", ("pilatus", "--imgpath", "{tmp}", "--port", "99999"),
         "daq-sim pilatus: error: argument --port: 99999 is not a port number"),
    Case("daq-sim", ("pilatus", "--imgpath", "{tmp}", "--shape", "0", "5"),
         "argument --shape: must be at least 1, got 0"),
    Case("daq-sim", ("pilatus", "--imgpath", "{tmp}", "--trigger-input", "9998"),
         "argument --trigger-input: '9998' is not a ZeroMQ endpoint"),
    Case("daq-sim", ("pilatus", "--imgpath", "{tmp}", "--port", BUSY),
         f"cannot listen on 127.0.0.1:{BUSY}: Address already in use (in use: choose another "
         "--port)", status=1),
    # daq-bench (refused before it measures anything)
    Case("daq-bench", ("--workers", "0"), "argument --workers: must be at least 1, got 0"),
    Case("daq-bench", ("--sizes", "big"), "argument --sizes: 'big' is not a size"),
    Case("daq-bench", ("--repeat", "0"), "argument --repeat: must be at least 1, got 0"),
    Case("daq-bench", ("--pilatus", "0"), "argument --pilatus: must be at least 1, got 0"),
    Case("daq-bench", ("--data-dir", MISSING), f"--data-dir {MISSING}: no such directory"),
    Case("daq-bench", ("--json", f"{MISSING}/r.json"), f"--json {MISSING}/r.json: no directory"),
    Case("daq-bench", ("--modes", "fast"), "argument --modes: invalid choice: 'fast'"),
    # DetectorDevice (TANGO_HOST names a port where no database runs)
    Case("DetectorDevice", (), "give the server instance first, e.g. DetectorDevice det01"),
    Case("DetectorDevice", ("-v4",), "give the server instance first"),
    Case("DetectorDevice", ("det01", "--colour"), "unrecognized arguments: --colour"),
    Case("DetectorDevice", ("det01", "-nodb"), "-nodb option should used with"),
    Case("DetectorDevice", ("det01",), "Can't build connection to TANGO database server",
         status=255),
    # pilatus-streamer
    Case("pilatus-streamer", (), "the following arguments are required: --imgpath"),
    Case("pilatus-streamer", ("--imgpath", MISSING), f"--imgpath {MISSING}: no such directory"),
    Case("pilatus-streamer", ("--imgpath", "{tmp}", "--listen", "8888"),
         "argument --listen: '8888' is not host:port"),
    Case("pilatus-streamer", ("--imgpath", "{tmp}", "--stream", "9999"),
         "argument --stream: '9999' is not a ZeroMQ endpoint"),
    Case("pilatus-streamer", ("--imgpath", "{tmp}", "--file-timeout", "0"),
         "argument --file-timeout: must be more than 0 s"),
    Case("pilatus-streamer", ("--imgpath", "{tmp}", "--camserver", f"127.0.0.1:{DEAD}",
                              "--listen", "127.0.0.1:0", "--stream", "tcp://127.0.0.1:*"),
         f"cannot reach camserver at 127.0.0.1:{DEAD}", status=1),
]  # fmt: skip


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A port something listens on, for the scripts that must refuse it."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


def _id(case: Case) -> str:
    return f"{case.script} {' '.join(case.argv)}".strip()


@pytest.mark.parametrize("case", CASES, ids=[_id(case) for case in CASES])
def test_a_bad_argument_is_refused_in_one_line(case: Case, tmp_path: Path, busy_port: int) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    ports = {"busy": str(busy_port), "dead": str(free_port()), "tmp": str(tmp_path / "arg")}
    (tmp_path / "arg").mkdir()
    argv = [arg.format(**ports) for arg in case.argv]
    env = {**os.environ, "TANGO_HOST": f"127.0.0.1:{ports['dead']}"}
    env.pop("ORBendPoint", None)

    started = time.monotonic()
    result = subprocess.run(
        [str(VENV_BIN / case.script), *argv],
        capture_output=True,
        text=True,
        timeout=BOUND_S + 10,
        check=False,
        cwd=cwd,
        env=env,
    )

    elapsed = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == case.status, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert case.says.format(**ports) in lines[0]
    for internal in ("errors.pydantic.dev", "String should match", "pattern", "_port"):
        assert internal not in lines[0]
    assert elapsed < BOUND_S
    assert list(cwd.iterdir()) == []
    assert list((tmp_path / "arg").iterdir()) == []


HELP = [
    ["daq-replay"],
    ["daq-demo"],
    ["daq-stream-demo"],
    ["daq-tango"],
    ["daq-tango", "database"],
    ["daq-tango", "load"],
    ["daq-tango", "wait"],
    ["daq-tango", "start"],
    ["daq-tango", "stop"],
    ["daq-sim"],
    ["daq-sim", "trigger"],
    ["daq-sim", "eiger"],
    ["daq-sim", "pilatus"],
    ["daq-bench"],
    ["pilatus-streamer"],
]


@pytest.mark.parametrize("command", HELP, ids=[" ".join(c) for c in HELP])
def test_help_shows_every_default_in_plain_text(command: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [str(VENV_BIN / command[0]), *command[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=tmp_path,
    )
    text = result.stdout
    assert text.startswith(f"usage: {' '.join(command)} ")
    assert "``" not in text and "python -m" not in text
    for option, described in _options(text):
        if option not in ("-h, --help",) and "required" not in described:
            assert "default" in described or "must exist" in described, option
    assert list(tmp_path.iterdir()) == []


def _options(help_text: str) -> list[tuple[str, str]]:
    """(option, its description) for each ``--option`` entry of an argparse help text."""
    entries: list[tuple[str, str]] = []
    for line in help_text.splitlines():
        stripped = line.strip()
        if line.startswith("  -") and stripped.startswith("-"):
            option, _, described = stripped.partition("  ")
            entries.append((option, described.strip()))
        elif entries and line.startswith(" " * 8):
            entries[-1] = (entries[-1][0], f"{entries[-1][1]} {stripped}")
    return entries

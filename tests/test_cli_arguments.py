"""Bad arguments to the console scripts, as a user meets them in a shell.

Each script runs as a subprocess from the virtualenv, as typed: the refusal
is one line on stderr that names the flag at fault (not a field name, a
regular expression or a pydantic URL), the exit status is 2 and there is no
traceback. Every case is refused before a socket or the HTTP API is opened.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import VENV_BIN

RECEIVER = VENV_BIN / "stream-receiver"
GENERATOR = VENV_BIN / "daq-generator"
TRANSFORM_UNKNOWN = '[{"kind": "sharpen"}]'
MODULE_BADLY_NAMED = '[{"name": "../m0", "connect": "tcp://127.0.0.1:9010", "x": 0, "y": 0}]'


def refusal(script: Path, argv: list[str], cwd: Path) -> str:
    """The one line ``script`` refuses ``argv`` with; fails unless it exits 2 without traceback."""
    result = subprocess.run(
        [str(script), *argv], capture_output=True, text=True, timeout=30, check=False, cwd=cwd
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "errors.pydantic.dev" not in lines[0]
    assert "pattern" not in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--workers", "0"], "--workers: Input should be greater than or equal to 1"),
        (["--workers", "many"], "--workers: Input should be a valid integer"),
        (["--workers"], "--workers: expected one argument"),
        (["--http", "5000"], "--http: must be HOST:PORT, got '5000'"),
        (["--http", "127.0.0.1:99999"], "--http: port: Input should be less than or equal"),
        (["--log-level", "LOUD"], "--log-level: invalid choice: 'LOUD'"),
        (["--protocol", "morse"], "--protocol: unknown protocol 'morse'"),
        (["--socket", "router"], "--socket: invalid choice: 'router'"),
        (["--connect", "localhost:9999"], "--connect: 'localhost:9999' is not a ZeroMQ endpoint"),
        (["--forward", "9998"], "--forward: '9998' is not a ZeroMQ endpoint"),
        (["--detector-name", "../x"], "--detector-name: '../x' is not a name"),
        (["--data-root", "/nonexistent/dir"], "create it or pass --data-root"),
        (["--gap-timeout", "0"], "--gap-timeout: Input should be greater than 0"),
        (["--rcvhwm", "0"], "--rcvhwm: Input should be greater than or equal to 1"),
        (["--full-shape", "0", "5"], "--full-shape: Input should be greater than 0"),
        (["--fill-value", "big"], "--fill-value: "),
        (["--transforms", TRANSFORM_UNKNOWN], "--transforms: 0: Input tag 'sharpen'"),
        (["--transforms", "{oops"], "--transforms: Invalid JSON"),
        (["--modules", MODULE_BADLY_NAMED], "--modules: 0.name: '../m0' is not a name"),
        (["--colour", "blue"], "unrecognized arguments: --colour blue"),
        (["--config", "/nonexistent/receiver.toml"], "/nonexistent/receiver.toml"),
    ],
)
def test_stream_receiver_refuses_a_bad_argument_in_one_line(
    tmp_path: Path, argv: list[str], named: str
) -> None:
    line = refusal(RECEIVER, argv, tmp_path)
    assert line.startswith("stream-receiver: ")
    assert named in line


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--frames", "-1"], "--frames: Input should be greater than or equal to 0"),
        (["--frames", "many"], "--frames: invalid int value: 'many'"),
        (["--shape", "0", "5"], "--shape: Input should be greater than 0"),
        (["--shape", "4"], "--shape: expected 2 arguments"),
        (["--bind", "localhost:9999"], "--bind: 'localhost:9999' is not a ZeroMQ endpoint"),
        (["--connect", "localhost:9999"], "--connect: 'localhost:9999' is not a ZeroMQ endpoint"),
        (["--bind", "tcp://127.0.0.1:1", "--connect", "tcp://127.0.0.1:1"], "not allowed with"),
        (["--rate", "-1"], "--rate: Input should be greater than or equal to 0"),
        (["--rate", "inf"], "--rate: Input should be a finite number"),
        (["--timeout", "0"], "--timeout: Input should be greater than 0"),
        (["--thresholds", "9"], "--thresholds: Input should be less than or equal to 4"),
        (["--dtype", "int8"], "--dtype: invalid choice: 'int8'"),
        (["--meta", "[1]"], "--meta: must be a JSON object"),
        (["--series", "0"], "--series: must be at least 1"),
        (["--log-level", "LOUD"], "--log-level: invalid choice: 'LOUD'"),
        (["--modules", "17"], "--modules: Input should be less than or equal to 16"),
        (["--geometry", "/nonexistent/geometry.json"], "--geometry: cannot read"),
        (["--protocol", "sls", "--compression", "bslz4"], "the SLS stream sends raw"),
        (["--colour", "blue"], "unrecognized arguments: --colour blue"),
    ],
)
def test_daq_generator_refuses_a_bad_argument_in_one_line(
    tmp_path: Path, argv: list[str], named: str
) -> None:
    line = refusal(GENERATOR, argv, tmp_path)
    assert line.startswith("daq-generator: error: ")
    assert named in line


def test_a_geometry_file_of_the_wrong_form_is_refused_in_one_line(tmp_path: Path) -> None:
    geometry = tmp_path / "geometry.json"
    geometry.write_text('{"full_shape": [4, 4], "modules": [{"name": "a", "x": "left", "y": 0}]}')

    line = refusal(GENERATOR, ["--geometry", str(geometry)], tmp_path)

    assert f"--geometry: {geometry}: modules.0.x: Input should be a valid integer" in line

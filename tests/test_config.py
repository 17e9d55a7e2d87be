"""Receiver configuration: files and flags are validated once, with messages that name the fix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from receiver.config import ConfigError, load
from tests.helpers import VENV_BIN


def test_toml_file_with_flag_overrides(tmp_path: Path) -> None:
    config_file = tmp_path / "receiver.toml"
    config_file.write_text(
        f'connect = ["tcp://dcu:9999"]\nworkers = 4\ndata_root = "{tmp_path}"\n'
        'detector_name = "eiger"\n'
    )

    config = load(config_file, {"workers": 8, "forward": None})

    assert config.connect == ["tcp://dcu:9999"]
    assert config.workers == 8
    assert config.detector_name == "eiger"


def test_json_file(tmp_path: Path) -> None:
    config_file = tmp_path / "receiver.json"
    config_file.write_text(json.dumps({"data_root": str(tmp_path), "io_threads": 2}))

    assert load(config_file).io_threads == 2


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"workers": 0}, "workers: Input should be greater than or equal to 1"),
        ({"protocol": "morse"}, "unknown protocol 'morse'"),
        ({"connect": ["localhost:9999"]}, "connect.0"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
        ({"detector_name": "../x"}, "detector_name"),
        ({"data_root": "/nonexistent/dir"}, "data root /nonexistent/dir is not a directory"),
        ({"socket": "sub", "workers": 2}, "socket 'sub' needs workers = 1"),
        ({"socket": "router"}, "socket: Input should be 'pull' or 'sub'"),
    ],
)
def test_invalid_settings_are_refused_with_the_field_named(settings, expected) -> None:
    with pytest.raises(ConfigError, match="invalid receiver configuration") as info:
        load(overrides=settings)
    assert expected in str(info.value)


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load(tmp_path / "missing.toml")
    broken = tmp_path / "broken.json"
    broken.write_text("{workers: 2")
    with pytest.raises(ConfigError, match="is not valid"):
        load(broken)


def test_cli_exits_with_a_one_line_reason_on_bad_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "stream-receiver"), "--workers", "0", "--data-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "stream-receiver: invalid receiver configuration: "
        "workers: Input should be greater than or equal to 1"
    ]


@pytest.mark.parametrize("protocol", ["stins", "dectris-v1", "dectris-v2", "sls"])
def test_every_protocol_can_be_chosen(tmp_path: Path, protocol: str) -> None:
    assert load(overrides={"protocol": protocol, "data_root": tmp_path}).protocol == protocol

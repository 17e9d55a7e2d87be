"""Receiver configuration: files and flags are validated once, with messages that name the fix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from pydantic import Field

from receiver import cli
from receiver.cli import HTTP_FIELDS, build_parser, flag_of, overrides
from receiver.config import ConfigError, ReceiverConfig, load
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


def test_cli_names_the_key_of_a_bad_configuration_file(tmp_path: Path) -> None:
    config_file = tmp_path / "receiver.toml"
    config_file.write_text("workers = 0\n")
    result = subprocess.run(
        [str(VENV_BIN / "stream-receiver"), "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "stream-receiver: invalid receiver configuration: "
        "workers: Input should be greater than or equal to 1"
    ]


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path: Path) -> None:
    config_file = tmp_path / "receiver.toml"
    config_file.write_text(
        f'workers = 4\ndetector_name = "eiger"\nwrite = false\ndata_root = "{tmp_path}"\n'
    )
    args = build_parser().parse_args(["--config", str(config_file), "--workers", "8", "--write"])

    config = load(args.config, overrides(args), args.entry)

    assert (config.workers, config.write) == (8, True)
    assert config.detector_name == "eiger"
    assert config.io_threads == ReceiverConfig.model_fields["io_threads"].default


def test_every_configuration_field_has_a_flag() -> None:
    flags = {
        option: action for action in build_parser()._actions for option in action.option_strings
    }
    for name in ReceiverConfig.model_fields:
        action = flags[flag_of(name)]
        assert action.dest == ("http" if name in HTTP_FIELDS else name)


def test_help_shows_the_default_of_every_option() -> None:
    for action in build_parser()._actions:
        if action.option_strings and action.dest != "help":
            assert "(default: " in str(action.help), action.option_strings


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["--connect", "tcp://a:1", "--connect", "ipc:///b"], "connect", ["tcp://a:1", "ipc:///b"]),
        (["--workers", "4"], "workers", 4),
        (["--socket", "sub", "--workers", "1"], "socket", "sub"),
        (["--no-write"], "write", False),
        (["--legacy-last-frame"], "legacy_last_frame", True),
        (["--http", "0.0.0.0:0"], "http_host", "0.0.0.0"),
        (["--http", "0.0.0.0:0"], "http_port", 0),
        (["--gap-timeout", "0.5"], "gap_timeout", 0.5),
        (["--fill-value", "0"], "fill_value", 0),
        (["--fill-value", "max"], "fill_value", "max"),
        (["--rcvhwm", "3"], "rcvhwm", 3),
        (["--forward", "tcp://127.0.0.1:9998"], "forward", "tcp://127.0.0.1:9998"),
    ],
)
def test_each_form_of_flag_sets_its_field(
    tmp_path: Path, argv: list[str], field: str, value: object
) -> None:
    args = build_parser().parse_args([*argv, "--data-root", str(tmp_path)])

    assert getattr(load(None, overrides(args)), field) == value


def test_structured_fields_take_json_or_their_length_in_words(tmp_path: Path) -> None:
    modules = [{"name": "m0", "connect": "tcp://127.0.0.1:9010", "x": 0, "y": 0}]
    argv = ["--modules", json.dumps(modules), "--full-shape", "4", "8"]
    argv += ["--transforms", '[{"kind": "rotate", "k": 1}]', "--data-root", str(tmp_path)]

    config = load(None, overrides(build_parser().parse_args(argv)))

    assert [m.name for m in config.modules] == ["m0"]
    assert config.full_shape == (4, 8)
    assert [t.kind for t in config.transforms] == ["rotate"]


def test_a_new_field_gets_its_flag_without_an_edit(monkeypatch: pytest.MonkeyPatch) -> None:
    class Extended(ReceiverConfig):
        new_knob: int = Field(default=3, ge=0, description="a knob added later")

    monkeypatch.setattr(cli, "ReceiverConfig", Extended)
    parser = build_parser()

    assert overrides(parser.parse_args(["--new-knob", "5"])) == {"new_knob": 5}
    assert "a knob added later (default: 3)" in " ".join(parser.format_help().split())


def test_log_level_is_case_insensitive() -> None:
    assert build_parser().parse_args(["--log-level", "debug"]).log_level == "DEBUG"


@pytest.mark.parametrize("protocol", ["stins", "dectris-v1", "dectris-v2", "sls"])
def test_every_protocol_can_be_chosen(tmp_path: Path, protocol: str) -> None:
    assert load(overrides={"protocol": protocol, "data_root": tmp_path}).protocol == protocol

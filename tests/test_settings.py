"""The settings of one series: validated once, refused in the words of the Tango attributes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pydantic
import pytest

from devices.settings import AcquisitionSettings, SettingsError, TriggerMode, WrittenSettings


def written(**change: Any) -> WrittenSettings:
    return dataclasses.replace(WrittenSettings.defaults(), **change)


def test_defaults_are_one_internal_frame_of_a_tenth_of_a_second() -> None:
    settings = WrittenSettings.defaults().settings()

    assert settings == AcquisitionSettings()
    assert settings.exposure_time == settings.frame_time == 0.1
    assert settings.trigger_mode is TriggerMode.INTERNAL
    assert settings.total_frames == 1
    assert settings.filename == ""


def test_a_series_is_built_from_what_was_written() -> None:
    settings = written(
        exposure_time=0.001,
        frame_time=0.002,
        trigger_mode=TriggerMode.SOFTWARE,
        n_triggers=3,
        frames_per_trigger=2,
        filename="scan.h5",
    ).settings()

    assert settings.total_frames == 6
    assert settings.trigger_mode is TriggerMode.SOFTWARE
    assert settings.filename == "scan.h5"


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"exposure_time": 0.0}, "ExposureTime must be > 0 s, not 0"),
        ({"exposure_time": -0.5}, "ExposureTime must be > 0 s, not -0.5"),
        (
            {"exposure_time": 0.1, "frame_time": 0.05},
            "FrameTime (0.05 s) must be at least ExposureTime (0.1 s): "
            "the detector cannot expose longer than a frame lasts",
        ),
        ({"n_triggers": 0}, "nTriggers must be >= 1, not 0"),
        ({"frames_per_trigger": -2}, "nFramesPerTrigger must be >= 1, not -2"),
        (
            {"trigger_mode": TriggerMode.GATE, "frames_per_trigger": 2},
            "TriggerMode GATE takes one frame per gate pulse: set nFramesPerTrigger to 1 "
            "and nTriggers to the number of gates",
        ),
        ({"trigger_mode": 9}, "TriggerMode: Input should be 0, 1, 2, 3 or 4"),
    ],
)
def test_refusals_name_the_attribute_to_fix(change: dict[str, Any], refusal: str) -> None:
    with pytest.raises(SettingsError) as refused:
        written(**change).settings()

    assert str(refused.value) == refusal


def test_every_refusal_is_told_at_once() -> None:
    with pytest.raises(SettingsError) as refused:
        written(exposure_time=0.0, n_triggers=0).settings()

    assert str(refused.value) == "ExposureTime must be > 0 s, not 0; nTriggers must be >= 1, not 0"


def test_gate_with_one_frame_per_pulse_is_a_series() -> None:
    settings = written(trigger_mode=TriggerMode.GATE, n_triggers=5).settings()

    assert settings.total_frames == 5


def test_built_settings_cannot_change_nor_take_unknown_fields() -> None:
    settings = AcquisitionSettings()

    with pytest.raises(pydantic.ValidationError, match="frozen"):
        settings.n_triggers = 2  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        AcquisitionSettings(latency_time=0.1)  # type: ignore[call-arg]


def test_the_schema_carries_attribute_names_bounds_and_units() -> None:
    fields = AcquisitionSettings.model_json_schema()["properties"]

    assert fields["exposure_time"]["title"] == "ExposureTime"
    assert fields["exposure_time"]["exclusiveMinimum"] == 0
    assert fields["exposure_time"]["unit"] == "s"
    assert fields["n_triggers"]["minimum"] == 1
    assert fields["frames_per_trigger"]["title"] == "nFramesPerTrigger"
    assert all(field.get("description") for field in fields.values())

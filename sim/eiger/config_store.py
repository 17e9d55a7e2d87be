"""The configuration parameters of the detector and its subsystems, as the detector keeps them.

Setting one parameter may set others, as on the detector: ``count_time`` and
``frame_time`` keep the shortest gap between them and recompute the subframes
of auto summation; the photon energy, wavelength and element set each other
and the threshold (half the photon energy); the threshold's two names set
each other. :meth:`ConfigStore.change` answers every parameter a change touched,
as ``PUT .../config/<key>`` does. At arm, :meth:`ConfigStore.latch` fixes what
the series runs with and what its header carries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from sim.eiger import parameters as params
from sim.eiger.series_plan import Plan, subframes_of
from sim.eiger.simplon import SimplonError
from sim.eiger.stream import SeriesConfig

COUNT_TIME_GAP_S = 3.0e-6
"""frame_time - count_time in the real capture: the shortest gap the detector keeps."""
TIMING_KEYS = (
    "bit_depth_image",
    "count_time",
    "countrate_correction_count_cutoff",
    "frame_count_time",
    "frame_period",
    "frame_time",
)
SUMMATION_KEYS = (
    "auto_summation",
    "bit_depth_image",
    "countrate_correction_count_cutoff",
    "frame_count_time",
    "frame_period",
)
ENERGY_KEYS = ("element", "photon_energy", "wavelength")
"""Setting one sets the others and the threshold (half the photon energy)."""
THRESHOLD_KEYS = ("threshold/1/energy", "threshold_energy")
"""Two names of one threshold: setting one sets both."""


class ConfigStore:
    """Every subsystem's ``config`` section; not locked: the detector's lock guards it."""

    def __init__(self) -> None:
        defaults = params.detector_defaults()
        self._header_keys = tuple(defaults.header)
        self.pixel_mask = defaults.pixel_mask
        self._config: dict[str, dict[str, Any]] = {
            "detector": defaults.config,
            **{name: dict(params.section_defaults(name)) for name in params.SUBSYSTEMS[1:]},
        }
        detector = self._config["detector"]
        self._cutoff_per_subframe = detector["countrate_correction_count_cutoff"] / subframes_of(
            detector["frame_time"], detector["auto_summation"]
        )

    def value(self, subsystem: str, key: str) -> Any:
        return self._config[subsystem][key]

    @property
    def streaming(self) -> bool:
        """The stream is enabled: a series armed now sends its images."""
        return bool(self._config["stream"]["mode"] == "enabled")

    def check(self, param: params.Param, value: Any) -> Any:
        """``value`` as the parameter stores it; 400 with the reason when it cannot be."""
        try:
            if param.array_dtype is not None:
                return params.decode_darray(
                    param.key, value, param.array_dtype, self._image_shape()
                )
            return param.check(value)
        except params.ParameterError as exc:
            raise SimplonError(400, str(exc)) from None

    def change(self, subsystem: str, key: str, value: Any) -> set[str]:
        """Set one checked parameter; the parameters that changed with it."""
        if subsystem != "detector":
            self._config[subsystem][key] = value
            return {key}
        return self._set_detector(key, value)

    def disable_stream(self) -> None:
        """The stream's ``initialize`` command: it starts over disabled."""
        self._config["stream"]["mode"] = "disabled"

    def latch(self, series_unique_id: str, arm_date: datetime) -> tuple[Plan, SeriesConfig]:
        """At arm: the series' plan and its header, from the configuration as it is now."""
        detector = self._config["detector"]
        detector["data_collection_date"] = arm_date.isoformat(timespec="milliseconds")
        plan = Plan(
            mode=detector["trigger_mode"],
            nimages=detector["nimages"],
            ntrigger=detector["ntrigger"],
            count_time=detector["count_time"],
            frame_time=detector["frame_time"],
            readout_time=detector["detector_readout_time"],
            auto_summation=detector["auto_summation"],
        )
        config = SeriesConfig(
            series_unique_id=series_unique_id,
            arm_date=arm_date,
            number_of_images=plan.total,
            detector={key: detector[key] for key in self._header_keys},
            stream=dict(self._config["stream"]),
            extra_config={k: v for k, v in detector.items() if k not in self._header_keys},
            pixel_mask=self.pixel_mask,
        )
        return plan, config

    def _image_shape(self) -> tuple[int, int]:
        detector = self._config["detector"]
        return (detector["y_pixels_in_detector"], detector["x_pixels_in_detector"])

    def _set_detector(self, key: str, value: Any) -> set[str]:
        config = self._config["detector"]
        if key == "pixel_mask":
            self.pixel_mask = value
            config["number_of_excluded_pixels"] = int(np.count_nonzero(value))
            return {key, "number_of_excluded_pixels"}
        config[key] = value
        changed = {key}
        if key == "count_time" and config["frame_time"] < value + COUNT_TIME_GAP_S:
            config["frame_time"] = value + COUNT_TIME_GAP_S
        elif key == "frame_time" and config["count_time"] > value - COUNT_TIME_GAP_S:
            config["count_time"] = value - COUNT_TIME_GAP_S
        if key in ("count_time", "frame_time"):
            changed.update(TIMING_KEYS)
            self._derive_timing()
        elif key == "auto_summation":
            changed.update(SUMMATION_KEYS)
            self._derive_timing()
        elif key == "photon_energy":
            self._set_energy(value, element="")
        elif key == "wavelength":
            self._set_energy(params.HC_EV_ANGSTROM / value, element="")
        elif key == "element":
            self._set_energy(params.K_ALPHA1_EV[value], element=value)
        elif key in THRESHOLD_KEYS:
            config.update(dict.fromkeys(THRESHOLD_KEYS, value))
            changed.update(THRESHOLD_KEYS)
        if key in ENERGY_KEYS:
            changed.update((*ENERGY_KEYS, *THRESHOLD_KEYS))
        return changed

    def _derive_timing(self) -> None:
        """Subframes of auto summation, from frame_time, as the detector recomputes them."""
        config = self._config["detector"]
        subframes = subframes_of(config["frame_time"], config["auto_summation"])
        config["frame_period"] = config["frame_time"] / subframes
        config["frame_count_time"] = config["frame_period"] - config["detector_readout_time"]
        config["bit_depth_image"] = 32 if subframes > 1 else config["bit_depth_readout"]
        config["countrate_correction_count_cutoff"] = round(self._cutoff_per_subframe * subframes)

    def _set_energy(self, photon_energy: float, element: str) -> None:
        lo, hi = params.PHOTON_ENERGY_EV
        photon_energy = min(max(photon_energy, lo), hi)
        config = self._config["detector"]
        config["photon_energy"] = photon_energy
        config["wavelength"] = params.HC_EV_ANGSTROM / photon_energy
        config["element"] = element
        lo, hi = params.THRESHOLD_ENERGY_EV
        config.update(dict.fromkeys(THRESHOLD_KEYS, min(max(photon_energy / 2, lo), hi)))

"""The SIMPLON 1.8 surface of the simulated Eiger: every parameter, how it describes itself.

Declared apart from behaviour, as a list a reader can check against a real
detector. A ``GET`` of a parameter answers its value with metadata, compact
JSON with sorted keys as the detector control unit sends it, e.g.
``{"access_mode":"rw","max":1800,"min":2.9999e-06,"unit":"s","value":0.5,"value_type":"float"}``;
fields a parameter does not have are left out, never sent as ``null``
(areaDetector's ADEiger takes any ``allowed_values`` field as "enumeration").

Sources (SIMPLON API reference 1.8 is not public; these are what real
detectors answered): limits, units and the float/int/uint ranges
(+-FLT_MAX, int32, uint32) as a real EIGER1 500K answered them (recorded in
DLS's odin-detector Eiger simulator); keys of SIMPLON 1.8 as DLS's fastcs-eiger
introspects them (``wavelength`` and the ``error`` status are served but
missing from ``keys``, as on a real detector); the detector configuration keys
and values of the real EIGER1 1M capture in ``tests/data``
(``detector_config.json``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

API_VERSION = "1.8.0"
SUBSYSTEMS = ("detector", "stream", "monitor", "filewriter")
DETECTOR_CONFIG_FILE = Path(__file__).with_name("detector_config.json")

FLT_MAX = 3.4028234663852886e38
INT32 = (-2147483648, 2147483647)
UINT32 = (0, 4294967295)
HC_EV_ANGSTROM = 12398.419843320026
"""Planck constant x speed of light: the capture's wavelength is exactly this / photon_energy."""


class ValueType(StrEnum):
    FLOAT = "float"
    INT = "int"
    UINT = "uint"
    BOOL = "bool"
    STRING = "string"
    DATETIME = "datetime"
    STATE = "State"
    STRING_LIST = "string[]"


class Access(StrEnum):
    READ = "r"
    WRITE = "w"
    READ_WRITE = "rw"


class ParameterError(ValueError):
    """A value the parameter refuses; the message says what it accepts."""


@dataclass(frozen=True, slots=True)
class Param:
    """One SIMPLON parameter: its type, access, limits and unit."""

    key: str
    value_type: ValueType
    access: Access = Access.READ_WRITE
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    listed: bool = True
    """Whether ``.../keys`` names it (a real detector omits a few it serves)."""
    length: int | None = None
    """A fixed-length list of ``value_type`` items (``detector_translation``)."""
    array_dtype: str | None = None
    """An image-sized array sent as a ``__darray__`` (``pixel_mask``), of this numpy dtype."""

    @property
    def writable(self) -> bool:
        return "w" in self.access

    def describe(self, value: Any) -> dict[str, Any]:
        """The JSON a GET answers, keys sorted like the detector's."""
        out: dict[str, Any] = {"access_mode": str(self.access), "value": value}
        out["value_type"] = str(self.value_type)
        if self.allowed is not None:
            out["allowed_values"] = list(self.allowed)
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.unit is not None:
            out["unit"] = self.unit
        return dict(sorted(out.items()))

    def check(self, value: Any) -> Any:
        """``value`` as stored, or :class:`ParameterError` saying why it is refused."""
        if self.length is not None:
            if not isinstance(value, list) or len(value) != self.length:
                raise ParameterError(
                    f"{self.key} takes a list of {self.length} {self.value_type} values, "
                    f"not {_show(value)}"
                )
            return [self._check_one(item) for item in value]
        return self._check_one(value)

    def _check_one(self, value: Any) -> Any:
        match self.value_type:
            case ValueType.FLOAT:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ParameterError(f"{self.key} takes a number, not {_show(value)}")
                if not math.isfinite(value):
                    raise ParameterError(f"{self.key} takes a finite number, not {value}")
                value = float(value)
            case ValueType.INT | ValueType.UINT:
                value = self._integer(value)
            case ValueType.BOOL:
                if not isinstance(value, bool):
                    raise ParameterError(f"{self.key} takes true or false, not {_show(value)}")
            case ValueType.STRING:
                if not isinstance(value, str):
                    raise ParameterError(f"{self.key} takes a string, not {_show(value)}")
            case _:
                raise ParameterError(f"{self.key} ({self.value_type}) cannot be written")
        self._check_limits(value)
        return value

    def _integer(self, value: Any) -> int:
        integral_float = isinstance(value, float) and value.is_integer()
        if isinstance(value, bool) or not (isinstance(value, int) or integral_float):
            raise ParameterError(f"{self.key} takes a whole number, not {_show(value)}")
        number = int(value)
        if self.value_type is ValueType.UINT and number < 0:
            raise ParameterError(f"{self.key} takes a number >= 0, not {number}")
        return number

    def _check_limits(self, value: Any) -> None:
        if self.allowed is not None and value not in self.allowed:
            raise ParameterError(
                f"{self.key} {value!r} is not allowed; allowed values: {', '.join(self.allowed)}"
            )
        if self.min is not None and value < self.min:
            raise ParameterError(f"{self.key} {value} is below its minimum {self.min}")
        if self.max is not None and value > self.max:
            raise ParameterError(f"{self.key} {value} is above its maximum {self.max}")


def encode_darray(array: np.ndarray) -> dict[str, Any]:
    """An array as SIMPLON sends one: base64 data, numpy dtype string and (rows, columns) shape."""
    return {
        "__darray__": [1, 0, 0],
        "data": base64.b64encode(array.tobytes()).decode("ascii"),
        "filters": ["base64"],
        "shape": list(array.shape),
        "type": array.dtype.str,
    }


def decode_darray(key: str, value: Any, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """A ``__darray__`` sent for ``key`` as a read-only array; ParameterError when it is not one."""
    expected = f'{{"__darray__": [1, 0, 0], "type": "{dtype}", "shape": {list(shape)}, '
    expected += '"filters": ["base64"], "data": <base64>}'
    if not isinstance(value, dict) or "__darray__" not in value:
        raise ParameterError(f"{key} takes an array as {expected}")
    if value.get("type") != dtype or list(value.get("shape", ())) != list(shape):
        raise ParameterError(
            f"{key} must be of type {dtype} and shape {list(shape)}, "
            f"not {value.get('type')} {value.get('shape')}"
        )
    if value.get("filters", ["base64"]) != ["base64"] or not isinstance(value.get("data"), str):
        raise ParameterError(f'{key}: the data must be base64 text (filters ["base64"])')
    try:
        raw = base64.b64decode(value["data"], validate=True)
    except binascii.Error:
        raise ParameterError(f"{key}: the data is not valid base64") from None
    array = np.frombuffer(raw, dtype=dtype)
    if array.size != math.prod(shape):
        raise ParameterError(f"{key}: {array.size} values sent, {math.prod(shape)} expected")
    return array.reshape(shape)


def _show(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {json.dumps(value)[:40]}"


def _float(key: str, unit: str, lo: float = -FLT_MAX, hi: float = FLT_MAX, **kw: Any) -> Param:
    return Param(key, ValueType.FLOAT, unit=unit, min=lo, max=hi, **kw)


def _uint(key: str, lo: int = UINT32[0], hi: int = UINT32[1], **kw: Any) -> Param:
    return Param(key, ValueType.UINT, min=lo, max=hi, **kw)


def _bool(key: str, **kw: Any) -> Param:
    # A real detector gives booleans int32 limits too.
    return Param(key, ValueType.BOOL, min=INT32[0], max=INT32[1], **kw)


def _string(key: str, allowed: tuple[str, ...] | None = None, **kw: Any) -> Param:
    return Param(key, ValueType.STRING, allowed=allowed, **kw)


def _table(*params: Param) -> dict[str, Param]:
    return {param.key: param for param in params}


R = Access.READ
ANGLES = tuple(
    _float(f"{axis}_{part}", "degree")
    for axis in ("chi", "kappa", "omega", "phi", "two_theta")
    for part in ("increment", "start")
)

K_ALPHA1_EV = {
    "Cr": 5414.72, "Mn": 5898.75, "Fe": 6403.84, "Co": 6930.32, "Ni": 7478.15,
    "Cu": 8047.78, "Zn": 8638.86, "Ga": 9251.74, "Ge": 9886.42, "As": 10543.72,
    "Se": 11222.4, "Br": 11924.2, "Kr": 12649.0, "Rb": 13395.3, "Sr": 14165.0,
    "Y": 14958.4, "Zr": 15775.1, "Nb": 16615.1, "Mo": 17479.34, "Tc": 18367.1,
    "Ru": 19279.2, "Rh": 20216.1, "Pd": 21177.1, "Ag": 22162.92, "Cd": 23173.6,
    "In": 24209.7, "Sn": 25271.3, "Sb": 26359.1, "Te": 27472.3, "I": 28612.0,
    "Xe": 29779.0, "Cs": 30972.8, "Ba": 32193.6, "La": 33441.8, "Ce": 34719.7,
}  # fmt: skip
"""K-alpha1 lines (X-ray data booklet) of the elements an EIGER1 Si offers for ``element``."""

PHOTON_ENERGY_EV = (5000.0, 36000.0)
THRESHOLD_ENERGY_EV = (2700.0, 18000.0)
FRAME_TIME_S = (1 / 3000, 360000.0)
"""3 kHz, the EIGER 1M's fastest frame rate; the long end as a real EIGER1 gives it."""
COUNT_TIME_S = (2.9999000616953708e-06, 1800.0)

ENABLED = ("enabled", "disabled")

DETECTOR_CONFIG = _table(
    _bool("auto_summation"),
    _float("beam_center_x", "pixel"),
    _float("beam_center_y", "pixel"),
    _uint("bit_depth_image", access=R),
    _uint("bit_depth_readout", access=R),
    _string("compression", ("lz4", "bslz4")),
    _float("count_time", "s", *COUNT_TIME_S),
    _string("counting_mode", ("normal", "retrigger")),
    _bool("countrate_correction_applied"),
    _uint("countrate_correction_count_cutoff", access=R),
    _string("data_collection_date", access=R),
    _string("description", access=R),
    _float("detector_distance", "m"),
    _string("detector_number", access=R),
    _float("detector_readout_time", "s", access=R),
    _float("detector_translation", "m", length=3),
    _string("eiger_fw_version", access=R),
    _string("element", tuple(K_ALPHA1_EV)),
    _bool("flatfield_correction_applied"),
    _float("frame_count_time", "s", access=R),
    _float("frame_period", "s", access=R),
    _float("frame_time", "s", *FRAME_TIME_S),
    _uint("nimages", 1, 2000000000),
    _uint("ntrigger", 1, 2000000000),
    _uint("number_of_excluded_pixels", access=R),
    _float("photon_energy", "eV", *PHOTON_ENERGY_EV),
    Param("pixel_mask", ValueType.UINT, min=UINT32[0], max=UINT32[1], array_dtype="<u4"),
    _bool("pixel_mask_applied"),
    # The capture's 1M has no ROI: "" is the one value it knows.
    _string("roi_mode", ("",), access=R),
    _string("sensor_material", access=R),
    _float("sensor_thickness", "m", access=R),
    _string("software_version", access=R),
    _float("threshold/1/energy", "eV", *THRESHOLD_ENERGY_EV),
    _string("threshold/1/mode", ENABLED),
    _float("threshold_energy", "eV", *THRESHOLD_ENERGY_EV),
    _string("trigger_mode", ("ints", "exts", "inte", "exte")),
    _bool("virtual_pixel_correction_applied"),
    _float(
        "wavelength",
        "angstrom",
        HC_EV_ANGSTROM / PHOTON_ENERGY_EV[1],
        HC_EV_ANGSTROM / PHOTON_ENERGY_EV[0],
        listed=False,
    ),
    _float("x_pixel_size", "m", access=R),
    _uint("x_pixels_in_detector", access=R),
    _float("y_pixel_size", "m", access=R),
    _uint("y_pixels_in_detector", access=R),
    *ANGLES,
)

STATES = ("na", "idle", "ready", "acquire", "configure", "initialize", "error")

DETECTOR_STATUS = _table(
    _string("state", STATES, access=R),
    Param("error", ValueType.STRING_LIST, access=R, listed=False),
    _string("time", access=R),
    _string("series_unique_id", access=R),
    Param("board_000/th0_temp", ValueType.FLOAT, access=R),
    Param("board_000/th0_humidity", ValueType.FLOAT, access=R),
    Param("builder/dcu_buffer_free", ValueType.FLOAT, access=R),
    _string("link_0", ("up", "down"), access=R),
    _string("link_1", ("up", "down"), access=R),
)

STREAM_CONFIG = _table(
    _string("mode", ENABLED),
    _string("header_detail", ("all", "basic", "none")),
    _string("header_appendix"),
    _string("image_appendix"),
    _string("format", ("legacy", "cbor")),
)
STREAM_STATUS = _table(
    _string("state", ("disabled", "ready", "acquire", "error"), access=R),
    _uint("dropped", access=R),
    Param("error", ValueType.STRING_LIST, access=R, listed=False),
)

MONITOR_CONFIG = _table(
    _string("mode", ENABLED),
    _uint("buffer_size", 1, 1000),
    _bool("discard_new"),
)
MONITOR_STATUS = _table(
    _string("state", ("normal", "overflow"), access=R),
    _uint("buffer_free", access=R),
    _uint("dropped", access=R),
    Param("error", ValueType.STRING_LIST, access=R),
)

FILEWRITER_CONFIG = _table(
    _string("mode", ENABLED),
    _uint("nimages_per_file", 0, 1000000),
    _uint("image_nr_start"),
    _string("name_pattern"),
    _bool("compression_enabled"),
)
FILEWRITER_STATUS = _table(
    _string("state", ("disabled", "ready", "acquire", "error"), access=R),
    _uint("buffer_free", access=R),
    Param("error", ValueType.STRING_LIST, access=R),
    Param("files", ValueType.STRING_LIST, access=R),  # ESRF's LIMA reads it; none written here
    _string("time", access=R),
)

PARAMETERS: dict[tuple[str, str], dict[str, Param]] = {
    ("detector", "config"): DETECTOR_CONFIG,
    ("detector", "status"): DETECTOR_STATUS,
    ("stream", "config"): STREAM_CONFIG,
    ("stream", "status"): STREAM_STATUS,
    ("monitor", "config"): MONITOR_CONFIG,
    ("monitor", "status"): MONITOR_STATUS,
    ("filewriter", "config"): FILEWRITER_CONFIG,
    ("filewriter", "status"): FILEWRITER_STATUS,
}

COMMANDS: dict[str, tuple[str, ...]] = {
    "detector": ("abort", "arm", "cancel", "disarm", "initialize", "status_update", "trigger"),
    "stream": ("initialize",),
    "monitor": ("clear", "initialize"),
    "filewriter": ("clear", "initialize"),
}

STREAM_DEFAULTS: dict[str, Any] = {
    "mode": "enabled",
    "header_detail": "all",
    "header_appendix": "",
    "image_appendix": "",
    "format": "legacy",
}
MONITOR_DEFAULTS: dict[str, Any] = {"mode": "disabled", "buffer_size": 10, "discard_new": False}
FILEWRITER_DEFAULTS: dict[str, Any] = {
    "mode": "disabled",
    "nimages_per_file": 1000,
    "image_nr_start": 1,
    "name_pattern": "series_$id",
    "compression_enabled": True,
}


def listed_keys(subsystem: str, section: str) -> list[str]:
    """What ``GET /<subsystem>/api/1.8.0/<section>/keys`` answers."""
    if section == "command":
        return list(COMMANDS[subsystem])
    return sorted(key for key, param in PARAMETERS[subsystem, section].items() if param.listed)


EXTRA_DEFAULTS = {"counting_mode": "normal", "threshold/1/mode": "enabled"}
"""Detector settings the capture's header does not carry; ``threshold/1/energy``
follows ``threshold_energy``."""


@dataclass(frozen=True, slots=True)
class DetectorDefaults:
    """The real capture's detector: its header configuration and its pixel mask."""

    header: dict[str, Any]
    """The ``dheader-1.0`` configuration, keys sorted."""
    pixel_mask: np.ndarray

    @property
    def config(self) -> dict[str, Any]:
        """Every detector configuration key but the pixel mask."""
        extra = EXTRA_DEFAULTS | {"threshold/1/energy": self.header["threshold_energy"]}
        return dict(sorted((self.header | extra).items()))


def detector_defaults(path: Path = DETECTOR_CONFIG_FILE) -> DetectorDefaults:
    """The detector of the real capture, checked against the declared keys."""
    document = json.loads(path.read_text())
    header = document["config"]
    declared = DETECTOR_CONFIG.keys() - EXTRA_DEFAULTS.keys() - {"threshold/1/energy", "pixel_mask"}
    missing, unknown = declared - header.keys(), header.keys() - declared
    if missing or unknown:
        raise ValueError(
            f"{path} does not match the declared detector parameters: "
            f"missing {sorted(missing)}, undeclared {sorted(unknown)}"
        )
    spec = document["pixel_mask"]
    mask = np.zeros(spec["shape"], dtype="<u4")
    first, last = spec["gap_rows"]
    mask[first : last + 1] = spec["gap_flag"]
    for y, x, flags in spec["pixels"]:
        mask[y, x] = flags
    mask.flags.writeable = False
    return DetectorDefaults({key: header[key] for key in sorted(header)}, mask)


def section_defaults(subsystem: str) -> Mapping[str, Any]:
    """Configuration defaults of the stream, monitor and filewriter subsystems."""
    return {
        "stream": STREAM_DEFAULTS,
        "monitor": MONITOR_DEFAULTS,
        "filewriter": FILEWRITER_DEFAULTS,
    }[subsystem]

"""Drop-in mode: one entry of the MAX IV streaming-receiver's YAML file as our settings.

Existing deployments keep their ``detectors.yaml``: the entry's keys map onto
:class:`receiver.config.ReceiverConfig` fields, as MAX IV's receiver reads
them (PULL sockets connect to the DCU, the forwarder binds ``data_port`` on all
interfaces, the HTTP API listens on ``api_port``). What this receiver cannot do
yet is refused with the reason, never silently dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"Detector": 9999, "Eiger": 9999, "DectrisStream2": 31001, "Lambda": 9010}
NOT_YET = {
    "Lambda": "multi-module placement (x, y, rotation of each module and full_shape), which "
    "a MAX IV entry leaves to the module headers; configure modules and full_shape in our "
    "format instead (docs/receiver.md, multi-module detectors)"
}
PROTOCOLS = {"Detector": "stins", "Eiger": "dectris-v1", "DectrisStream2": "dectris-v2"}
PIPELINES = {"PilatusPipeline": "cbf"}
"""MAX IV pipeline names and the decoding transform each stands for."""
DSET_PREFIX = "/entry/instrument/"
IGNORED_KEYS = {"rep_port": "the ZeroMQ REP status port is replaced by the HTTP API (api_port)"}
KNOWN_KEYS = {
    "class",
    "dcu_host_purple",
    "dcu_port_purple",
    "nworkers",
    "data_port",
    "api_port",
    "dset_name",
    "pipeline",
    "rotate",
    "compress",
    "tot",
}


class MaxivConfigError(ValueError):
    """The MAX IV entry cannot be used; the message names the key and what to do."""


def read_entry(path: Path, entry: str | None) -> dict[str, Any]:
    """Our settings (``ReceiverConfig`` fields) from entry ``entry`` of MAX IV YAML ``path``."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise MaxivConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MaxivConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not document:
        raise MaxivConfigError(f"{path} holds no detector entries")
    if entry is None or entry not in document:
        known = ", ".join(sorted(map(str, document)))
        given = "no entry was named" if entry is None else f"there is no entry {entry!r}"
        raise MaxivConfigError(f"{given} in {path}; pass --entry with one of: {known}")
    settings = document[entry]
    if not isinstance(settings, dict):
        raise MaxivConfigError(f"entry {entry!r} of {path} is not a mapping of settings")
    return translate(settings)


def translate(maxiv: dict[str, Any]) -> dict[str, Any]:
    """Map the keys of one MAX IV entry onto ours."""
    kind = maxiv.get("class", "Detector")
    if kind not in DEFAULT_PORTS:
        raise MaxivConfigError(
            f"class {kind!r} is unknown; MAX IV classes are {', '.join(DEFAULT_PORTS)}"
        )
    if kind in NOT_YET:
        raise MaxivConfigError(f"class {kind} needs {NOT_YET[kind]}")
    transforms = _transforms(maxiv)
    for key in sorted(set(maxiv) - KNOWN_KEYS):
        logger.warning(
            "MAX IV setting %r ignored: %s", key, IGNORED_KEYS.get(key, "not known here")
        )
    host = maxiv.get("dcu_host_purple")
    if not isinstance(host, str) or not host:
        raise MaxivConfigError(
            f"dcu_host_purple must name the DCU host (a single host for class {kind})"
        )
    settings: dict[str, Any] = {
        "connect": [f"tcp://{host}:{maxiv.get('dcu_port_purple', DEFAULT_PORTS[kind])}"],
        "protocol": PROTOCOLS[kind],
        "http_host": "0.0.0.0",
        "http_port": maxiv.get("api_port", 5000),
        "data_root": "/",
        "legacy_last_frame": True,
    }
    if "nworkers" in maxiv:
        settings["workers"] = maxiv["nworkers"]
    if "data_port" in maxiv:
        settings["forward"] = f"tcp://*:{maxiv['data_port']}"
    if "dset_name" in maxiv:
        settings["detector_name"] = _detector_name(maxiv["dset_name"])
    if transforms:
        settings["transforms"] = transforms
    return settings


def _transforms(maxiv: dict[str, Any]) -> list[dict[str, Any]]:
    """``pipeline``, ``tot``, ``compress`` and ``rotate`` as our transforms, in MAX IV's order.

    ``rotate: true`` names no angle, so it is refused with the way to give one.
    """
    pipeline = maxiv.get("pipeline")
    compression = "bslz4" if maxiv.get("compress", True) else "none"
    transforms: list[dict[str, Any]] = []
    if pipeline:
        if pipeline not in PIPELINES:
            raise MaxivConfigError(
                f"pipeline {pipeline!r} is unknown here; known: {', '.join(PIPELINES)}"
            )
        transforms.append({"kind": PIPELINES[pipeline], "compression": compression})
    if maxiv.get("tot"):
        transforms.append({"kind": "tot", "table": str(maxiv["tot"])})
    if maxiv.get("rotate"):
        raise MaxivConfigError(
            "rotate: true names no angle; use our configuration format with "
            '"transforms": [{"kind": "rotate", "k": 1}] (quarter turns counter-clockwise)'
        )
    return transforms


def _detector_name(dset_name: Any) -> str:
    """``/entry/instrument/<name>/data`` -> ``<name>``; the only layout this receiver writes."""
    text = str(dset_name)
    name = text.removeprefix(DSET_PREFIX).removesuffix("/data")
    if not text.startswith(DSET_PREFIX) or not text.endswith("/data") or "/" in name or not name:
        raise MaxivConfigError(
            f"dset_name {text!r} must be {DSET_PREFIX}<detector>/data, the NeXus layout written here"
        )
    return name

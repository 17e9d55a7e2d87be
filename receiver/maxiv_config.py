"""Drop-in mode: one entry of the MAX IV streaming-receiver's YAML file as our settings.

Existing deployments keep their ``detectors.yaml``: the entry's keys map onto
:class:`receiver.config.ReceiverConfig` fields, as MAX IV's receiver reads
them (PULL sockets connect to the DCU, or to every DCU of a list, the
forwarder binds ``data_port`` on all interfaces, the HTTP API listens on
``api_port``, ``/last_frame`` answers MAX IV's pickled form). A ``Lambda``
entry becomes one module stream per DCU address, placed by the modules'
headers. What this receiver cannot do is refused with the reason, never
silently dropped; what MAX IV's receiver itself ignores is ignored here too,
with a warning. Every key and what becomes of it: docs/receiver.md
(#max-iv-drop-in-mode).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"Detector": 9999, "Eiger": 9999, "DectrisStream2": 31001, "Lambda": 9010}
"""The DCU port of each class; a Lambda's module k is at 9010 + k."""
FIXED_PORTS = ("Eiger", "DectrisStream2", "Lambda")
"""Classes whose port MAX IV's receiver fixes, ignoring ``dcu_port_purple``."""
PROTOCOLS = {
    "Detector": "stins",
    "Eiger": "dectris-v1",
    "DectrisStream2": "dectris-v2",
    "Lambda": "stins",
}
NOT_READ = {
    "Jungfrau": "MAX IV's Jungfrau class subscribes to a CBOR stream of decoded frames, "
    "which this receiver does not read",
    "PsiEiger": "MAX IV's PsiEiger class joins the two half-module SLS streams of a PSI "
    "Eiger into one 514 x 514 frame, which this receiver does not do (its sls protocol "
    "reads one module: docs/receiver.md#protocols)",
}
PIPELINES = {"PilatusPipeline": "cbf"}
"""MAX IV pipeline names and the decoding transform each stands for."""
PIPELINE_KEYS = ("compress", "rotate", "mask", "tot")
"""Keys only MAX IV's PilatusPipeline reads; without it they do nothing there, nor here."""
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
    *PIPELINE_KEYS,
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
    if kind in NOT_READ:
        raise MaxivConfigError(f"class {kind} is not read here: {NOT_READ[kind]}")
    if kind not in DEFAULT_PORTS:
        raise MaxivConfigError(
            f"class {kind!r} is unknown; MAX IV classes read here are {', '.join(DEFAULT_PORTS)}"
        )
    for key in sorted(set(maxiv) - KNOWN_KEYS):
        logger.warning(
            "MAX IV setting %r ignored: %s", key, IGNORED_KEYS.get(key, "not known here")
        )
    hosts = _hosts(maxiv.get("dcu_host_purple"), kind)
    ports = _ports(maxiv, kind, len(hosts))
    endpoints = [f"tcp://{host}:{port}" for host, port in zip(hosts, ports, strict=True)]
    settings: dict[str, Any] = {
        "protocol": PROTOCOLS[kind],
        "http_host": "0.0.0.0",
        "http_port": maxiv.get("api_port", 5000),
        "data_root": "/",
        "legacy_last_frame": True,
    }
    if kind == "Lambda":
        # One module stream per DCU address; the modules' headers place them. MAX IV's
        # consumers of the forwarded stream expect the assembled full image.
        settings["forward_modules"] = "assembled"
        settings["modules"] = [
            {"name": f"m{index}", "connect": endpoint} for index, endpoint in enumerate(endpoints)
        ]
        for key in ("pipeline", *PIPELINE_KEYS):
            if key in maxiv:
                logger.warning(
                    "MAX IV setting %r ignored: MAX IV's Lambda class applies no pipeline", key
                )
    else:
        settings["connect"] = endpoints
        transforms = _transforms(maxiv)
        if transforms:
            settings["transforms"] = transforms
    if "nworkers" in maxiv:
        settings["workers"] = maxiv["nworkers"]
    elif isinstance(maxiv.get("dcu_host_purple"), list) and kind != "Lambda":
        settings["workers"] = len(hosts)  # MAX IV: one worker per DCU of the list
    if "data_port" in maxiv:
        settings["forward"] = f"tcp://*:{maxiv['data_port']}"
    if "dset_name" in maxiv:
        settings["detector_name"] = _detector_name(maxiv["dset_name"])
    return settings


def _hosts(value: Any, kind: str) -> list[str]:
    """``dcu_host_purple``: one DCU host, or a list (a Lambda's modules, or a balanced stream)."""
    if kind == "Lambda":
        if not isinstance(value, list) or not value:
            raise MaxivConfigError(
                "dcu_host_purple of class Lambda must list one DCU host per module, "
                "e.g. [dcu1, dcu1, dcu2, dcu2]"
            )
    elif isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(host, str) and host for host in value)
    ):
        raise MaxivConfigError(
            f"dcu_host_purple must name the DCU host, or list the DCU hosts, as strings; "
            f"got {value!r}"
        )
    return value


def _ports(maxiv: dict[str, Any], kind: str, count: int) -> list[int]:
    """The DCU port of each host: ``dcu_port_purple`` (one, or one per host) or the class's.

    MAX IV's Eiger, DectrisStream2 and Lambda classes ignore ``dcu_port_purple``;
    here it is used when given (a Lambda's module k then at port + k), which
    is warned about, since such an entry reads other ports here than there.
    """
    if "dcu_port_purple" not in maxiv:
        base = DEFAULT_PORTS[kind]
        return [base + index for index in range(count)] if kind == "Lambda" else [base] * count
    value = maxiv["dcu_port_purple"]
    if kind in FIXED_PORTS:
        logger.warning(
            "dcu_port_purple %r used: MAX IV's receiver ignores it for class %s and reads "
            "port %d%s",
            value,
            kind,
            DEFAULT_PORTS[kind],
            " + module index" if kind == "Lambda" else "",
        )
    if isinstance(value, list):
        if len(value) != count or not isinstance(maxiv.get("dcu_host_purple"), list):
            raise MaxivConfigError(
                f"dcu_port_purple lists {len(value)} ports for {count} DCU host(s) in "
                "dcu_host_purple; give one port, or a list of one port per host"
            )
        ports = value
    elif kind == "Lambda" and _is_port(value):
        ports = [value + index for index in range(count)]
    else:
        ports = [value] * count
    if not all(_is_port(port) for port in ports):
        raise MaxivConfigError(f"dcu_port_purple must be a TCP port (1 to 65535), got {value!r}")
    return ports


def _is_port(value: Any) -> bool:
    return type(value) is int and 0 < value < 65536


def _transforms(maxiv: dict[str, Any]) -> list[dict[str, Any]]:
    """``pipeline`` and the PilatusPipeline's options as our transforms, in MAX IV's order.

    MAX IV's PilatusPipeline decodes the CBF, converts ToT (``tot``), turns
    the frame a quarter turn clockwise (``rotate: true``, numpy.rot90(frame,
    -1)), sets the ``mask`` rectangle to -1, and compresses to bslz4 unless
    ``compress: false``. Without that pipeline those keys do nothing there,
    and here neither.
    """
    pipeline = maxiv.get("pipeline")
    if not pipeline:
        for key in PIPELINE_KEYS:
            if key in maxiv:
                logger.warning(
                    "MAX IV setting %r ignored: only MAX IV's PilatusPipeline reads it", key
                )
        return []
    if pipeline == "OrcaPipeline":
        logger.warning(
            "MAX IV pipeline OrcaPipeline not applied: it unpacks frames announced as type "
            "mono12p, which this receiver reports as malformed (send compression mono12p "
            "with a pixel type instead: docs/protocols.md#stins-from-max-ivs-streamers); "
            "other frames pass unchanged, as there"
        )
        return []
    if pipeline not in PIPELINES:
        raise MaxivConfigError(
            f"pipeline {pipeline!r} is unknown here; known: {', '.join(PIPELINES)}, OrcaPipeline"
        )
    compression = "bslz4" if maxiv.get("compress", True) else "none"
    transforms: list[dict[str, Any]] = [{"kind": PIPELINES[pipeline], "compression": compression}]
    if maxiv.get("tot"):
        transforms.append({"kind": "tot", "table": str(maxiv["tot"])})
    if maxiv.get("rotate"):
        transforms.append({"kind": "rotate", "k": -1})
    if maxiv.get("mask"):
        transforms.append(_mask(maxiv["mask"]))
    return transforms


def _mask(value: Any) -> dict[str, Any]:
    """``mask: [[row0, row1], [col0, col1]]`` (rows row0..row1-1 and so on) set to -1."""
    try:
        (row0, row1), (col0, col1) = value
        corners = [row0, row1, col0, col1]
    except (TypeError, ValueError):
        corners = []
    if (
        len(corners) != 4
        or not all(type(n) is int and n >= 0 for n in corners)
        or not (row0 < row1 and col0 < col1)
    ):
        raise MaxivConfigError(
            f"mask must be [[first row, end row], [first column, end column]] with "
            f"non-negative integers, each end beyond its start; got {value!r}"
        )
    return {
        "kind": "mask",
        "x": col0,
        "y": row0,
        "width": col1 - col0,
        "height": row1 - row0,
        "value": -1,
    }


def _detector_name(dset_name: Any) -> str:
    """``/entry/instrument/<name>/data`` -> ``<name>``; the only layout this receiver writes."""
    text = str(dset_name)
    name = text.removeprefix(DSET_PREFIX).removesuffix("/data")
    if not text.startswith(DSET_PREFIX) or not text.endswith("/data") or "/" in name or not name:
        raise MaxivConfigError(
            f"dset_name {text!r} must be {DSET_PREFIX}<detector>/data, the NeXus layout written here"
        )
    return name

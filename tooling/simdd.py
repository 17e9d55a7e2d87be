"""The SimDD description of ``DetectorDevice``, from which tango-simlib runs a simulated device.

Beamline tools test their scans in CI against that simulated device instead of
our whole stack. The description is read from a running real device's public
interface (what clients see), never written by hand, so it cannot drift:
``python -m tooling.simdd [OUTPUT.json]`` starts the real device and writes it
(by default the committed ``tango_db_config/simdd/DetectorDevice_SimDD.json``);
``tests/test_simdd.py`` checks the committed file against the device.
Running it with tango-simlib: :mod:`tooling.simlib`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tango

SIMDD_FILE = (
    Path(__file__).resolve().parents[1] / "tango_db_config" / "simdd" / "DetectorDevice_SimDD.json"
)
TANGO_BUILTINS = frozenset({"State", "Status", "Init"})
"""Attributes and commands every Tango device has; tango-simlib provides its own."""
SIMULATED_VALUES = {"ReceiverDescription": "simulated by tango-simlib: no detector, no receiver"}
"""Initial values that would otherwise name the ports of the run that wrote the file."""


def describe(device: tango.DeviceProxy) -> dict[str, Any]:
    """The SimDD document of ``device``: its attributes and commands, each value as read now.

    Read right after start, the values are the device's defaults, so the
    simulated device starts where a freshly started real one does.
    """
    return {
        "class_name": device.info().dev_class,
        "dynamicAttributes": [
            _attribute(config, device)
            for config in device.attribute_list_query_ex()
            if config.name not in TANGO_BUILTINS
        ],
        "commands": [
            _command(info)
            for info in device.command_list_query()
            if info.cmd_name not in TANGO_BUILTINS
        ],
    }


def _attribute(config: tango.AttributeInfoEx, device: tango.DeviceProxy) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": config.name,
        "label": config.label,
        "description": config.description,
        "unit": config.unit,
        "format": config.format,
        "data_type": type_name(config.data_type),
        "data_format": str(config.data_format),
        "data_shape": {"max_dim_x": config.max_dim_x, "max_dim_y": config.max_dim_y},
        "attributeInterlocks": {"writable": str(config.writable)},
        "attributeControlSystem": {
            "display_level": str(config.disp_level),
            "period": device.get_attribute_poll_period(config.name),
        },
        "dataSimulationParameters": {"quantity_simulation_type": "ConstantQuantity"},
    }
    if config.enum_labels:
        data["enum_labels"] = list(config.enum_labels)
    limits = {
        name: _number(text)
        for name in ("min_value", "max_value")
        if (text := getattr(config, name)) != tango.constants.AlrmValueNotSpec
    }
    if limits:
        data["attributeErrorChecking"] = limits
    # tango-simlib cannot serve IMAGE attributes (it lists them in AttributesNotAdded).
    if config.data_format == tango.AttrDataFormat.SCALAR:
        value = SIMULATED_VALUES.get(config.name, device.read_attribute(config.name).value)
        initial = value if isinstance(value, str | float) else int(value)  # enums, integers
        data["dataSimulationParameters"]["initial_value"] = initial
    return {"basicAttributeData": data}


def _command(info: tango.CommandInfo) -> dict[str, Any]:
    return {
        "basicCommandData": {
            "name": info.cmd_name,
            "input_parameters": {
                "dtype_in": type_name(info.in_type),
                "doc_in": info.in_type_desc,
                "dformat_in": _command_format(info.in_type),
            },
            "output_parameters": {
                "dtype_out": type_name(info.out_type),
                "doc_out": info.out_type_desc,
                "dformat_out": _command_format(info.out_type),
            },
        }
    }


def type_name(data_type: int) -> str:
    """SimDD names Tango types without ``Dev``: ``DevDouble`` is ``Double``."""
    return str(tango.CmdArgType.values[int(data_type)]).removeprefix("Dev")


def _command_format(data_type: int) -> str:
    return "SPECTRUM" if "Array" in type_name(data_type) else "SCALAR"


def _number(text: str) -> int | float:
    """A limit as Tango gives it (text), as a JSON number of the attribute's kind."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def write(document: dict[str, Any], path: Path) -> None:
    """Write ``document`` in the committed file's layout (regenerating it gives a readable diff)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


@contextmanager
def real_device() -> Iterator[tango.DeviceProxy]:
    """The real device in its own process: simulator backend, free ports, no receiver HTTP API."""
    from tango.test_context import DeviceTestContext

    from devices.detector_device import DetectorDevice
    from tooling.ports import free_port

    with tempfile.TemporaryDirectory() as data_root:
        properties = {
            "StreamAddress": f"tcp://127.0.0.1:{free_port()}",
            "TriggerInputAddress": f"tcp://127.0.0.1:{free_port()}",
            "DataRoot": data_root,
            "ReceiverHttpPort": -1,
        }
        with DeviceTestContext(DetectorDevice, properties=properties, process=True) as device:
            yield device


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tooling.simdd",
        description="Describe DetectorDevice for tango-simlib: start the real device, write SimDD.",
    )
    parser.add_argument("output", type=Path, nargs="?", default=SIMDD_FILE)
    args = parser.parse_args(argv)
    with real_device() as device:
        write(describe(device), args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""tango-simlib serving the SimDD description of ``DetectorDevice`` (see :mod:`tooling.simdd`).

tango-simlib 0.9.4 does not run this description as it stands;
:func:`simulator_class` makes it work without changing tango-simlib (each
adaptation is scoped to building the class):

- its ``SimDD.schema`` allows only Boolean, String, Double and two array types
  for ``data_type`` and wants ``max_value`` whenever ``min_value`` is given,
  although its parser and model handle every Tango type and either limit: the
  file is validated against that schema widened by exactly those two points;
- its SimDD parser turns every value into a string, which its enum attributes
  cannot take (``enum_labels`` becomes ``"['INTERNAL', ...]"``, ``data_format``
  and ``max_dim_x`` strings): those values are put back from the file;
- pytango 10 calls an attribute's read method without the ``attr`` argument
  tango-simlib's enum attributes expect, and calls a dynamically added command
  without the device unless the command is a bound method: both are adapted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import MethodType
from typing import Any
from unittest import mock

import tango
from jsonschema import validate

from tooling.simdd import SIMDD_FILE, type_name


def simulator_class(simdd: Path, device_name: str) -> type[tango.server.Device]:
    """tango-simlib's simulated device class, for one device named ``device_name``.

    The class tango-simlib's generated server would run, made to work; serve
    it with ``tango.test_context.DeviceTestContext`` (see :func:`simulated_device`).
    """
    from tango_simlib import tango_sim_generator as generator
    from tango_simlib.utilities import simdd_json_parser

    files = [str(simdd)]
    add_static_attribute = _read_without_attr(generator.add_static_attribute)
    with (
        mock.patch.object(simdd_json_parser, "validate", _validate_widened),
        mock.patch.object(generator, "add_static_attribute", add_static_attribute),
    ):
        models = generator.configure_device_models(files, test_device_name=device_name)
        _restore_types(models, json.loads(simdd.read_text()))
        server_classes = generator.get_tango_device_server(models, files)
        device_class: type[tango.server.Device] = server_classes[0]
    device_class.initialize_dynamic_commands = _add_bound_commands
    return device_class


@contextmanager
def simulated_device(
    simdd: Path = SIMDD_FILE, device_name: str = "sim/detector/simdd"
) -> Iterator[tango.DeviceProxy]:
    """The simulated device, served by its own process until the block ends: for clients' tests.

    tango-simlib's device writes its properties to the database named on the
    server's command line (``-file=``), which a test context's server does not
    see; it is given the test context's own file database instead.
    """
    from tango.test_context import DeviceTestContext
    from tango_simlib.utilities import helper_module

    context = DeviceTestContext(
        simulator_class(simdd, device_name), device_name=device_name, process=True
    )
    # start() forks the server process, which keeps the replacement.
    with mock.patch.object(helper_module, "get_database", lambda: tango.Database(context.db)):
        context.start()
    try:
        yield context.device
    finally:
        context.stop()


def _validate_widened(document: Any, schema: dict[str, Any]) -> None:
    """tango-simlib's schema check, allowing every Tango type and a single limit."""
    attribute = schema["properties"]["dynamicAttributes"]["items"]["properties"]
    basic = attribute["basicAttributeData"]["properties"]
    basic["data_type"]["enum"] = [type_name(t) for t in tango.CmdArgType.values]
    del basic["attributeErrorChecking"]["required"]
    validate(document, schema)


def _restore_types(models: dict[str, Any], document: dict[str, Any]) -> None:
    """Put back the values tango-simlib's parser made strings where its enum attributes need types."""
    for entry in document["dynamicAttributes"]:
        data = entry["basicAttributeData"]
        typed = {
            "data_format": getattr(tango.AttrDataFormat, data["data_format"]),
            **data["data_shape"],
            **({"enum_labels": data["enum_labels"]} if "enum_labels" in data else {}),
        }
        for model in models.values():
            model.sim_quantities[data["name"]].meta.update(typed)


def _read_without_attr(add_static_attribute: Callable[..., None]) -> Callable[..., None]:
    """tango-simlib's ``add_static_attribute`` with a read method as pytango 10 calls it."""

    def add(device_class: type, name: str, meta: dict[str, Any]) -> None:
        add_static_attribute(device_class, name, meta)

        def read(device: Any) -> Any:
            value, _updated = device.model.quantity_state[name]
            return value

        setattr(device_class, f"read_{name}", read)

    return add


def _add_bound_commands(device: Any) -> None:
    """tango-simlib's ``initialize_dynamic_commands``, each command bound to ``device``."""
    from tango_simlib.utilities.helper_module import generate_cmd_handler

    for name, action in device.model.sim_actions.items():
        device.add_command(MethodType(generate_cmd_handler(device.model, name, action), device))

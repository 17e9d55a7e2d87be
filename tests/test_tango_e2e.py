"""End to end with a real Tango database: DetectorDevice det01 driven as MAX IV clients drive it.

Everything is a real process on 127.0.0.1: pytango's DatabaseDS (sqlite), the
configuration loaded with dsconfig, ``DetectorDevice det01`` started from the
database, a ``stream-receiver`` for the remote case, and Debian's Starter.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tango

from receiver.config import load
from sim.trigger_input import fire
from tests.helpers import wait_until
from tests.tango_bench import Bench, acquire, assert_file_holds
from tooling.ports import free_port
from tooling.tango_db import DEFAULT_CONFIG, database, load_config, server_names

pytestmark = pytest.mark.e2e

EIGER_EXAMPLE = DEFAULT_CONFIG.with_name("eiger01.json")


@pytest.fixture(scope="module", params=["embedded", "remote"])
def det01(request: pytest.FixtureRequest, bench: Bench) -> Iterator[tango.DeviceProxy]:
    """det01 started from the database, with an embedded or a remote receiver."""
    started = []
    if request.param == "remote":
        http = free_port()
        receiver = bench.processes.start(
            "stream-receiver",
            "--connect", bench.stream,
            "--http", f"127.0.0.1:{http}",
            "--data-root", str(bench.data_root),
            "--detector-name", "det01",
        )  # fmt: skip
        bench.processes.wait_serving(receiver, f"http://127.0.0.1:{http}")
        started.append(receiver)
        bench.load(Receiver=f"http://127.0.0.1:{http}")
    else:
        bench.load(Receiver="embedded")
    started.append(bench.start_server())
    device = bench.proxy()
    wait_until(lambda: device.state() == tango.DevState.ON, 10, "det01 to be ON")
    yield device
    for proc in reversed(started):
        bench.processes.stop(proc)


def test_internal(det01: tango.DeviceProxy, bench: Bench, request: pytest.FixtureRequest) -> None:
    name = f"internal_{request.node.callspec.id}.h5"
    acquire(det01, str(bench.data_root / name), "INTERNAL", n_triggers=3, per_trigger=4)
    assert_file_holds(bench.data_root / name, 12)
    assert det01.nFramesAcquired == 12


def test_software(det01: tango.DeviceProxy, bench: Bench, request: pytest.FixtureRequest) -> None:
    name = f"software_{request.node.callspec.id}.h5"
    acquire(det01, name, "SOFTWARE", n_triggers=5, trigger=det01.SoftwareTrigger)
    assert_file_holds(bench.data_root / name, 5)


def test_external_multi(
    det01: tango.DeviceProxy, bench: Bench, request: pytest.FixtureRequest
) -> None:
    name = f"external_multi_{request.node.callspec.id}.h5"
    acquire(
        det01,
        name,
        "EXTERNAL_MULTI",
        n_triggers=4,
        per_trigger=2,
        trigger=lambda: fire(bench.trigger_input),
    )
    assert_file_holds(bench.data_root / name, 8)


def test_refused_path_is_fault_and_the_next_arm_recovers(
    det01: tango.DeviceProxy, bench: Bench, request: pytest.FixtureRequest
) -> None:
    det01.Stop()
    det01.TriggerMode = "INTERNAL"
    det01.nTriggers = 1
    det01.nFramesPerTrigger = 2
    det01.DestinationFilename = "/etc/outside.h5"
    with pytest.raises(tango.DevFailed, match="the receiver refused the series"):
        det01.Arm()
    assert det01.state() == tango.DevState.FAULT
    assert "outside the data root" in det01.status()
    name = f"recovered_{request.node.callspec.id}.h5"
    acquire(det01, name, "INTERNAL", n_triggers=1, per_trigger=2)
    assert_file_holds(bench.data_root / name, 2)


def test_the_eiger_example_loads_and_its_receiver_configuration_is_valid(bench: Bench) -> None:
    config = load_config(EIGER_EXAMPLE, bench.tango_host)
    assert server_names(config) == ["DetectorDevice/eiger01"]
    properties = database(bench.tango_host).get_device_property(
        "sim/eiger/eiger01", ["Backend", "Receiver"]
    )
    assert list(properties["Backend"]) == ["eiger"]
    receiver = load(
        EIGER_EXAMPLE.with_name("eiger01-receiver.toml"), {"data_root": str(bench.data_root)}
    )
    assert receiver.protocol == "dectris-v1"
    assert f"http://127.0.0.1:{receiver.http_port}" == properties["Receiver"][0]


def test_the_pilatus_example_loads_and_its_receiver_configuration_is_valid(bench: Bench) -> None:
    config = load_config(DEFAULT_CONFIG.with_name("pilatus01.json"), bench.tango_host)
    assert server_names(config) == ["DetectorDevice/pilatus01"]
    receiver = load(
        DEFAULT_CONFIG.with_name("pilatus-receiver.toml"), {"data_root": str(bench.data_root)}
    )
    assert [t.kind for t in receiver.transforms] == ["cbf", "rotate", "mask"]

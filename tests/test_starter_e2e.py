"""Debian's Starter starts and stops DetectorDevice det01 from the Tango database."""

from __future__ import annotations

import pytest
import tango

from tests.helpers import wait_until
from tests.tango_bench import DEVICE, Bench, acquire, assert_file_holds
from tooling.tango_db import STARTER, database, register_starter, starter_command

pytestmark = pytest.mark.e2e


def test_starter_starts_and_stops_det01_from_the_database(bench: Bench) -> None:
    if not STARTER.exists():
        pytest.fail(f"{STARTER} is missing: scripts/setup-env installs Debian's tango-starter")
    bench.load(Receiver="embedded")
    starter_device = register_starter(bench.tango_host, ["DetectorDevice/det01"])
    starter_proc = bench.processes.start(str(STARTER), starter_command()[1], env=bench.env)
    starter = tango.DeviceProxy(f"tango://{bench.tango_host}/{starter_device}")
    wait_until(lambda: _answers(starter), 30, "Starter to export its device")
    starter.DevStart("DetectorDevice/det01")
    wait_until(
        lambda: "DetectorDevice/det01" in starter.DevGetRunningServers(True), 30, "det01 running"
    )
    device = bench.proxy()
    wait_until(lambda: _answers(device) and device.state() == tango.DevState.ON, 30, "det01 ON")
    acquire(device, "from_starter.h5", "INTERNAL", n_triggers=1, per_trigger=3)
    assert_file_holds(bench.data_root / "from_starter.h5", 3)
    starter.DevStop("DetectorDevice/det01")
    wait_until(
        lambda: "DetectorDevice/det01" in starter.DevGetStopServers(True), 30, "det01 stopped"
    )
    assert not database(bench.tango_host).get_device_info(DEVICE).exported
    bench.processes.stop(starter_proc)


def _answers(device: tango.DeviceProxy) -> bool:
    try:
        device.ping()
    except tango.DevFailed:
        return False
    return True

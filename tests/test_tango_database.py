"""daq-tango's database: a Starter registered and not running never fails a database command.

pytango's own sqlite DatabaseDS notifies the Starter inside DbExportDevice
and DbPutServerInfo and fails them when the Starter is not running
(``AttributeError: UpdateServersInfo``): the server that was starting exited.
"""

from __future__ import annotations

import socket

import pytest
import tango

from tests.tango_bench import Bench
from tooling.tango_database import starter_devices
from tooling.tango_db import database, register_starter


def test_the_starter_of_a_host_is_named_by_its_short_name() -> None:
    assert starter_devices(["vm.example.org", " ", "", "VM2", "vm"]) == [
        "tango/admin/VM2",
        "tango/admin/vm",
    ]


@pytest.mark.e2e
def test_server_info_is_written_while_the_starter_is_not_running(bench: Bench) -> None:
    host = socket.gethostname().split(".")[0]
    starter = register_starter(bench.tango_host, ["DetectorDevice/det01"])
    db = database(bench.tango_host)
    assert not db.get_device_info(starter).exported
    info = tango.DbServerInfo()
    info.name, info.host, info.mode, info.level = "DetectorDevice/det01", host, 1, 0

    db.put_server_info(info)  # raised DevFailed (PyDs_PythonError) with pytango's own database

    stored = db.get_server_info("DetectorDevice/det01")
    assert (stored.host, stored.mode, stored.level) == (host, 1, 0)


@pytest.mark.e2e
def test_a_server_exports_while_the_starter_is_not_running(bench: Bench) -> None:
    """What ``DetectorDevice det01`` does at start: DbExportDevice, once Starter is registered."""
    register_starter(bench.tango_host, ["DetectorDevice/det01"])
    bench.load(Receiver="embedded")
    server = bench.start_server()  # waits until the device answers; fails if the server exits

    assert server.poll() is None
    assert database(bench.tango_host).get_device_info("sim/detector/det01").exported
    bench.processes.stop(server)
    assert server.returncode == 0

"""Debian's Starter starts and stops DetectorDevice from the Tango database: once, and cleanly.

The server gets an instance name of its own (not det01): Starter knows a
server by name and instance only, so a ``DetectorDevice det01`` of another
database on this machine (another test run) would look running to it. Its
log directory (``LogFileHome``) is the test's.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tango

from tests.helpers import wait_until
from tests.tango_bench import DEVICE, SHAPE, Bench, acquire, assert_file_holds
from tooling.tango_db import (
    DEFAULT_CONFIG,
    STARTER,
    answers,
    database,
    load_config,
    register_starter,
    start_server,
    starter_command,
)

pytestmark = pytest.mark.e2e

INSTANCE = f"starter{os.getpid()}"
SERVER = f"DetectorDevice/{INSTANCE}"
STARTER_CHECK_S = 5.0
"""Starter checks a server it started 4 s after the start; a DevStart meanwhile can be lost."""
_last_start = [0.0]


def dev_start(starter: tango.DeviceProxy) -> None:
    """DevStart, once Starter's check of the previous start is over."""
    time.sleep(max(0.0, _last_start[0] + STARTER_CHECK_S - time.monotonic()))
    _last_start[0] = time.monotonic()
    starter.DevStart(SERVER)


@pytest.fixture(scope="module")
def starter(bench: Bench, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tango.DeviceProxy]:
    """This host's Starter, running, controlling ``DetectorDevice <INSTANCE>`` (not started)."""
    if not STARTER.exists():
        pytest.fail(f"{STARTER} is missing: scripts/setup-env installs Debian's tango-starter")
    root = tmp_path_factory.mktemp("starter")
    config = root / "config.json"
    config.write_text(json.dumps(_renamed(json.loads(DEFAULT_CONFIG.read_text()), INSTANCE)))
    load_config(config, bench.tango_host, _properties(bench))
    device = register_starter(bench.tango_host, [SERVER])
    database(bench.tango_host).put_device_property(device, {"LogFileHome": [str(root)]})
    proc = bench.processes.start(str(STARTER), starter_command()[1], env=bench.env)
    proxy = tango.DeviceProxy(f"tango://{bench.tango_host}/{device}")
    wait_until(lambda: answers(proxy), 30, "Starter to export its device")
    yield proxy
    for pid in server_pids():
        os.kill(pid, signal.SIGKILL)  # only if a test failed half-way
    bench.processes.stop(proc)


def test_devstart_starts_one_process_and_devstop_ends_it(
    starter: tango.DeviceProxy, bench: Bench
) -> None:
    dev_start(starter)
    for _ in range(3):  # more clicks while it starts, as a user or a retrying script does
        time.sleep(0.6)
        try:
            starter.DevStart(SERVER)
        except tango.DevFailed as exc:
            assert "already running" in exc.args[0].desc
        _last_start[0] = time.monotonic()
    device = _started(bench)
    time.sleep(3)  # a second server, if one started, would be listed by now
    assert len(server_pids()) == 1, server_pids()
    wait_until(lambda: _seen(starter) == ("ON", 1), 10, "Starter to see it running, once")
    acquire(device, "from_starter.h5", "INTERNAL", n_triggers=1, per_trigger=3)
    assert_file_holds(bench.data_root / "from_starter.h5", 3)

    starter.DevStop(SERVER)

    wait_until(lambda: not server_pids(), 15, "DevStop to end the server")
    wait_until(lambda: _seen(starter)[0] == "FAULT", 30, "Starter to see it stopped")
    assert not database(bench.tango_host).get_device_info(DEVICE).exported


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_server_started_by_starter_stops_on_a_signal(
    starter: tango.DeviceProxy, bench: Bench, signum: signal.Signals
) -> None:
    wait_until(lambda: _seen(starter)[0] == "FAULT", 30, "Starter to see no server running")
    time.sleep(max(0.0, _last_start[0] + STARTER_CHECK_S - time.monotonic()))
    # daq-tango start: DevStart again if Starter dropped it (it does, at times, right after a
    # server it started has ended)
    start_server(bench.tango_host, SERVER, 60)
    _last_start[0] = time.monotonic()
    (pid,) = server_pids()

    os.kill(pid, signum)

    wait_until(lambda: not server_pids(), 15, f"{signum.name} to end the server")
    # Unexported: the server shut down as Tango does (devices deleted), it was not killed.
    assert not database(bench.tango_host).get_device_info(DEVICE).exported


def test_a_second_server_of_an_instance_exits_at_once_however_started(
    starter: tango.DeviceProxy, bench: Bench
) -> None:
    """Tango refuses it only once the first is exported; two starting together both ran."""
    wait_until(lambda: not server_pids(), 30, "no server running")
    both = [bench.processes.start("DetectorDevice", INSTANCE, env=bench.env) for _ in range(2)]

    refused = wait_until(
        lambda: next((p for p in both if p.poll() is not None), None), 30, "one to exit"
    )
    (serving,) = [p for p in both if p is not refused]
    assert refused.returncode == 1
    assert "is already running" in bench.processes.output(refused)
    _started(bench)
    assert server_pids() == [serving.pid]
    bench.processes.stop(serving)
    assert serving.returncode == 0


def server_pids() -> list[int]:
    """The processes running ``DetectorDevice <INSTANCE>`` (Starter starts them via the venv)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(b"/DetectorDevice") for arg in args) and INSTANCE.encode() in args:
            pids.append(int(entry.name))
    return pids


def _seen(starter: tango.DeviceProxy) -> tuple[str, int]:
    """The server's state as Starter sees it (FAULT: not running) and its count of processes."""
    for line in starter.read_attribute("Servers").value or ():
        name, state, _controlled, _level, instances = line.split("\t")
        if name == SERVER:
            return state, int(instances)
    return "FAULT", 0  # Starter lists a server once it has run on this host


def _started(bench: Bench) -> tango.DeviceProxy:
    device = bench.proxy()
    wait_until(lambda: answers(device) and device.state() == tango.DevState.ON, 30, "ON")
    return device


def _renamed(config: dict[str, Any], instance: str) -> dict[str, Any]:
    (server,) = config["servers"].values()
    (entry,) = server.values()
    config["servers"]["DetectorDevice"] = {instance: entry}
    return config


def _properties(bench: Bench) -> dict[str, list[str]]:
    values = {
        "StreamAddress": bench.stream,
        "TriggerInputAddress": bench.trigger_input,
        "FrameShape": [str(n) for n in SHAPE],
        "DataRoot": str(bench.data_root),
        "ReceiverHttpPort": "-1",
        "ArmTimeout": "5",
        "CloseTimeout": "5",
    }
    return {f"{DEVICE}/{k}": v if isinstance(v, list) else [v] for k, v in values.items()}

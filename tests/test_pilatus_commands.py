"""The simulator, the streamer's proxy and the backend accept one command set: protocols.camserver's.

Each of them once kept its own list, and the lists disagreed (``setthreshold``
was only the proxy's). Every command, abbreviated, must mean the same command
to the simulator and through the proxy, and every command the backend sends
for a series in any trigger mode must be one of the set.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devices.backend import BackendState, create_backend
from devices.backends.pilatus import MODE_COMMANDS
from devices.settings import AcquisitionSettings
from protocols.camserver import ACQUISITIONS, COMMANDS, resolve_command, split_command
from sim.pilatus import CamserverSimulator
from streamers.pilatus import PilatusStreamer
from tests.helpers import wait_until
from tests.pilatus_support import CamserverClient, StreamCollector

PROBES = {
    "exptime": ("EXPT", "15 OK Exposure time set to:"),
    "expperiod": ("expp", "15 OK Exposure period set to:"),
    "nimages": ("ni", "15 OK N images set to:"),
    "nexpframe": ("nexp", "15 OK Exposures per frame set to:"),
    "delay": ("del", "15 OK Delay time set to:"),
    "setenergy": ("SetE", "15 OK Energy setting:"),
    "setthreshold": ("setthr", "15 OK  Settings: mid gain; threshold: 6000 eV;"),
    "imgpath": ("imgp", "10 OK /"),
    "exposure": ("expo", "exposure needs an image file name"),
    "exttrigger": ("extt", "exttrigger needs an image file name"),
    "extmtrigger": ("extm", "extmtrigger needs an image file name"),
    "extenable": ("exte", "extenable needs an image file name"),
    "k": ("K", "13 ERR kill"),
    "camcmd": ("camc k", "13 ERR kill"),
}
"""Each command by an abbreviation, and what in its reply shows that it was that command."""


@pytest.fixture
def clients(
    camserver: CamserverSimulator, streamer: PilatusStreamer
) -> Iterator[dict[str, CamserverClient]]:
    """A client of the simulator itself, and one through the proxy."""
    connections = {
        "simulator": CamserverClient(camserver.address),
        "proxy": CamserverClient(streamer.address),
    }
    yield connections
    for connection in connections.values():
        connection.close()


def test_the_probes_abbreviate_every_command_of_the_set() -> None:
    assert set(PROBES) == set(COMMANDS)
    for command, (line, _) in PROBES.items():
        assert resolve_command(split_command(line)[0]) == command


@pytest.mark.parametrize("command", COMMANDS)
def test_the_simulator_and_the_proxy_take_every_command_for_the_same_one(
    clients: dict[str, CamserverClient], command: str
) -> None:
    line, shows = PROBES[command]
    replies = {who: client.ask(line) for who, client in clients.items()}
    assert all(shows in reply for reply in replies.values()), replies


def test_the_backend_sends_only_commands_of_the_set_in_every_trigger_mode(
    camserver: CamserverSimulator, streamer: PilatusStreamer, stream: StreamCollector
) -> None:
    assert sorted(MODE_COMMANDS.values()) == sorted(ACQUISITIONS)
    host, port = streamer.address
    backend = create_backend(
        "pilatus",
        {"DetectorAddress": f"{host}:{port}", "StreamAddress": streamer.stream_endpoint},
    )
    try:
        for mode in MODE_COMMANDS:
            backend.arm(
                AcquisitionSettings(exposure_time=0.005, frame_time=0.01, trigger_mode=mode)
            )
            backend.stop()
            wait_until(lambda: backend.state is BackendState.IDLE, 10, f"{mode.name} to end")
    finally:
        backend.close()
    sent = {resolve_command(split_command(line)[0]) for line in camserver.received}
    assert sent <= set(COMMANDS)
    assert set(ACQUISITIONS) <= sent

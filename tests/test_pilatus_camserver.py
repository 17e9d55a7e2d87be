"""The simulated camserver: its replies to the character, its CBF files, its triggers and limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import fabio
import numpy as np
import pytest
from inotify_simple import INotify, flags

from sim.frames import synthetic_frame
from sim.pilatus import CamserverSimulator, RamDisk
from sim.trigger_input import fire
from tests.helpers import wait_until
from tests.pilatus_support import SHAPE, CamserverClient, configure


@pytest.fixture
def client(camserver: CamserverSimulator) -> Iterator[CamserverClient]:
    connection = CamserverClient(camserver.address)
    yield connection
    connection.close()


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("exptime 0.5", b"15 OK Exposure time set to: 0.5000000 sec.\x18"),
        ("exptime", b"15 OK Exposure time set to: 1.0000000 sec.\x18"),
        ("expperiod 0.25", b"15 OK Exposure period set to: 0.2500000 sec\x18"),
        ("expperiod", b"15 OK Exposure period set to: 1.0500000 sec\x18"),
        ("nimages 10", b"15 OK N images set to: 10\x18"),
        ("nimages", b"15 OK N images set to: 1\x18"),
        ("setenergy 8050", b"15 OK Energy setting: 8050 eV\x18"),
        ("setenergy", b"15 OK Energy setting: 12000 eV\x18"),
        (
            "setthreshold",
            b"15 OK  Settings: mid gain; threshold: 6000 eV; vcmp: 0.654 V\n Trim file:\n  (nil)\x18",
        ),
        ("setthreshold 7000", b"15 OK /tmp/setthreshold.cmd\x18"),
        ("foo", b"1 ERR *** Unrecognized command: foo\x18"),
    ],
)
def test_settings_answer_to_the_character(
    client: CamserverClient, command: str, reply: bytes
) -> None:
    client.send(command)
    assert client.raw_reply() == reply


def test_a_set_value_reads_back_and_imgpath_answers_with_code_10(
    client: CamserverClient, imgpath: Path
) -> None:
    client.ask("exptime 0.01")
    assert client.ask("exptime") == "15 OK Exposure time set to: 0.0100000 sec."
    assert client.ask(f"imgpath {imgpath}") == f"10 OK {imgpath}/"
    assert client.ask("imgpath") == f"10 OK {imgpath}/"


def test_a_threshold_set_with_a_gain_reads_back_and_goes_into_the_files(
    client: CamserverClient, imgpath: Path
) -> None:
    assert client.ask("setthr highG 7000") == "15 OK /tmp/setthreshold.cmd"
    assert client.ask("setthr").startswith("15 OK  Settings: high gain; threshold: 7000 eV;")
    configure(client, 0.01, 0.02, 1)
    client.ask("exposure thr.cbf")
    client.reply()
    header = fabio.open(str(imgpath / "thr.cbf")).header["_array_data.header_contents"]
    assert "# Threshold_setting: 7000 eV" in header
    client.ask("setenergy 10000")
    assert client.ask("setthr").startswith("15 OK  Settings: high gain; threshold: 5000 eV;")


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("exptime -1", "15 ERR ERROR: exptime must be > 0 s, not -1"),
        ("exptime abc", "15 ERR ERROR: exptime takes a number, not 'abc'"),
        ("nimages 0", "15 ERR ERROR: nimages must be 1 to 999999, not 0"),
        ("setenergy 100", "15 ERR ERROR: energy 100 eV outside the calibrated range 2000-40000 eV"),
        ("setthreshold low 5000", "15 ERR ERROR: unknown gain setting: low 5000"),
        ("setthreshold x", "15 ERR ERROR: setthreshold takes [gain] eV, not 'x'"),
        ("setthreshold -1", "15 ERR ERROR: threshold must be >= 0 eV, not -1"),
        ("imgpath /no/such/dir", "10 ERR ERROR: /no/such/dir: no such directory"),
        ("exposure", "15 ERR ERROR: exposure needs an image file name, e.g. exposure scan.cbf"),
        ("exposure a.tif", "15 ERR ERROR: this camserver writes CBF only: name the file a.tif.cbf"),
        ("camcmd x", "1 ERR *** Unrecognized command: camcmd x"),
    ],
)
def test_refused_commands_answer_err_with_the_reason(
    client: CamserverClient, command: str, reason: str
) -> None:
    assert client.ask(command) == reason


def test_exposure_writes_one_cbf_per_frame_that_fabio_reads_as_the_synthetic_frame(
    client: CamserverClient, camserver: CamserverSimulator, imgpath: Path
) -> None:
    configure(client, 0.01, 0.02, 3)
    client.ask("setenergy 9000")
    started = client.ask("exposure scan.cbf")
    assert started.startswith("15 OK  Starting 0.0100000 second background: ")
    assert client.reply() == f"7 OK {imgpath / 'scan_00002.cbf'}"
    assert sorted(p.name for p in imgpath.iterdir()) == [f"scan_0000{i}.cbf" for i in range(3)]
    for index in range(3):
        image = fabio.open(str(imgpath / f"scan_0000{index}.cbf"))
        assert image.data.dtype == np.int32
        np.testing.assert_array_equal(image.data, synthetic_frame(index, SHAPE, "int32"))
        header = image.header["_array_data.header_contents"]
        assert "# Detector: PILATUS3 2M" in header
        assert "# Pixel_size 172e-6 m x 172e-6 m" in header
        assert "# Exposure_time 0.0100000 s" in header
        assert "# Exposure_period 0.0200000 s" in header
        assert "# Threshold_setting: 4500 eV" in header
        assert image.header["conversions"] == "x-CBF_BYTE_OFFSET"
        assert image.header["X-Binary-Element-Type"] == "signed 32-bit integer"
    assert camserver.frames_written == 3


def test_frames_are_written_at_the_exposure_period(client: CamserverClient) -> None:
    configure(client, 0.01, 0.05, 5)
    begun = time.monotonic()
    client.ask("exposure paced.cbf")
    assert client.reply().startswith("7 OK")
    assert time.monotonic() - begun >= 4 * 0.05 + 0.01


def test_a_single_image_keeps_the_given_name(client: CamserverClient, imgpath: Path) -> None:
    configure(client, 0.01, 0.02, 1)
    client.ask("exposure one.cbf")
    assert client.reply() == f"7 OK {imgpath / 'one.cbf'}"
    assert [p.name for p in imgpath.iterdir()] == ["one.cbf"]


def test_files_appear_whole_by_a_rename_from_a_hidden_temporary_name(
    client: CamserverClient, imgpath: Path
) -> None:
    with INotify() as inotify:
        inotify.add_watch(imgpath, flags.CLOSE_WRITE | flags.MOVED_TO)
        configure(client, 0.01, 0.02, 2)
        client.ask("exposure renamed.cbf")
        client.reply()
        events = [(e.name, e.mask) for e in inotify.read(timeout=1000)]
    final = [(name, mask) for name, mask in events if not name.startswith(".")]
    assert final == [
        ("renamed_00000.cbf", flags.MOVED_TO),
        ("renamed_00001.cbf", flags.MOVED_TO),
    ]
    assert {name for name, _ in events if name.startswith(".")} == {
        ".renamed_00000.cbf.tmp",
        ".renamed_00001.cbf.tmp",
    }


def test_in_place_mode_writes_under_the_final_name(imgpath: Path) -> None:
    sim = CamserverSimulator(imgpath, shape=SHAPE, ramdisk=RamDisk(write_mode="in-place"))
    client = CamserverClient(sim.address)
    try:
        with INotify() as inotify:
            inotify.add_watch(imgpath, flags.CREATE | flags.CLOSE_WRITE | flags.MOVED_TO)
            configure(client, 0.01, 0.02, 1)
            client.ask("exposure inplace.cbf")
            client.reply()
            events = [(e.name, e.mask) for e in inotify.read(timeout=1000)]
        assert events == [("inplace.cbf", flags.CREATE), ("inplace.cbf", flags.CLOSE_WRITE)]
    finally:
        client.close()
        sim.close()


def test_k_kills_the_series_with_13_then_7_and_leaves_no_temporary_file(
    client: CamserverClient, imgpath: Path
) -> None:
    configure(client, 0.01, 0.05, 1000)
    client.ask("exposure long.cbf")
    wait_until(lambda: len(list(imgpath.glob("long_*.cbf"))) >= 2, 5, "two frames")
    assert client.ask("k") == "13 ERR kill"
    last = client.reply()
    assert last.startswith(f"7 OK {imgpath}/long_")
    files = sorted(imgpath.iterdir())
    assert files[-1] == Path(last.removeprefix("7 OK "))
    assert 2 <= len(files) < 1000
    assert not [p for p in files if p.name.startswith(".")]
    assert client.ask("nimages 2") == "15 OK N images set to: 2"


def test_camcmd_k_kills_too(client: CamserverClient) -> None:
    configure(client, 0.01, 0.05, 1000)
    client.ask("exposure long.cbf")
    assert client.ask("camcmd k") == "13 ERR kill"
    assert client.reply().startswith("7 OK")


def test_settings_are_refused_while_an_exposure_runs(client: CamserverClient) -> None:
    configure(client, 0.01, 0.05, 1000)
    client.ask("exposure busy.cbf")
    assert client.ask("nimages 5").startswith("15 ERR ERROR: nimages cannot change while")
    assert client.ask("setthreshold 5000").startswith("15 ERR ERROR: setthreshold cannot change")
    assert client.ask("exposure again.cbf").startswith("15 ERR ERROR: an exposure is already")
    assert client.ask("nimages") == "15 OK N images set to: 1000"
    client.ask("k")
    client.reply()


def test_an_exposure_period_shorter_than_exposure_plus_readout_is_refused(
    client: CamserverClient,
) -> None:
    configure(client, 0.01, 0.0105, 2)
    assert client.ask("exposure fast.cbf") == (
        "15 ERR ERROR: exposure period 0.0105000 s is shorter than the exposure time "
        "0.0100000 s plus the 0.95 ms readout"
    )


def test_exttrigger_waits_for_one_trigger_then_takes_all_frames(
    client: CamserverClient, camserver: CamserverSimulator, imgpath: Path
) -> None:
    assert camserver.trigger_endpoint is not None
    fire(camserver.trigger_endpoint)
    wait_until(lambda: camserver.triggers_ignored == 1, 5, "the early pulse to be ignored")
    configure(client, 0.01, 0.02, 3)
    assert client.ask("exttrigger ext.cbf").startswith("15 OK  Starting")
    time.sleep(0.1)
    assert list(imgpath.iterdir()) == []
    fire(camserver.trigger_endpoint)
    assert client.reply() == f"7 OK {imgpath / 'ext_00002.cbf'}"
    assert len(list(imgpath.iterdir())) == 3


def test_extmtrigger_takes_one_frame_per_trigger(
    client: CamserverClient, camserver: CamserverSimulator, imgpath: Path
) -> None:
    assert camserver.trigger_endpoint is not None
    configure(client, 0.01, 0.02, 3)
    client.ask("extmtrigger multi.cbf")
    fire(camserver.trigger_endpoint)
    wait_until(lambda: len(list(imgpath.glob("multi_*.cbf"))) == 1, 5, "one frame")
    fire(camserver.trigger_endpoint, count=2)
    assert client.reply() == f"7 OK {imgpath / 'multi_00002.cbf'}"


def test_extenable_takes_one_frame_per_gate_exposed_for_its_width(
    client: CamserverClient, camserver: CamserverSimulator, imgpath: Path
) -> None:
    assert camserver.trigger_endpoint is not None
    configure(client, 0.01, 0.02, 2)
    client.ask("extenable gate.cbf")
    fire(camserver.trigger_endpoint, count=2, width=0.03)
    assert client.reply() == f"7 OK {imgpath / 'gate_00001.cbf'}"
    header = fabio.open(str(imgpath / "gate_00000.cbf")).header["_array_data.header_contents"]
    assert "# Exposure_time 0.0300000 s" in header


def test_a_full_ram_disk_refuses_the_start_or_fails_the_series_with_err(imgpath: Path) -> None:
    frame_bytes = 12 * 10 + 8192
    sim = CamserverSimulator(imgpath, shape=SHAPE, ramdisk=RamDisk(limit_bytes=3 * frame_bytes))
    client = CamserverClient(sim.address)
    try:
        configure(client, 0.001, 0.002, 10)
        client.ask("exposure fill.cbf")
        failed = client.reply()
        assert failed.startswith(f"7 ERR ERROR: RAM disk full: {imgpath} holds ")
        assert "is the streamer deleting the images it sent?" in failed
        written = len(list(imgpath.iterdir()))
        assert 0 < written < 10
        (imgpath / "ballast").write_bytes(bytes(3 * frame_bytes))
        assert client.ask("exposure more.cbf").startswith("15 ERR ERROR: RAM disk full")
    finally:
        client.close()
        sim.close()

"""The Pilatus streamer: RAM-disk files to STINS, and camserver's protocol proxied."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from protocols import cbf
from sim.frames import synthetic_frame
from sim.pilatus import CamserverSimulator, RamDisk
from streamers import pilatus as pilatus_cli
from streamers.pilatus import PilatusStreamer
from streamers.pilatus_stream import ImageStreamer, SeriesDone, SeriesStart
from tests.helpers import wait_until
from tests.pilatus_support import (
    SHAPE,
    CamserverClient,
    StreamCollector,
    assert_frames,
    configure,
    decode_cbf,
    start_streamer,
)


@pytest.fixture
def client(streamer: PilatusStreamer) -> Iterator[CamserverClient]:
    connection = CamserverClient(streamer.address)
    yield connection
    connection.close()


def series_ended(stream: StreamCollector, count: int = 1) -> None:
    wait_until(lambda: stream.series_ends() >= count, 10, f"{count} series end(s)")


def test_the_proxy_passes_camservers_replies_through_unchanged(
    camserver: CamserverSimulator, client: CamserverClient
) -> None:
    direct = CamserverClient(camserver.address)
    try:
        for command in ("exptime 0.25", "expperiod", "nimages 7", "setenergy", "bogus"):
            client.send(command)
            direct.send(command)
            assert client.raw_reply() == direct.raw_reply()
    finally:
        direct.close()


def test_a_series_is_header_images_in_order_and_series_end_and_the_files_are_deleted(
    client: CamserverClient, stream: StreamCollector, imgpath: Path
) -> None:
    configure(client, 0.01, 0.02, 5)
    assert client.ask("streamer_filename /data/scan_001.h5") == (
        "15 OK Streamer filename set to: /data/scan_001.h5"
    )
    assert client.ask("exposure scan.cbf").startswith("15 OK  Starting")
    assert client.reply() == f"7 OK {imgpath / 'scan_00004.cbf'}"
    series_ended(stream)
    htypes = [m.htype for m in stream.messages]
    assert htypes == ["header", *["image"] * 5, "series_end"]
    assert [m.fields["msg_number"] for m in stream.messages] == list(range(7))
    header = stream.messages[0]
    assert header.fields["filename"] == "/data/scan_001.h5"
    meta = header.parts[0]
    assert b'"count_time":0.01' in meta
    assert b'"frame_time":0.02' in meta
    assert b'"nimages":5' in meta
    assert b'"trigger_mode":"exposure"' in meta
    images = stream.of("image")
    assert_frames(images, 5)
    assert all(m.fields["exposure_time"] == 0.01 for m in images)
    assert list(imgpath.iterdir()) == []


def test_the_filename_serves_one_series_only(
    client: CamserverClient, stream: StreamCollector
) -> None:
    configure(client, 0.01, 0.02, 1)
    client.ask("streamer_filename first.h5")
    client.ask("exposure a.cbf")
    client.reply()
    assert client.ask("streamer_filename") == "15 OK Streamer filename set to: "
    client.ask("exposure b.cbf")
    client.reply()
    series_ended(stream, 2)
    assert [m.fields["filename"] for m in stream.of("header")] == ["first.h5", ""]
    assert [m.fields["frame"] for m in stream.of("image")] == [0, 0]


def test_frame_numbers_count_from_the_series_first_file(
    client: CamserverClient, stream: StreamCollector
) -> None:
    configure(client, 0.01, 0.02, 3)
    client.ask("exposure run_0100.cbf")
    client.reply()
    series_ended(stream)
    assert_frames(stream.of("image"), 3)


def test_slowly_written_files_are_never_sent_half(imgpath: Path) -> None:
    """camserver in place, each file written in 4 chunks 30 ms apart: only whole files go out."""
    sim = CamserverSimulator(
        imgpath, shape=SHAPE, ramdisk=RamDisk(write_mode="in-place", chunk_pause_s=0.03)
    )
    app = start_streamer(imgpath, sim)
    stream = StreamCollector(app.stream_endpoint)
    client = CamserverClient(app.address)
    try:
        configure(client, 0.001, 0.002, 4)
        client.ask("exposure slow.cbf")
        client.reply()
        series_ended(stream)
        assert_frames(stream.of("image"), 4)
    finally:
        client.close()
        stream.close()
        app.close()
        sim.close()


def cbf_file(frame: int, name: str) -> bytes:
    pixels = synthetic_frame(frame, SHAPE, "int32")
    return cbf.encode(pixels, name, cbf.CbfHeader(exposure_time=0.5), datetime.now())


def test_a_file_closed_before_it_is_complete_waits_for_its_next_close(imgpath: Path) -> None:
    images = ImageStreamer(imgpath, "tcp://127.0.0.1:*")
    stream = StreamCollector(images.endpoint)
    try:
        images.start_series(SeriesStart("hand.cbf", 2, "hand.h5"))
        first = cbf_file(0, "hand_00000.cbf")
        half = len(first) // 2
        (imgpath / "hand_00000.cbf").write_bytes(first[:half])
        (imgpath / "hand_00001.cbf").write_bytes(cbf_file(1, "hand_00001.cbf"))
        wait_until(lambda: len(stream.of("image")) == 1, 5, "the complete file")
        assert stream.of("image")[0].fields["frame"] == 1
        assert (imgpath / "hand_00000.cbf").exists()
        with (imgpath / "hand_00000.cbf").open("ab") as out:
            out.write(first[half:])
        wait_until(lambda: len(stream.of("image")) == 2, 5, "the completed file")
        late = stream.of("image")[1]
        assert late.fields["frame"] == 0
        assert late.fields["exposure_time"] == 0.5
        np.testing.assert_array_equal(decode_cbf(late), synthetic_frame(0, SHAPE, "int32"))
        images.end_series(SeriesDone(str(imgpath / "hand_00001.cbf"), ok=True))
        wait_until(lambda: stream.series_ends() == 1, 5, "the series end")
        assert list(imgpath.iterdir()) == []
    finally:
        stream.close()
        images.close()


def test_files_written_before_the_series_was_announced_are_sent_once_it_is(
    imgpath: Path,
) -> None:
    images = ImageStreamer(imgpath, "tcp://127.0.0.1:*")
    stream = StreamCollector(images.endpoint)
    try:
        (imgpath / "early_00000.cbf").write_bytes(cbf_file(0, "early_00000.cbf"))
        (imgpath / "stranger.cbf").write_bytes(cbf_file(0, "stranger.cbf"))
        images.start_series(SeriesStart("early.cbf", 2, ""))
        (imgpath / "early_00001.cbf").write_bytes(cbf_file(1, "early_00001.cbf"))
        images.end_series(SeriesDone(str(imgpath / "early_00001.cbf"), ok=True))
        wait_until(lambda: stream.series_ends() == 1, 5, "the series end")
        assert [m.htype for m in stream.messages] == ["header", "image", "image", "series_end"]
        assert_frames(stream.of("image"), 2)
        assert [p.name for p in imgpath.iterdir()] == ["stranger.cbf"]
    finally:
        stream.close()
        images.close()


@pytest.mark.allow_error_log
def test_a_file_that_is_no_pilatus_cbf_is_reported_and_skipped(
    imgpath: Path, caplog: pytest.LogCaptureFixture
) -> None:
    images = ImageStreamer(imgpath, "tcp://127.0.0.1:*")
    stream = StreamCollector(images.endpoint)
    try:
        images.start_series(SeriesStart("bad.cbf", 2, ""))
        (imgpath / "bad_00000.cbf").write_bytes(b"not a cbf" * 10_000)
        (imgpath / "bad_00001.cbf").write_bytes(cbf_file(1, "bad_00001.cbf"))
        images.end_series(SeriesDone(str(imgpath / "bad_00001.cbf"), ok=True))
        wait_until(lambda: stream.series_ends() == 1, 5, "the series end")
        assert [m.fields["frame"] for m in stream.of("image")] == [1]
        assert "bad_00000.cbf cannot be sent: no binary section" in caplog.text
        assert "never appeared" not in caplog.text
    finally:
        stream.close()
        images.close()


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (
            "imgpath /tmp",
            "10 ERR streamer: the streamer watches {imgpath}; camserver must "
            "write its images there, not to /tmp",
        ),
        (
            "exposure a.tif",
            "15 ERR streamer: the streamer sends CBF files only: name the "
            "images like scan.cbf, not a.tif",
        ),
        (
            "exposure sub/a.cbf",
            "15 ERR streamer: the images must go directly into {imgpath}: give a bare file name",
        ),
        ("exposure /tmp/a.cbf", "15 ERR streamer: the images must go to {imgpath}, not /tmp"),
        ("exposure", "15 ERR streamer: exposure needs an image file name, e.g. exposure scan.cbf"),
        ("streamer_bogus", "1 ERR *** Unrecognized command: streamer_bogus"),
    ],
)
def test_the_proxy_refuses_what_it_could_not_stream(
    client: CamserverClient, camserver: CamserverSimulator, imgpath: Path, command: str, reply: str
) -> None:
    assert client.ask(command) == reply.format(imgpath=imgpath)
    assert command not in camserver.received


def test_the_proxy_refuses_a_series_whose_files_are_already_there(
    client: CamserverClient, imgpath: Path
) -> None:
    configure(client, 0.01, 0.02, 2)
    (imgpath / "old_00001.cbf").write_bytes(b"left over")
    assert client.ask("exposure old.cbf") == (
        f"15 ERR streamer: 1 file(s) named like old.cbf (e.g. old_00001.cbf) are already in "
        f"{imgpath}: remove them or choose another name"
    )


def test_the_proxy_sets_camservers_imgpath_to_the_watched_directory(
    camserver: CamserverSimulator, streamer: PilatusStreamer, imgpath: Path
) -> None:
    assert camserver.received[0] == f"imgpath {imgpath}"
    assert camserver.imgpath == imgpath


def test_one_client_at_a_time(client: CamserverClient, streamer: PilatusStreamer) -> None:
    client.ask("nimages")
    second = CamserverClient(streamer.address)
    try:
        refusal = second.reply()
    finally:
        second.close()
    assert refusal.startswith("15 ERR streamer: 127.0.0.1:")
    assert refusal.endswith("is connected to this proxy; one client at a time")
    assert client.ask("nimages").startswith("15 OK")


def test_a_killed_series_ends_on_the_stream_with_the_frames_taken(
    client: CamserverClient, stream: StreamCollector, imgpath: Path
) -> None:
    configure(client, 0.01, 0.05, 1000)
    client.ask("exposure long.cbf")
    wait_until(lambda: len(stream.of("image")) >= 2, 5, "two frames")
    assert client.ask("k") == "13 ERR kill"
    assert client.reply().startswith("7 OK")
    series_ended(stream)
    taken = len(stream.of("image"))
    assert_frames(stream.of("image"), taken)
    assert 2 <= taken < 1000
    assert list(imgpath.iterdir()) == []


def test_streamer_status_says_what_it_streams(
    client: CamserverClient, streamer: PilatusStreamer, stream: StreamCollector
) -> None:
    endpoint = streamer.stream_endpoint
    assert client.ask("streamer_status") == (
        f"15 OK Streamer: idle; 0 series, 0 frames sent on {endpoint}"
    )
    configure(client, 0.01, 0.05, 1000)
    client.ask("exposure status.cbf")
    # The series counts once its header is on the stream, a moment after camserver's reply.
    wait_until(
        lambda: client.ask("streamer_status").startswith(
            "15 OK Streamer: running status.cbf; 1 series"
        ),
        5,
        "the status to count the series",
    )
    assert client.ask("exposure second.cbf") == (
        "15 ERR streamer: series status.cbf is still running: wait for its 7 reply or send k"
    )
    client.ask("k")
    client.reply()


def test_losing_camserver_mid_series_ends_the_series_with_err(
    client: CamserverClient, camserver: CamserverSimulator, stream: StreamCollector
) -> None:
    configure(client, 0.01, 0.05, 1000)
    client.ask("exposure doomed.cbf")
    wait_until(lambda: len(stream.of("image")) >= 1, 5, "a frame")
    camserver.close()
    reply = client.reply()
    assert reply.startswith("7 ERR streamer: lost the connection to camserver at 127.0.0.1:")
    series_ended(stream)
    refused = client.ask("nimages 3")
    assert refused.startswith("15 ERR streamer: cannot reach camserver at 127.0.0.1:")
    assert refused.endswith("is camserver running?")


def test_the_streamer_command_exits_with_a_reason_when_camserver_is_unreachable(
    imgpath: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    caplog.set_level(logging.INFO)
    code = pilatus_cli.main(
        [
            "--imgpath",
            str(imgpath),
            "--camserver",
            f"127.0.0.1:{port}",
            "--listen",
            "127.0.0.1:0",
            "--stream",
            "tcp://127.0.0.1:*",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"pilatus-streamer: cannot reach camserver at 127.0.0.1:{port}")
    assert len(err.strip().splitlines()) == 1


def test_the_streamer_command_refuses_bad_arguments(
    imgpath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        pilatus_cli.main(["--imgpath", str(imgpath / "missing"), "--camserver", "nohost"])
    assert exited.value.code == 2
    assert "is not host:port" in capsys.readouterr().err

"""daq-bench runs end to end on a small series and reports no lost frames."""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest
import zmq

from bench.measure import Measurement, make_case, parse_size
from bench.report import summarize, table
from bench.sink import sink
from tests.helpers import VENV_BIN


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20kB", 20_000), ("2MB", 2_000_000), ("1.5GB", 1_500_000_000), ("4096", 4096)],
)
def test_sizes_are_decimal_units(text, expected):
    assert parse_size(text) == expected


def test_cases_are_near_square_frames_of_the_asked_size():
    case = make_case("200kB", target_bytes=10**9, min_frames=10, max_frames=1000)
    assert abs(case.frame_bytes - 200_000) < 1000
    assert case.frames == 1000
    assert make_case("20MB", 10**8, 10, 1000).frames == 10


def test_the_sink_write_baseline_writes_every_blob_in_order(tmp_path):
    context = zmq.Context.instance()
    push = context.socket(zmq.PUSH)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    blobs = [os.urandom(1000 + i) for i in range(600)]
    path = tmp_path / "out.bin"
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(sink(f"tcp://127.0.0.1:{port}", len(blobs) + 2, 1, path))
    )
    thread.start()
    push.send(b'{"htype": "header"}')
    for blob in blobs:
        push.send_multipart([b'{"htype": "image"}', blob])
    push.send(b'{"htype": "series_end"}')
    thread.join(30)
    push.close()
    assert path.read_bytes() == b"".join(blobs)
    assert result["messages"] == len(blobs) + 2 and result["seconds"] > 0


def test_the_forwarding_receiver_is_shown_beside_the_bare_one():
    def run(forward: str, seconds: float, cpu: float) -> Measurement:
        return Measurement(
            "receiver", "20kB", 20_000, 1000, seconds, 1, 1, False, forward=forward,
            cpu_seconds=cpu,
        )  # fmt: skip

    summaries = summarize(
        [run("none", 0.05, 0.02), run("none", 0.04, 0.02), run("bound", 0.05, 0.03),
         run("consumer", 0.1, 0.05)]
    )  # fmt: skip
    lines = {line.split("20kB")[0].strip(): line for line in table(summaries).splitlines()[2:]}

    assert set(lines) == {
        "receiver no-write 1w 1io", "receiver no-write 1w 1io fwd",
        "receiver no-write 1w 1io fwd+cons",
    }  # fmt: skip
    bare = next(s for s in summaries if s.forward == "none")
    assert bare.frames_per_s == pytest.approx(22_500)  # the median of 20 000 and 25 000
    assert lines["receiver no-write 1w 1io fwd"].split()[-4] == "0.89"  # 20 000 / 22 500
    assert lines["receiver no-write 1w 1io fwd+cons"].split()[-1] == "50.0"  # CPU µs per frame


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_quick_bench_reports_zero_lost_frames(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            str(VENV_BIN / "daq-bench"),
            "--quick",
            "--sizes",
            "20kB",
            "200kB",
            "--workers",
            "1",
            "2",
            "--bytes-per-run",
            "0.01",
            "--data-dir",
            str(tmp_path),
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "bench.png"),
        ],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )

    assert result.returncode == 0, result.stderr + result.stdout
    assert "lost frames: 0" in result.stdout
    assert "receiver write 2w 1io" in result.stdout
    report = json.loads(out.read_text())
    receivers = [row for row in report["summary"] if row["kind"] == "receiver"]
    assert len(receivers) == 2 * 2 * 2 * 3  # sizes, workers, modes, forwarder none/bound/consumer
    assert {row["forward"] for row in receivers} == {"none", "bound", "consumer"}
    assert all(row["cpu_us_per_frame"] > 0 for row in receivers)
    assert all(row["ratio_to_bare"] > 0 for row in receivers if row["forward"] != "none")
    assert all(row["forwarded"] > 0 for row in receivers if row["forward"] == "consumer")
    assert all(row["forwarded"] == 0 for row in receivers if row["forward"] == "bound")
    assert "receiver write 1w 1io fwd+cons" in result.stdout
    assert all(
        row["lost"] == 0 and row["frames_per_s"] > 0 and row["ratio"] > 0 for row in receivers
    )
    assert all(row["ratio_to_sink_write"] > 0 for row in receivers if row["write"])
    assert {row["kind"] for row in report["summary"]} == {"sink", "write", "sink-write", "receiver"}
    assert "sink + write" in result.stdout
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("daq-bench-")] == []


@pytest.mark.e2e
def test_pilatus_case_streams_real_cbf_frames_through_the_cbf_transform(tmp_path):
    result = subprocess.run(
        [
            str(VENV_BIN / "daq-bench"),
            "--pilatus",
            "30",
            "--workers",
            "2",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Pilatus3 2M CBF 1679x1475 int32, 2 workers" in result.stdout
    assert "lost 0" in result.stdout


@pytest.mark.e2e
def test_lambda_case_runs_the_windmill_into_the_receiver_and_the_whole_chain(tmp_path):
    result = subprocess.run(
        [
            str(VENV_BIN / "daq-bench"),
            "--lambda",
            "40",
            "--workers",
            "1",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    assert "receiver, forwarding assembled, 1 worker(s) per module" in lines[0]
    assert "receiver, forwarding stacked, 1 worker(s) per module" in lines[1]
    assert "whole chain, forwarding stacked, 1 worker(s) per module" in lines[2]
    assert all("lost 0;" in line for line in lines), result.stdout
    assert all("forwarded 40 of 40 at" in line for line in lines), result.stdout


@pytest.mark.e2e
def test_camera_case_runs_the_whole_chain_from_the_fake_sdk_to_the_file(tmp_path):
    result = subprocess.run(
        [
            str(VENV_BIN / "daq-bench"),
            "--camera",
            "zyla",
            "--camera-frames",
            "10",
            "--workers",
            "1",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    line = result.stdout.strip()
    assert line.startswith("Andor Zyla 5.5 2560x2160 Mono12Packed at 100 frames/s, 1 worker(s)")
    assert "written" in line and "sink + write" in line

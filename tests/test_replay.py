"""daq-replay: captures are played as recorded, with the file name and series id a user sets."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cbor2
import orjson
import pytest
import zmq

from protocols import eiger_stream1, eiger_stream2, stins
from protocols.model import Image, SeriesEnd, SeriesStart
from sim.replay import CaptureError, detect_protocol, prepare, read_capture
from tests.captures import STREAM1, STREAM2, V1_FRAMES, V2_FRAMES, V2_SERIES, capture

pytestmark = pytest.mark.timeout(30)

SCRIPT = Path(sys.executable).parent / "daq-replay"


def test_captures_are_recognised() -> None:
    assert detect_protocol(capture(STREAM1)) == "dectris-v1"
    assert detect_protocol(capture(STREAM2)) == "dectris-v2"
    assert detect_protocol([stins.encode_header(0, "a.h5")]) == "stins"
    with pytest.raises(CaptureError, match="not Dectris stream v1, v2 or STINS"):
        detect_protocol([[b"hello"]])


def test_the_v1_file_name_goes_into_the_header_appendix_and_frames_stay_as_recorded() -> None:
    recorded = capture(STREAM1)
    messages = prepare(recorded, "dectris-v1", "scan/run.h5")

    assert json.loads(messages[0][-1]) == {"filename": "scan/run.h5", "rotate": 0}
    assert messages[0][:-1] == recorded[0][:-1]
    assert messages[1:] == recorded[1:]
    assert eiger_stream1.parse(messages[0]).filename == "scan/run.h5"


def test_a_new_v1_series_id_goes_into_every_message_and_an_end_can_close_it() -> None:
    messages = prepare(capture(STREAM1), "dectris-v1", None, series_id=15, add_end=True)

    parsed = [eiger_stream1.parse(m) for m in messages]
    assert {m.series for m in parsed} == {15}
    assert isinstance(parsed[-1], SeriesEnd)
    assert len(parsed) == 1 + V1_FRAMES + 1
    for message in messages[1:-1]:  # the hash covers part 1, which is unchanged
        assert orjson.loads(message[0])["hash"] == hashlib.md5(message[1]).hexdigest()


def test_the_v2_file_name_goes_into_user_data_keeping_the_rest() -> None:
    recorded = capture(STREAM2)
    messages = prepare(recorded, "dectris-v2", "v2/run.h5", add_end=True)

    start = eiger_stream2.parse(messages[0])
    assert isinstance(start, SeriesStart)
    assert start.filename == "v2/run.h5"
    user = json.loads(start.meta["user_data"])
    assert user["file_prefix"] == "lyso1/dir/file" and user["filename"] == "v2/run.h5"
    assert cbor2.loads(messages[0][0])["pixel_mask"] == cbor2.loads(recorded[0][0])["pixel_mask"]
    assert messages[1:] == recorded[1:]  # it has its end: none added
    assert len(messages) == V2_FRAMES + 2


def test_a_new_v2_series_id_goes_into_every_message() -> None:
    messages = prepare(capture(STREAM2), "dectris-v2", None, series_id=40)

    parsed = [eiger_stream2.parse(m) for m in messages]
    assert {m.series for m in parsed} == {(40, V2_SERIES[1])}
    assert [m.frame for m in parsed if isinstance(m, Image)] == list(range(V2_FRAMES))


def test_a_stins_capture_gets_its_file_name_and_end() -> None:
    recorded = [stins.encode_header(0, "old.h5"), stins.encode_image(1, 0, b"\0\0", (1,), "uint16")]
    messages = prepare([list(m) for m in recorded], "stins", "new.h5", add_end=True)

    assert stins.parse(messages[0]).filename == "new.h5"
    assert isinstance(stins.parse(messages[-1]), SeriesEnd)
    assert stins.parse(messages[-1]).seq == 2


def test_plain_and_gzipped_captures_are_read(tmp_path: Path) -> None:
    items = [[b"a", b"b"], [b"c"]]
    plain, packed = tmp_path / "x.cbors", tmp_path / "x.cbors.gz"
    plain.write_bytes(b"".join(cbor2.dumps(i) for i in items))
    packed.write_bytes(gzip.compress(plain.read_bytes()))

    assert read_capture(plain) == items
    assert read_capture(packed) == items


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "holds no messages"), (cbor2.dumps({"a": 1}), "not an array of byte strings")],
)
def test_unusable_captures_are_refused(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.cbors"
    path.write_bytes(content)
    with pytest.raises(CaptureError, match=reason):
        read_capture(path)


def test_console_script_plays_a_capture_to_a_receiver(context: zmq.Context) -> None:
    capture(STREAM2)
    pull = context.socket(zmq.PULL)
    pull.rcvtimeo = 10_000
    pull.bind("tcp://127.0.0.1:*")
    endpoint = pull.getsockopt_string(zmq.LAST_ENDPOINT)
    command = [SCRIPT, str(STREAM2), "--connect", endpoint, "--filename", "cli.h5"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        messages = [pull.recv_multipart() for _ in range(V2_FRAMES + 2)]
        out, err = p.communicate(timeout=20)
    pull.close()

    assert p.returncode == 0, err
    assert f"sent {V2_FRAMES + 2} messages" in out
    assert eiger_stream2.parse(messages[0]).filename == "cli.h5"
    assert isinstance(eiger_stream2.parse(messages[-1]), SeriesEnd)


def test_console_script_refuses_a_missing_capture_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [SCRIPT, str(tmp_path / "none.cbors.gz")],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2
    assert "cannot read capture" in result.stderr.strip().splitlines()[-1]


def test_console_script_help_names_every_option() -> None:
    result = subprocess.run(
        [SCRIPT, "--help"], capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == 0
    for option in ("--bind", "--connect", "--filename", "--series-id", "--add-end", "--rate"):
        assert option in result.stdout

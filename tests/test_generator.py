"""The data generator as a receiver sees it: real ZeroMQ PULL sockets on 127.0.0.1.

Every message is parsed with the shared STINS codec, and every pixel is
compared with :func:`sim.frames.synthetic_frame`, so a test fails when a
frame arrives under the wrong number, shape, type or content.
"""

from __future__ import annotations

import socket as pysocket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from pydantic import ValidationError

from protocols import bslz4, stins
from protocols.model import Image, Message, SeriesEnd, SeriesStart
from receiver.readers import PROTOCOLS
from sim.frames import encoded_frame, synthetic_frame
from sim.generator import (
    DeliveryTimeout,
    EndpointError,
    GeneratorSettings,
    Pacer,
    StreamGenerator,
)
from sim.generator_cli import build_parser, main, series_filename

pytestmark = pytest.mark.timeout(10)

FREE_PORT = "tcp://127.0.0.1:*"
RECV_TIMEOUT_MS = 2000
SCRIPT = Path(sys.executable).parent / "daq-generator"


def settings(**overrides: Any) -> GeneratorSettings:
    """Small, fast series bound to a free port unless a test says otherwise."""
    values: dict[str, Any] = {
        "endpoint": FREE_PORT,
        "frames": 4,
        "shape": [6, 10],
        "timeout_s": 2.0,
    }
    return GeneratorSettings(**(values | overrides))


def pull(context: zmq.Context, endpoint: str, bind: bool = False, **options: int) -> zmq.Socket:
    """A PULL socket; ``options`` are ZeroMQ socket options by name, set before connecting."""
    socket = context.socket(zmq.PULL)
    socket.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        socket.setsockopt(getattr(zmq, name.upper()), value)
    if bind:
        socket.bind(endpoint)
    else:
        socket.connect(endpoint)
    return socket


def bound_pull(context: zmq.Context) -> zmq.Socket:
    return pull(context, FREE_PORT, bind=True)


def endpoint_of(socket: zmq.Socket) -> str:
    """The port the system picked for ``*``."""
    return socket.getsockopt_string(zmq.LAST_ENDPOINT)


def receive_parts(socket: zmq.Socket, count: int) -> list[list[bytes]]:
    """Exactly ``count`` messages: fails on a missing one and on one too many."""
    messages = []
    for _ in range(count):
        assert socket.poll(RECV_TIMEOUT_MS), f"only {len(messages)} of {count} messages arrived"
        messages.append(socket.recv_multipart())
    assert not socket.poll(50), "more messages arrived than expected"
    return messages


def receive(socket: zmq.Socket, count: int) -> list[Message]:
    return [stins.parse(parts) for parts in receive_parts(socket, count)]


def pixels(image: Image) -> np.ndarray:
    if image.compression == "bslz4":
        return bslz4.decompress(image.data, image.shape, image.dtype)
    return np.frombuffer(image.data, dtype=image.dtype).reshape(image.shape)


def images(messages: list[Message]) -> list[Image]:
    return [m for m in messages if isinstance(m, Image)]


def send_one_series(
    context: zmq.Context, config: GeneratorSettings, filename: str | None = None
) -> list[Message]:
    with StreamGenerator(config) as generator, pull(context, generator.endpoint) as socket:
        generator.send_series(filename)
        return receive(socket, config.frames + 2)


# --- frames ------------------------------------------------------------------


def test_synthetic_frame_is_reproducible_and_differs_from_the_next_everywhere() -> None:
    first = synthetic_frame(7, (32, 48), "uint16")
    assert first.shape == (32, 48)
    assert first.dtype == np.uint16
    np.testing.assert_array_equal(first, synthetic_frame(7, [32, 48], np.uint16))
    assert np.all(synthetic_frame(8, (32, 48), "uint16") != first)


@pytest.mark.parametrize(("dtype", "period"), [("uint8", 256), ("uint16", 65536), ("int32", 2**32)])
def test_synthetic_frame_wraps_integer_pixels_instead_of_overflowing(
    dtype: str, period: int
) -> None:
    np.testing.assert_array_equal(
        synthetic_frame(period + 3, (8, 8), dtype), synthetic_frame(3, (8, 8), dtype)
    )


def test_synthetic_frames_compress_like_low_count_detector_data() -> None:
    frame = synthetic_frame(123_456, (256, 256), "uint32")
    assert len(bslz4.compress(frame)) < frame.nbytes / 3


def test_encoded_frame_is_the_raw_or_bslz4_form_of_the_synthetic_frame() -> None:
    expected = synthetic_frame(5, (16, 16), "float32")
    raw = np.frombuffer(encoded_frame(5, (16, 16), "float32", "none"), dtype=np.float32)
    np.testing.assert_array_equal(raw.reshape(16, 16), expected)
    chunk = encoded_frame(5, (16, 16), "float32", "bslz4")
    np.testing.assert_array_equal(bslz4.decompress(chunk, (16, 16), np.float32), expected)


# --- settings and pacing -----------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"frames": -1},
        {"shape": [0, 5]},
        {"shape": []},
        {"dtype": "int8"},
        {"compression": "zstd"},
        {"rate": -1.0},
        {"timeout_s": 0},
        {"endpoint": "localhost:9999"},
        {"meta": [1, 2]},
        {"frame_count": 3},
    ],
)
def test_settings_reject_values_a_receiver_could_not_use(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GeneratorSettings(**bad)


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps or a test works."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def test_pacer_sends_on_absolute_deadlines_and_catches_up_after_a_late_frame() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    work = [0.03, 0.25, 0.01, 0.01, 0.01]
    sent = []
    for index, seconds in enumerate(work):
        clock.now += seconds
        pacer.wait(index)
        sent.append(clock.now)
    assert sent == pytest.approx([100.03, 100.28, 100.29, 100.3, 100.4])


def test_pacer_never_sleeps_at_rate_zero() -> None:
    clock = FakeClock()
    pacer = Pacer(0.0, clock=clock, sleep=clock.sleep)
    for index in range(100):
        pacer.wait(index)
    assert clock.now == 100.0


# --- the stream, through a real PULL socket ----------------------------------


def test_series_arrives_numbered_in_order_with_header_and_end(context: zmq.Context) -> None:
    meta = {"sensor": {"material": "CdTe", "thickness_m": 0.00075}, "save_raw": False}
    messages = send_one_series(context, settings(filename="/data/scan_001.h5", meta=meta))
    assert [m.seq for m in messages] == list(range(6))
    header, *frames, end = messages
    assert isinstance(header, SeriesStart)
    assert header.filename == "/data/scan_001.h5"
    assert header.meta == meta
    assert isinstance(end, SeriesEnd)
    assert [image.frame for image in images(frames)] == [0, 1, 2, 3]


def test_header_without_meta_is_a_single_part(context: zmq.Context) -> None:
    config = settings(frames=0)
    with StreamGenerator(config) as generator, pull(context, generator.endpoint) as socket:
        generator.send_series()
        header, end = receive_parts(socket, 2)
    assert len(header) == 1
    assert stins.parse(header) == stins.parse(stins.encode_header(0, ""))
    assert isinstance(stins.parse(end), SeriesEnd)


@pytest.mark.parametrize("compression", ["none", "bslz4"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "int32", "float32"])
def test_every_pixel_is_the_synthetic_frame_of_its_number(
    context: zmq.Context, dtype: str, compression: str
) -> None:
    config = settings(frames=3, shape=[12, 20], dtype=dtype, compression=compression)
    received = images(send_one_series(context, config))
    assert len(received) == 3
    for image in received:
        assert image.shape == (12, 20)
        assert image.dtype == np.dtype(dtype)
        assert image.compression == compression
        np.testing.assert_array_equal(pixels(image), synthetic_frame(image.frame, (12, 20), dtype))


@pytest.mark.parametrize("compression", ["none", "bslz4"])
def test_distinct_frames_repeat_the_pixels_of_frame_k_mod_k(
    context: zmq.Context, compression: str
) -> None:
    config = settings(frames=7, distinct_frames=3, compression=compression)
    received = images(send_one_series(context, config))
    assert [image.frame for image in received] == list(range(7))
    for image in received:
        expected = synthetic_frame(image.frame % 3, (6, 10), "uint16")
        np.testing.assert_array_equal(pixels(image), expected)


def test_out_of_order_sends_every_frame_once_in_a_reproducible_shuffle(
    context: zmq.Context,
) -> None:
    config = settings(frames=20, out_of_order=True, seed=3)
    with StreamGenerator(config) as generator, pull(context, generator.endpoint) as socket:
        generator.send_series()
        generator.send_series()
        messages = receive(socket, 2 * 22)
    assert [m.seq for m in messages] == list(range(44))
    first = [image.frame for image in images(messages[:22])]
    second = [image.frame for image in images(messages[22:])]
    assert sorted(first) == list(range(20))
    assert first != sorted(first)
    assert second == first
    for image in images(messages):
        np.testing.assert_array_equal(
            pixels(image), synthetic_frame(image.frame, (6, 10), "uint16")
        )


def test_two_series_in_a_row_are_one_stream(context: zmq.Context) -> None:
    with (
        StreamGenerator(settings(frames=2)) as generator,
        pull(context, generator.endpoint) as socket,
    ):
        first = generator.send_series("/data/a.h5")
        generator.send_series("/data/b.h5")
        messages = receive(socket, 8)
    assert [m.seq for m in messages] == list(range(8))
    assert [type(m) for m in messages] == [SeriesStart, Image, Image, SeriesEnd] * 2
    assert [m.filename for m in messages if isinstance(m, SeriesStart)] == [
        "/data/a.h5",
        "/data/b.h5",
    ]
    assert [image.frame for image in images(messages)] == [0, 1, 0, 1]
    assert first.frames == 2
    assert first.nbytes == 2 * 6 * 10 * 2


def test_connect_mode_reaches_a_receiver_that_binds(context: zmq.Context) -> None:
    with bound_pull(context) as socket:
        config = settings(endpoint=endpoint_of(socket), connect=True, frames=2)
        with StreamGenerator(config) as generator:
            generator.send_series()
        assert [m.seq for m in receive(socket, 4)] == [0, 1, 2, 3]


def test_no_receiver_fails_with_a_timeout_naming_the_endpoint() -> None:
    with StreamGenerator(settings(timeout_s=0.2)) as generator:
        with pytest.raises(DeliveryTimeout, match="no receiver took data") as failure:
            generator.send_series()
        assert generator.endpoint in str(failure.value)


def test_no_listener_in_connect_mode_fails_with_a_timeout(context: zmq.Context) -> None:
    # A port bound but not listening stays ours: connections to it are refused, and no other
    # process can start listening on it meanwhile (a port closed and freed could be reused).
    with pysocket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{reserved.getsockname()[1]}"
        config = settings(endpoint=endpoint, connect=True, timeout_s=0.2)
        with (
            StreamGenerator(config) as generator,
            pytest.raises(DeliveryTimeout, match="listening"),
        ):
            generator.send_series()


def test_receiver_that_stops_reading_fails_the_end_of_series(context: zmq.Context) -> None:
    # 40 MB of frames: far more than a one-message queue and small TCP buffers hold.
    config = settings(frames=5, shape=[1024, 2048], dtype="uint32", timeout_s=0.5)
    with (
        StreamGenerator(config) as generator,
        pull(context, generator.endpoint, rcvhwm=1, rcvbuf=65536),
        pytest.raises(DeliveryTimeout, match="stopped taking data"),
    ):
        generator.send_series()


def test_port_in_use_is_an_endpoint_error() -> None:
    with (
        StreamGenerator(settings()) as first,
        pytest.raises(EndpointError, match="cannot bind"),
    ):
        StreamGenerator(settings(endpoint=first.endpoint))


# --- the command line ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--meta", "[1]"], "must be a JSON object"),
        (["--meta", "{oops"], "not valid JSON"),
        (["--frames", "-1"], "--frames: Input should be greater than or equal to 0"),
        (["--shape", "0", "5"], "--shape"),
        (["--bind", "localhost:9999"], "is not a ZeroMQ endpoint"),
        (["--bind", FREE_PORT, "--connect", FREE_PORT], "not allowed with"),
        (["--series", "0"], "must be at least 1"),
        (["--dtype", "int8"], "invalid choice"),
        (["--connect", "localhost:9999"], "--connect: 'localhost:9999' is not a ZeroMQ endpoint"),
        (["--protocol", "sls", "--dtype", "float32"], "error: the SLS stream sends raw"),
    ],
)
def test_bad_arguments_exit_2_with_a_one_line_reason(
    capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("daq-generator: error:")
    assert reason in line


def test_help_shows_the_default_of_every_option() -> None:
    for action in build_parser()._actions:
        if action.option_strings and action.dest != "help":
            assert "(default: " in str(action.help), action.option_strings


@pytest.mark.allow_error_log
def test_cli_without_receiver_exits_1_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    argv = ["--bind", FREE_PORT, "--frames", "1", "--shape", "4", "4", "--timeout", "0.2"]
    assert main(argv) == 1
    assert "no receiver took data" in caplog.text


def test_cli_sends_several_series_to_numbered_files(
    context: zmq.Context, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--frames", "2", "--shape", "4", "4", "--series", "2", "--filename", "/data/scan.h5"]
    with bound_pull(context) as socket:
        assert main([*argv, "--connect", endpoint_of(socket), "--meta", '{"x": 1}']) == 0
        messages = receive(socket, 8)
    assert [m.seq for m in messages] == list(range(8))
    headers = [m for m in messages if isinstance(m, SeriesStart)]
    assert [h.filename for h in headers] == ["/data/scan_0001.h5", "/data/scan_0002.h5"]
    assert [h.meta for h in headers] == [{"x": 1}, {"x": 1}]
    assert "sent 4 frames, 128 bytes" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("template", "index", "count", "expected"),
    [
        ("/data/scan.h5", 1, 1, "/data/scan.h5"),
        ("/data/scan.h5", 3, 5, "/data/scan_0003.h5"),
        ("/data/scan_{series}.h5", 2, 2, "/data/scan_0002.h5"),
        ("/data/run{series}/scan.h5", 1, 1, "/data/run0001/scan.h5"),
        ("", 2, 3, ""),
    ],
)
def test_series_filename(template: str, index: int, count: int, expected: str) -> None:
    assert series_filename(template, index, count) == expected


def test_console_script_help_names_every_option() -> None:
    result = subprocess.run(
        [SCRIPT, "--help"], capture_output=True, text=True, timeout=5, check=False
    )
    assert result.returncode == 0
    for option in ("--bind", "--connect", "--frames", "--rate", "--shape", "--dtype"):
        assert option in result.stdout
    for option in ("--compression", "--filename", "--meta", "--out-of-order", "--series"):
        assert option in result.stdout
    assert "--timeout" in result.stdout
    assert "--log-level" in result.stdout


def test_console_script_streams_to_a_receiver(context: zmq.Context) -> None:
    command = [SCRIPT, "--frames", "3", "--shape", "8", "8", "--timeout", "3"]
    command += ["--compression", "bslz4", "--dtype", "uint32", "--filename", "run.h5"]
    with (
        bound_pull(context) as socket,
        subprocess.Popen(
            [*command, "--connect", endpoint_of(socket)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc,
    ):
        messages = receive(socket, 5)
        out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    assert "sent 3 frames" in out
    assert [m.seq for m in messages] == list(range(5))
    for image in images(messages):
        np.testing.assert_array_equal(pixels(image), synthetic_frame(image.frame, (8, 8), "uint32"))


# --- other protocols ----------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"protocol": "sls", "compression": "bslz4"},
        {"protocol": "sls", "dtype": "float32"},
        {"protocol": "dectris-v1", "shape": [4, 4, 4]},
        {"thresholds": 2},
        {"protocol": "dectris-v2", "thresholds": 5},
        {"protocol": "dectris-v3"},
        {"header_detail": "most"},
    ],
)
def test_settings_refuse_what_the_protocol_cannot_carry(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GeneratorSettings(**{"shape": [6, 10], "compression": "none", **bad})


def send_series_in(
    context: zmq.Context, config: GeneratorSettings, count: int, series: int = 1
) -> list[Message]:
    """``series`` series parsed with the receiver's parser of the generator's protocol."""
    parse = PROTOCOLS[config.protocol].parse
    with StreamGenerator(config) as generator, pull(context, generator.endpoint) as socket:
        for index in range(series):
            generator.send_series(f"run_{index}.h5")
        return [parse(parts) for parts in receive_parts(socket, count * series)]


@pytest.mark.parametrize("detail", ["all", "basic", "none"])
def test_dectris_v1_series_carry_the_series_id_and_the_file_name(
    context: zmq.Context, detail: str
) -> None:
    config = settings(protocol="dectris-v1", header_detail=detail, series_id=7, out_of_order=True)
    messages = send_series_in(context, config, 6, series=2)

    headers = [m for m in messages if isinstance(m, SeriesStart)]
    assert [(h.series, h.filename) for h in headers] == [(7, "run_0.h5"), (8, "run_1.h5")]
    assert [h.frames for h in headers] == ([None, None] if detail == "none" else [4, 4])
    assert [m.series for m in messages if isinstance(m, SeriesEnd)] == [7, 8]
    for image in images(messages):
        np.testing.assert_array_equal(
            pixels(image), synthetic_frame(image.frame, (6, 10), "uint16")
        )
    assert sorted(i.frame for i in images(messages)[:4]) == [0, 1, 2, 3]


def test_dectris_v2_frames_carry_one_chunk_per_threshold(context: zmq.Context) -> None:
    config = settings(protocol="dectris-v2", thresholds=2, compression="bslz4")
    header, *frames, end = send_series_in(context, config, 6)

    assert (header.frames, header.fields["channels"]) == (4, ["threshold_1", "threshold_2"])
    assert header.meta["threshold_energy"] == [4000.0, 8000.0]
    assert isinstance(end, SeriesEnd) and end.series == header.series
    for image in frames:
        assert image.shape == (2, 6, 10)
        for channel, chunk in enumerate(image.chunks()):
            np.testing.assert_array_equal(
                bslz4.decompress(chunk, (6, 10), "uint16"),
                synthetic_frame(image.frame, (6, 10), "uint16", channel),
            )


def test_sls_acquisitions_are_frames_then_the_end_marker(context: zmq.Context) -> None:
    config = settings(protocol="sls", compression="none", series_id=3)
    messages = send_series_in(context, config, 5, series=2)

    assert [type(m).__name__ for m in messages] == (["Image"] * 4 + ["SeriesEnd"]) * 2
    assert [m.series for m in images(messages)] == [(3, 1)] * 4 + [(4, 5)] * 4
    assert [m.fields["addJsonHeader"]["filename"] for m in images(messages)[::4]] == [
        "run_0.h5",
        "run_1.h5",
    ]
    for image in images(messages):
        np.testing.assert_array_equal(
            pixels(image), synthetic_frame(image.frame, (6, 10), "uint16")
        )


def test_console_script_help_names_the_protocol_options() -> None:
    result = subprocess.run(
        [SCRIPT, "--help"], capture_output=True, text=True, timeout=5, check=False
    )
    for option in ("--protocol", "--header-detail", "--thresholds", "--series-id"):
        assert option in result.stdout
    for protocol in ("stins", "dectris-v1", "dectris-v2", "sls"):
        assert protocol in result.stdout

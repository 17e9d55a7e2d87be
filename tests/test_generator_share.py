"""``daq-generator --share K/N``: one of N DCUs balancing one STINS stream.

MAX IV's receiver reads a detector whose stream is spread over several DCU
hosts (a list in ``dcu_host_purple``) as one stream: the messages carry one
``msg_number`` sequence between them. N generators with shares 0..N-1 send
exactly that stream between them.
"""

from __future__ import annotations

from typing import Any

import pytest
import zmq
from pydantic import ValidationError

from protocols import stins
from protocols.model import Image, SeriesEnd, SeriesStart
from sim.generator import GeneratorSettings, StreamGenerator
from sim.generator_cli import main

pytestmark = pytest.mark.timeout(30)


def settings(**overrides: Any) -> GeneratorSettings:
    values: dict[str, Any] = {
        "endpoint": "tcp://127.0.0.1:*",
        "frames": 7,
        "shape": [6, 10],
        "timeout_s": 5.0,
    }
    return GeneratorSettings(**(values | overrides))


def test_the_shares_of_a_stream_are_the_whole_stream_once(context: zmq.Context) -> None:
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    shares = [StreamGenerator(settings(share=(part, 3)), context) for part in range(3)]
    try:
        for generator in shares:
            pull.connect(generator.endpoint)
        for generator in shares:
            generator.send_series("scan.h5")
        received = []
        while pull.poll(500):
            received.append(stins.parse(pull.recv_multipart()))
    finally:
        for generator in shares:
            generator.close()
        pull.close()

    numbers = sorted(message.seq for message in received)
    assert numbers == list(range(7 + 2))
    by_number = {message.seq: message for message in received}
    assert isinstance(by_number[0], SeriesStart)
    assert [by_number[n].frame for n in range(1, 8)] == list(range(7))  # type: ignore[union-attr]
    assert all(isinstance(by_number[n], Image) for n in range(1, 8))
    assert isinstance(by_number[8], SeriesEnd)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"share": (2, 2)}, "the part must be below 2"),
        ({"share": (0, 2), "protocol": "dectris-v1"}, "a share of a stream is a STINS stream"),
        ({"share": (0, 2), "modules": 4}, "a share of a stream is a STINS stream"),
    ],
)
def test_a_share_that_cannot_be_sent_is_refused(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        settings(**overrides)


@pytest.mark.parametrize("text", ["1", "a/b", "2/2", "-1/2"])
def test_a_bad_share_flag_exits_2(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--share", text])
    assert exited.value.code == 2
    assert "--share" in capsys.readouterr().err

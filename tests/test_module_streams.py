"""``daq-generator --modules``: a multi-module detector's streams as a receiver sees them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zmq
from pydantic import ValidationError

from protocols import bslz4, stins
from protocols.model import Image, SeriesEnd, SeriesStart
from sim.frames import synthetic_frame
from sim.generator import GeneratorSettings
from sim.generator_cli import main
from sim.geometry import covered, in_a_row, windmill
from sim.module_streams import ModuleStreams, module_endpoints
from tooling.ports import free_port

pytestmark = pytest.mark.timeout(20)

MODULE = (4, 7)


def receive(context: zmq.Context, endpoint: str, count: int) -> list:
    pull = context.socket(zmq.PULL)
    pull.rcvtimeo = 5000
    pull.connect(endpoint)
    try:
        return [pull.recv_multipart() for _ in range(count)]
    finally:
        pull.close(linger=0)


def test_the_windmill_covers_four_modules_around_a_hole():
    geometry = windmill(MODULE)

    mask = covered(geometry, MODULE)

    assert geometry.full_shape == (11, 11)
    assert [m.rotation for m in geometry.modules] == [0, 1, 2, 3]
    assert mask.sum() == 4 * MODULE[0] * MODULE[1]
    assert not mask[4:7, 4:7].any()
    geometry.check_fits(MODULE)


def test_every_module_stream_carries_its_part_of_the_full_frame(context):
    settings = GeneratorSettings(
        endpoint="tcp://127.0.0.1:*",
        modules=4,
        shape=MODULE,
        frames=3,
        compression="bslz4",
        filename="lambda.h5",
        meta={"sensor": "CdTe"},
        timeout_s=5,
    )
    with ModuleStreams(settings) as streams:
        pulls = {}
        for name, endpoint in streams.endpoints.items():
            pull = pulls[name] = context.socket(zmq.PULL)
            pull.rcvtimeo = 5000
            pull.connect(endpoint)
        streams.send_series()
        received = {name: [pull.recv_multipart() for _ in range(5)] for name, pull in pulls.items()}
    for pull in pulls.values():
        pull.close(linger=0)

    full = [synthetic_frame(frame, (11, 11), "uint16") for frame in range(3)]
    for place in windmill(MODULE).modules:
        raw = received[place.name]
        header = stins.parse(raw[0])
        assert isinstance(header, SeriesStart)
        assert header.meta == {
            "sensor": "CdTe",
            "x": place.x,
            "y": place.y,
            "rotation": place.rotation * 90,
            "full_shape": [11, 11],
        }
        assert [stins.parse_module(parts).seq for parts in raw] == list(range(5))
        assert isinstance(stins.parse_module(raw[-1]), SeriesEnd)
        for parts in raw[1:4]:
            fields = json.loads(parts[0])
            assert (fields["shape"], fields["chunks"]) == ([4, *MODULE], [1, *MODULE])
            image = stins.parse_module(parts)
            assert isinstance(image, Image)
            pixels = bslz4.decompress(image.data, image.shape, image.dtype)
            rows, columns = place.placed_shape(MODULE)
            region = full[image.frame][place.y : place.y + rows, place.x : place.x + columns]
            np.testing.assert_array_equal(np.rot90(pixels, place.rotation), region)


def test_module_ports_follow_the_first_one_as_the_lambda_streams_do():
    names = ["m0", "m1", "m2"]
    assert module_endpoints("tcp://10.0.0.1:9010", names) == {
        "m0": "tcp://10.0.0.1:9010",
        "m1": "tcp://10.0.0.1:9011",
        "m2": "tcp://10.0.0.1:9012",
    }
    assert set(module_endpoints("tcp://127.0.0.1:*", names).values()) == {"tcp://127.0.0.1:*"}
    assert module_endpoints("ipc:///tmp/det", names)["m1"] == "ipc:///tmp/det-m1"


def test_one_module_of_a_geometry_file_from_the_command_line(context, tmp_path, capsys):
    geometry = in_a_row(3, MODULE)
    path = tmp_path / "geometry.json"
    path.write_text(geometry.model_dump_json())
    port = free_port()
    pull = context.socket(zmq.PULL)
    pull.rcvtimeo = 5000
    pull.connect(f"tcp://127.0.0.1:{port}")

    code = main(
        ["--bind", f"tcp://127.0.0.1:{port}", "--geometry", str(path), "--module", "m1",
         "--shape", *map(str, MODULE), "--frames", "2", "--filename", "row.h5"]
    )  # fmt: skip

    messages = [stins.parse_module(pull.recv_multipart()) for _ in range(4)]
    pull.close(linger=0)
    assert code == 0
    assert "sent 2 frames" in capsys.readouterr().out
    assert messages[0].meta["x"] == geometry.modules[1].x
    image = messages[2]
    pixels = np.frombuffer(image.data, image.dtype).reshape(image.shape)
    place = geometry.modules[1]
    np.testing.assert_array_equal(
        pixels, synthetic_frame(1, geometry.full_shape, "uint16")[:, place.x : place.x + 7]
    )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--modules", "4", "--protocol", "sls"], "module streams are STINS streams"),
        (["--modules", "4", "--module", "m9"], "there is no module 'm9'"),
        (["--modules", "2", "--geometry", "{geometry}"], "the geometry has 3 modules, not 2"),
    ],
)
def test_impossible_module_settings_are_refused_with_the_flag(tmp_path, capsys, flags, expected):
    path = tmp_path / "geometry.json"
    path.write_text(in_a_row(3, MODULE).model_dump_json())
    with pytest.raises(SystemExit) as exit_info:
        main([flag.format(geometry=path) for flag in flags])
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def test_a_geometry_whose_modules_overlap_is_refused():
    geometry = {
        "full_shape": [12, 12],
        "modules": [{"name": "a", "x": 0, "y": 0}, {"name": "b", "x": 3, "y": 2, "rotation": 1}],
    }
    with pytest.raises(ValidationError, match="module 'b' overlaps another module"):
        GeneratorSettings(shape=MODULE, geometry=geometry)


def test_a_geometry_file_that_is_not_json_is_refused(tmp_path: Path, capsys):
    path = tmp_path / "geometry.json"
    path.write_text("{modules")
    with pytest.raises(SystemExit):
        main(["--geometry", str(path)])
    assert "is not valid JSON" in capsys.readouterr().err

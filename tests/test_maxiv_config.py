"""Drop-in mode: an entry of MAX IV's detectors.yaml runs the receiver unchanged."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest
import zmq

from protocols import stins
from receiver.config import ConfigError, load
from tests.helpers import wait_until
from tooling.ports import free_port

DETECTORS_YAML = """
### Formax
formax-lambda:
  class: Lambda
  dcu_host_purple: [172.18.28.4, 172.18.28.4, 172.18.28.5, 172.18.28.5]
  rep_port: 23001
  data_port: 23002
  dset_name: /entry/instrument/lambda/data

formax-zyla:
  class: Detector
  dcu_host_purple: 172.18.28.7
  rep_port: 23005
  data_port: 23006
  dset_name: /entry/instrument/zyla/data

femtomax-pilatus:
  class: Detector
  nworkers: 4
  dcu_host_purple: 172.18.22.6
  data_port: 27001
  dset_name: /entry/instrument/pilatus/data
  pipeline: PilatusPipeline
  rotate: false
  compress: false

femtomax-rotated:
  class: Detector
  dcu_host_purple: 172.18.22.6
  pipeline: PilatusPipeline
  rotate: true

unknown-pipeline:
  class: Detector
  dcu_host_purple: 172.18.22.6
  pipeline: LambdaPipeline

formax-eiger:
  class: Eiger
  dcu_host_purple: 172.18.28.6
  data_port: 23004
  dset_name: /entry/instrument/eiger/data

cosaxs-eiger2:
  class: DectrisStream2
  dcu_host_purple: 172.18.28.8

local:
  class: Detector
  dcu_host_purple: 127.0.0.1
  dcu_port_purple: {stream_port}
  nworkers: 2
  api_port: {api_port}
  dset_name: /entry/instrument/zyla/data
"""


def write_yaml(tmp_path: Path, stream_port: int = 9999, api_port: int = 5000) -> Path:
    path = tmp_path / "detectors.yaml"
    path.write_text(DETECTORS_YAML.format(stream_port=stream_port, api_port=api_port))
    return path


def test_an_entry_maps_onto_our_settings(tmp_path, caplog):
    config = load(write_yaml(tmp_path), entry="formax-zyla")

    assert config.connect == ["tcp://172.18.28.7:9999"]
    assert config.forward == "tcp://*:23006"
    assert config.detector_name == "zyla"
    assert (config.http_host, config.http_port) == ("0.0.0.0", 5000)
    assert config.legacy_last_frame is True
    assert "rep_port" in caplog.text


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("formax-lambda", "class Lambda needs multi-module"),
        ("femtomax-rotated", "rotate: true names no angle"),
        ("unknown-pipeline", "pipeline 'LambdaPipeline' is unknown here"),
        ("nope", "there is no entry 'nope'"),
        (None, "no entry was named"),
    ],
)
def test_what_cannot_run_yet_is_refused_with_the_reason(tmp_path, entry, expected):
    with pytest.raises(ConfigError, match="MAX IV configuration") as info:
        load(write_yaml(tmp_path), entry=entry)
    assert expected in str(info.value)


def test_the_pilatus_pipeline_becomes_cbf_decoding_without_recompression(tmp_path):
    config = load(write_yaml(tmp_path), entry="femtomax-pilatus")
    assert [(t.kind, t.compression) for t in config.transforms] == [("cbf", "none")]
    assert config.workers == 4


@pytest.mark.parametrize(
    ("entry", "protocol", "connect"),
    [
        ("formax-eiger", "dectris-v1", "tcp://172.18.28.6:9999"),
        ("cosaxs-eiger2", "dectris-v2", "tcp://172.18.28.8:31001"),
    ],
)
def test_dectris_classes_read_their_stream(tmp_path, entry, protocol, connect):
    config = load(write_yaml(tmp_path), entry=entry)
    assert (config.protocol, config.connect) == (protocol, [connect])


def test_flags_override_the_yaml(tmp_path):
    config = load(
        write_yaml(tmp_path),
        {"http_host": "127.0.0.1", "forward": "tcp://127.0.0.1:23006", "data_root": tmp_path},
        entry="formax-zyla",
    )
    assert config.http_host == "127.0.0.1"
    assert config.forward == "tcp://127.0.0.1:23006"
    assert config.data_root == tmp_path


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_drop_in_receiver_serves_the_pickled_last_frame_by_default(processes, tmp_path):
    stream_port, api_port = free_port(), free_port()
    yaml_path = write_yaml(tmp_path, stream_port, api_port)
    proc = processes.start(
        "stream-receiver", "--config", str(yaml_path), "--entry", "local",
        "--http", f"127.0.0.1:{api_port}", "--data-root", str(tmp_path),
    )  # fmt: skip
    url = f"http://127.0.0.1:{api_port}"
    processes.wait_serving(proc, url)
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.bind(f"tcp://127.0.0.1:{stream_port}")
    pixels = np.arange(12, dtype="uint16").reshape(3, 4)
    push.send_multipart(stins.encode_header(0, "dropin.h5"))
    push.send_multipart(stins.encode_image(1, 0, pixels.tobytes(), (3, 4), "uint16"))
    push.send_multipart(stins.encode_series_end(2))
    wait_until(lambda: httpx.get(f"{url}/status").json()["last_series"], 30, "the series end")
    push.close(linger=0)
    context.term()

    answer = httpx.get(f"{url}/last_frame")
    header, data = pickle.loads(answer.content)
    assert answer.headers["content-type"] == "image/pickle"
    assert header["frame"] == 0
    np.testing.assert_array_equal(
        np.frombuffer(data, header["type"]).reshape(header["shape"]), pixels
    )
    assert (tmp_path / "dropin.h5").exists()
    with h5py.File(tmp_path / "dropin.h5") as f:
        assert f["entry/instrument/zyla/data"].shape == (1, 3, 4)

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

cosaxs-pilatus:
  class: Detector
  dcu_host_purple: 172.18.22.6
  pipeline: PilatusPipeline
  rotate: true
  mask: [[0, 100], [200, 260]]

no-pipeline:
  class: Detector
  dcu_host_purple: 172.18.22.6
  rotate: true
  compress: false

formax-orca:
  class: Detector
  nworkers: 2
  dcu_host_purple: 172.18.28.7
  pipeline: OrcaPipeline

balanced:
  class: Detector
  dcu_host_purple: [172.18.22.6, 172.18.22.7]
  dcu_port_purple: [9999, 9998]
  data_port: 27001

balanced-eiger:
  class: Eiger
  dcu_host_purple: [172.18.28.6, 172.18.28.9]

ports-without-hosts:
  class: Detector
  dcu_host_purple: 172.18.22.6
  dcu_port_purple: [9999, 9998]

lambda-one-host:
  class: Lambda
  dcu_host_purple: 172.18.28.4

lambda-with-pipeline:
  class: Lambda
  dcu_host_purple: [172.18.28.4, 172.18.28.5]
  pipeline: PilatusPipeline

jungfrau:
  class: Jungfrau
  dcu_host_purple: 172.18.28.10

bad-mask:
  class: Detector
  dcu_host_purple: 172.18.22.6
  pipeline: PilatusPipeline
  mask: [[100, 0], [200, 260]]

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
        ("lambda-one-host", "must list one DCU host per module"),
        ("ports-without-hosts", "dcu_port_purple lists 2 ports for 1 DCU host"),
        ("jungfrau", "class Jungfrau is not read here"),
        ("bad-mask", "mask must be [[first row, end row], [first column, end column]]"),
        ("unknown-pipeline", "pipeline 'LambdaPipeline' is unknown here"),
        ("nope", "there is no entry 'nope'"),
        (None, "no entry was named"),
    ],
)
def test_what_cannot_run_is_refused_with_the_reason(tmp_path, entry, expected):
    with pytest.raises(ConfigError, match="MAX IV configuration") as info:
        load(write_yaml(tmp_path), entry=entry)
    assert expected in str(info.value)


def test_a_lambda_entry_is_one_module_stream_per_dcu_placed_by_the_headers(tmp_path):
    config = load(write_yaml(tmp_path), entry="formax-lambda")

    assert [(m.name, m.connect) for m in config.modules] == [
        ("m0", "tcp://172.18.28.4:9010"),
        ("m1", "tcp://172.18.28.4:9011"),
        ("m2", "tcp://172.18.28.5:9012"),
        ("m3", "tcp://172.18.28.5:9013"),
    ]
    assert not any(m.placed for m in config.modules)
    assert config.full_shape is None
    assert (config.protocol, config.detector_name, config.forward) == (
        "stins",
        "lambda",
        "tcp://*:23002",
    )
    assert config.legacy_last_frame is True


def test_a_lambda_entry_ignores_pipelines_as_max_iv_does(tmp_path, caplog):
    config = load(write_yaml(tmp_path), entry="lambda-with-pipeline")

    assert config.transforms == []
    assert "MAX IV's Lambda class applies no pipeline" in caplog.text


def test_several_dcu_hosts_are_one_stream_every_worker_reads(tmp_path):
    config = load(write_yaml(tmp_path), entry="balanced")

    assert config.connect == ["tcp://172.18.22.6:9999", "tcp://172.18.22.7:9998"]
    assert config.workers == 2
    assert config.protocol == "stins"


def test_several_dcu_hosts_of_an_eiger(tmp_path):
    config = load(write_yaml(tmp_path), entry="balanced-eiger")

    assert config.connect == ["tcp://172.18.28.6:9999", "tcp://172.18.28.9:9999"]
    assert config.protocol == "dectris-v1"


def test_the_pilatus_pipeline_turns_clockwise_and_masks_as_max_ivs(tmp_path):
    config = load(write_yaml(tmp_path), entry="cosaxs-pilatus")

    kinds = [t.model_dump(exclude_none=True) for t in config.transforms]
    assert kinds == [
        {"kind": "cbf", "compression": "bslz4"},
        {"kind": "rotate", "k": -1},
        {"kind": "mask", "x": 200, "y": 0, "width": 60, "height": 100, "value": -1},
    ]


@pytest.mark.parametrize(
    ("entry", "warned"),
    [
        ("no-pipeline", "only MAX IV's PilatusPipeline reads it"),
        ("formax-orca", "OrcaPipeline not applied"),
    ],
)
def test_keys_max_iv_would_not_apply_are_ignored_with_a_warning(tmp_path, caplog, entry, warned):
    config = load(write_yaml(tmp_path), entry=entry)

    assert config.transforms == []
    assert warned in caplog.text


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

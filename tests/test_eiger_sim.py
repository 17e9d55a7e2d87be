"""The simulated Eiger, driven over real HTTP the way the control systems' clients drive a detector.

``DEiger`` below calls exactly as Dectris' DEigerClient does (URLs, headers,
bodies, how answers are parsed); the ADEiger and fastcs-eiger tests send
their raw requests. The data stream is a :class:`RecordingSink`.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cbor2
import numpy as np
import pytest
import requests

from sim.eiger import EigerSimulator, ImageTiming, RecordingSink, SeriesConfig
from sim.eiger.parameters import HC_EV_ANGSTROM
from sim.trigger_input import fire
from tests.captures import STREAM1
from tests.helpers import VENV_BIN, wait_until
from tooling.ports import free_port

pytestmark = pytest.mark.timeout(30)

CAPTURE = STREAM1
VALUE_TYPES = {"float", "int", "uint", "bool", "string", "datetime", "State", "string[]"}
SUBSYSTEMS = ("detector", "stream", "monitor", "filewriter")


class Refused(Exception):
    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"{status} {reason}: {body}")
        self.status, self.body = status, body


class DEiger:
    """A minimal client that calls the SIMPLON API exactly as DEigerClient 1.8.0 does."""

    def __init__(self, url: str) -> None:
        self._base = url
        self._session = requests.Session()

    def version(self, module: str = "detector") -> Any:
        return self._get(f"/{module}/api/version/")

    def config(self, param: str, module: str = "detector") -> Any:
        return self._get(self._url(module, "config", param))

    def set_config(self, param: str, value: Any, module: str = "detector") -> Any:
        return self._put(self._url(module, "config", param), value)

    def status(self, param: str, module: str = "detector") -> Any:
        return self._get(self._url(module, "status", param))

    def command(self, command: str, parameter: Any = None) -> Any:
        return self._put(self._url("detector", "command", command), parameter)

    def state(self) -> str:
        return self.status("state")["value"]

    @staticmethod
    def _url(module: str, task: str, parameter: str) -> str:
        return f"/{module}/api/1.8.0/{task}/{parameter}"

    def _get(self, url: str) -> Any:
        return self._request("GET", url, {"Accept": "application/json; charset=utf-8"}, None)

    def _put(self, url: str, value: Any) -> Any:
        if value is None:
            return self._request("PUT", url, {"Content-type": "text/html"}, "")
        body = json.dumps({"value": value})
        return self._request("PUT", url, {"Content-type": "application/json; charset=utf-8"}, body)

    def _request(self, method: str, url: str, headers: dict[str, str], body: str | None) -> Any:
        response = self._session.request(method, self._base + url, headers=headers, data=body)
        if not 200 <= response.status_code < 300:
            raise Refused(response.status_code, response.reason, response.text)
        if "json" in response.headers.get("content-type", "text/plain"):
            return response.json()
        return response.content


@contextmanager
def running(
    sink: RecordingSink, trigger_input: bool = False, **options: Any
) -> Iterator[EigerSimulator]:
    options = {"initialized": True, "initialize_time_s": 0.0} | options
    endpoint = f"tcp://127.0.0.1:{free_port()}" if trigger_input else None
    simulator = EigerSimulator(port=free_port(), sink=sink, trigger_endpoint=endpoint, **options)
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def simulator(sink: RecordingSink) -> Iterator[EigerSimulator]:
    with running(sink) as simulator:
        yield simulator


@pytest.fixture
def eiger(simulator: EigerSimulator) -> DEiger:
    return DEiger(simulator.url)


@pytest.fixture(scope="module")
def idle_eiger() -> Iterator[DEiger]:
    """One simulator for the tests that change nothing (reads and refusals)."""
    with running(RecordingSink()) as simulator:
        yield DEiger(simulator.url)


@pytest.fixture
def triggered(sink: RecordingSink) -> Iterator[EigerSimulator]:
    """A simulator with its trigger input bound."""
    with running(sink, trigger_input=True) as simulator:
        yield simulator


def configure(eiger: DEiger, **values: Any) -> None:
    for key, value in values.items():
        eiger.set_config(key, value)


def capture_header() -> list[bytes]:
    with gzip.open(CAPTURE, "rb") as stream:
        header = cbor2.load(stream)
    assert json.loads(header[0])["htype"] == "dheader-1.0"
    return header


def capture_config() -> dict[str, Any]:
    return json.loads(capture_header()[1])


def darray(array: np.ndarray) -> dict[str, Any]:
    """As MAX IV's contrast sends a pixel mask (after the SIMPLON manual's example)."""
    return {
        "__darray__": (1, 0, 0),
        "type": array.dtype.str,
        "shape": array.shape,
        "filters": ["base64"],
        "data": base64.b64encode(array.data).decode("ascii"),
    }


def from_darray(value: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(value["data"])
    return np.frombuffer(raw, dtype=np.dtype(value["type"])).reshape(value["shape"])


def exposures(images: list) -> list[float]:
    return [round((i.timing.stop_ns - i.timing.start_ns) / 1e9, 6) for i in images]


# ---------------------------------------------------------------- introspection


def test_version_answers_with_and_without_final_slash(idle_eiger: DEiger) -> None:
    eiger = idle_eiger
    assert eiger.version() == {"value": "1.8.0", "value_type": "string"}
    assert eiger.version("filewriter")["value"] == "1.8.0"
    adeiger_style = requests.get(f"{eiger._base}/detector/api/version", timeout=5)
    assert adeiger_style.json()["value"] == "1.8.0"


def test_every_listed_key_answers_with_its_metadata(idle_eiger: DEiger) -> None:
    eiger = idle_eiger
    for subsystem in SUBSYSTEMS:
        assert eiger._get(f"/{subsystem}/api/1.8.0/keys") == ["command", "config", "status"]
        for section in ("config", "status"):
            keys = eiger._get(f"/{subsystem}/api/1.8.0/{section}/keys")
            assert keys == sorted(keys) and keys, (subsystem, section)
            for key in keys:
                answer = eiger._get(f"/{subsystem}/api/1.8.0/{section}/{key}")
                assert answer["value_type"] in VALUE_TYPES, (subsystem, key)
                assert answer["access_mode"] in ("r", "w", "rw"), (subsystem, key)
                assert "value" in answer
                assert None not in answer.values(), (subsystem, key)  # absent, never null
                assert ("min" in answer) == ("max" in answer), (subsystem, key)
                if section == "status":
                    assert answer["access_mode"] == "r"
    commands = eiger._get("/detector/api/1.8.0/command/keys")
    assert {"initialize", "arm", "trigger", "disarm", "cancel", "abort"} <= set(commands)


def test_detector_keys_and_defaults_are_the_real_capture_header(
    eiger: DEiger, sink: RecordingSink
) -> None:
    real = capture_config()
    listed = eiger.config("keys")
    # A real detector serves wavelength but leaves it out of the keys (fastcs-eiger works around it).
    beyond_header = {"counting_mode", "pixel_mask", "threshold/1/energy", "threshold/1/mode"}
    assert set(listed) == set(real) - {"wavelength"} | beyond_header
    for key, value in real.items():
        assert eiger.config(key)["value"] == value, key
    series = eiger.command("arm")["sequence id"]
    header = sink.config(series).detector
    assert list(header) == sorted(real)
    assert {k: v for k, v in header.items() if k != "data_collection_date"} == {
        k: v for k, v in real.items() if k != "data_collection_date"
    }


def test_value_metadata_as_the_detector_gives_it(idle_eiger: DEiger) -> None:
    eiger = idle_eiger
    assert eiger.config("count_time") == {
        "access_mode": "rw",
        "max": 1800.0,
        "min": 2.9999000616953708e-06,
        "unit": "s",
        "value": 0.9999999,
        "value_type": "float",
    }
    mode = eiger.config("trigger_mode")
    assert mode["allowed_values"] == ["ints", "exts", "inte", "exte"] and mode["value"] == "ints"
    pixels = eiger.config("x_pixels_in_detector")
    assert (pixels["value"], pixels["value_type"], pixels["access_mode"]) == (1030, "uint", "r")
    assert eiger.config("description") == {
        "access_mode": "r",
        "value": "Dectris EIGER1 Si 1M",
        "value_type": "string",
    }
    assert eiger.config("nimages")["min"] == 1
    assert eiger.config("auto_summation")["value_type"] == "bool"
    assert eiger.config("detector_translation")["value"] == [0.0, 0.0, 0.0]
    state = eiger.status("state")
    assert state["value"] == "idle" and "ready" in state["allowed_values"]
    error = eiger.status("error")
    assert (error["value"], error["value_type"]) == ([], "string[]")
    assert eiger.status("dropped", "stream")["value_type"] == "uint"
    assert eiger.config("mode", "stream")["allowed_values"] == ["enabled", "disabled"]
    assert eiger.config("format", "stream")["allowed_values"] == ["legacy", "cbor"]


# -------------------------------------------------------------- configuration


def test_put_answers_the_parameters_it_changed(eiger: DEiger) -> None:
    timing = [
        "bit_depth_image",
        "count_time",
        "countrate_correction_count_cutoff",
        "frame_count_time",
        "frame_period",
        "frame_time",
    ]
    assert eiger.set_config("frame_time", 0.01) == timing
    assert eiger.config("count_time")["value"] == pytest.approx(0.01 - 3e-6)
    assert eiger.config("frame_period")["value"] == pytest.approx(0.01 / 8)
    assert eiger.set_config("count_time", 0.5) == timing
    assert eiger.config("frame_time")["value"] == pytest.approx(0.5 + 3e-6)

    energy = ["element", "photon_energy", "threshold/1/energy", "threshold_energy", "wavelength"]
    assert eiger.set_config("photon_energy", 12000) == energy
    assert eiger.config("threshold_energy")["value"] == 6000.0
    assert eiger.config("threshold/1/energy")["value"] == 6000.0
    assert eiger.config("wavelength")["value"] == pytest.approx(HC_EV_ANGSTROM / 12000)
    assert eiger.set_config("element", "Cu") == energy
    assert eiger.config("photon_energy")["value"] == 8047.78
    threshold = ["threshold/1/energy", "threshold_energy"]
    assert eiger.set_config("threshold/1/energy", 5000.0) == threshold
    assert eiger.config("threshold_energy")["value"] == 5000.0
    assert eiger.set_config("threshold/1/mode", "disabled") == ["threshold/1/mode"]
    assert eiger.set_config("counting_mode", "retrigger") == ["counting_mode"]

    assert eiger.set_config("nimages", 7) == ["nimages"]
    assert eiger.set_config("header_appendix", '{"filename": "a.h5"}', "stream") == [
        "header_appendix"
    ]
    assert eiger.set_config("mode", "disabled", "filewriter") == ["mode"]
    assert eiger.config("mode", "filewriter")["value"] == "disabled"
    assert eiger.status("state", "filewriter")["value"] == "disabled"
    assert eiger.set_config("mode", "enabled", "monitor") == ["mode"]


def test_pixel_mask_is_the_real_one_and_takes_a_new_darray(
    eiger: DEiger, sink: RecordingSink
) -> None:
    answer = eiger.config("pixel_mask")
    assert (answer["access_mode"], answer["value_type"]) == ("rw", "uint")
    mask = from_darray(answer["value"])
    assert mask.shape == (1065, 1030) and mask.dtype == np.uint32
    assert np.count_nonzero(mask) == eiger.config("number_of_excluded_pixels")["value"] == 38129
    real = np.frombuffer(capture_header()[5], dtype="<u4").reshape(1065, 1030)
    assert np.array_equal(mask, real)

    new = np.zeros((1065, 1030), dtype="<u4")
    new[10, 20] = 2
    changed = eiger.set_config("pixel_mask", darray(new))
    assert changed == ["number_of_excluded_pixels", "pixel_mask"]
    assert eiger.config("number_of_excluded_pixels")["value"] == 1
    series = eiger.command("arm")["sequence id"]
    assert np.array_equal(sink.config(series).pixel_mask, new)
    eiger.command("disarm")
    with pytest.raises(Refused) as refused:
        eiger.set_config("pixel_mask", darray(new[:100]))
    assert refused.value.status == 400 and "shape [1065, 1030]" in refused.value.body


@pytest.mark.parametrize(
    ("url", "body", "status", "reason"),
    [
        ("/detector/api/1.8.0/config/no_such_key", {"value": 1}, 404, "no parameter 'no_such_key'"),
        ("/detector/api/1.8.0/config/x_pixels_in_detector", {"value": 2}, 400, "read-only"),
        ("/detector/api/1.8.0/config/count_time", {"value": 4000.0}, 400, "above its maximum"),
        ("/detector/api/1.8.0/config/nimages", {"value": 0}, 400, "below its minimum"),
        ("/detector/api/1.8.0/config/count_time", {"value": "fast"}, 400, "takes a number"),
        ("/detector/api/1.8.0/config/nimages", {"value": 1.5}, 400, "whole number"),
        ("/detector/api/1.8.0/config/nimages", {"value": True}, 400, "whole number"),
        ("/detector/api/1.8.0/config/auto_summation", {"value": 1}, 400, "true or false"),
        ("/detector/api/1.8.0/config/trigger_mode", {"value": "extg"}, 400, "not allowed"),
        ("/stream/api/1.8.0/config/header_detail", {"value": "most"}, 400, "not allowed"),
        ("/detector/api/1.8.0/config/count_time", {"val": 1.0}, 400, '{"value": ...}'),
        ("/detector/api/1.8.0/config/count_time", None, 400, '{"value": ...}'),
        ("/detector/api/1.8.0/command/explode", None, 404, "no command 'explode'"),
        ("/detector/api/1.8.0/command/trigger", None, 400, "not armed"),
        ("/detector/api/1.6.0/config/count_time", {"value": 1.0}, 404, "speaks 1.8.0"),
        ("/camera/api/1.8.0/config/count_time", {"value": 1.0}, 404, "no subsystem 'camera'"),
        ("/detector/api/1.8.0/status/state", {"value": "idle"}, 405, "read-only"),
    ],
)
def test_refusals_answer_4xx_with_a_reason(
    idle_eiger: DEiger, url: str, body: Any, status: int, reason: str
) -> None:
    eiger = idle_eiger
    if body is None:
        headers, data = {"Content-type": "text/html"}, ""
    else:
        headers, data = {"Content-type": "application/json; charset=utf-8"}, json.dumps(body)
    with pytest.raises(Refused) as refused:
        eiger._request("PUT", url, headers, data)
    assert refused.value.status == status
    assert reason in refused.value.body, refused.value.body


def test_unknown_key_is_404_on_get_too(idle_eiger: DEiger) -> None:
    with pytest.raises(Refused) as refused:
        idle_eiger.config("no_such_key")
    assert refused.value.status == 404


# ------------------------------------------------------------ state machine


def test_initialize_takes_the_detector_from_na_to_idle(sink: RecordingSink) -> None:
    with running(sink, initialized=False, initialize_time_s=0.15) as simulator:
        eiger = DEiger(simulator.url)
        assert eiger.state() == "na"
        assert eiger.config("count_time")["value"] == 0.9999999  # readable before initialize
        for refused_call in (lambda: eiger.command("arm"), lambda: eiger.set_config("nimages", 2)):
            with pytest.raises(Refused) as refused:
                refused_call()
            assert refused.value.status == 400 and "not initialized" in refused.value.body
        seen: list[str] = []
        watcher = threading.Thread(
            target=lambda: wait_until(
                lambda: seen.append(DEiger(simulator.url).state()) or "initialize" in seen,
                5,
                "state initialize",
            )
        )
        watcher.start()
        assert eiger.command("initialize") == b""  # no answer body, and not JSON
        watcher.join()
        assert "initialize" in seen
        assert eiger.state() == "idle"
        assert eiger.command("arm") == {"sequence id": 1}
        assert eiger.state() == "ready"
        with pytest.raises(Refused) as refused:
            eiger.command("arm")
        assert refused.value.status == 400 and "armed: disarm it first" in refused.value.body
        with pytest.raises(Refused) as refused:
            eiger.set_config("count_time", 0.1)
        assert "disarm it first" in refused.value.body
        assert eiger.command("disarm") == {"sequence id": 1}
        assert eiger.state() == "idle"
        assert sink.ended == [1]


def test_ints_takes_nimages_per_trigger_command_paced_by_frame_time(
    eiger: DEiger, sink: RecordingSink
) -> None:
    configure(eiger, trigger_mode="ints", nimages=3, ntrigger=2, frame_time=0.02, count_time=0.01)
    series = eiger.command("arm")["sequence id"]
    assert eiger.state() == "ready"
    assert sink.series == [series] and sink.images(series) == []
    assert sink.config(series).number_of_images == 6

    began = time.monotonic()
    assert eiger.command("trigger") == {"sequence id": series}
    took = time.monotonic() - began
    assert len(sink.images(series)) == 3  # the command answered once its images were taken
    assert took >= 2 * 0.02 + 0.01
    assert eiger.state() == "ready" and sink.ended == []

    eiger.command("trigger")
    images = sink.images(series)
    assert [image.frame for image in images] == list(range(6))
    assert eiger.state() == "idle" and sink.ended == [series]
    first, second = images[:3], images[3:]
    for burst in (first, second):
        starts = [image.timing.start_ns for image in burst]
        assert [b - a for a, b in itertools.pairwise(starts)] == [20_000_000] * 2
    assert exposures(images) == [0.01] * 6
    assert second[0].timing.start_ns > first[-1].timing.stop_ns
    assert all(0 < i.timing.real_ns <= i.timing.stop_ns - i.timing.start_ns for i in images)

    with pytest.raises(Refused) as refused:
        eiger.command("trigger")
    assert refused.value.status == 400 and "not armed" in refused.value.body


def test_inte_takes_one_image_per_trigger_exposed_for_the_time_sent(
    eiger: DEiger, sink: RecordingSink
) -> None:
    configure(eiger, trigger_mode="inte", nimages=5, ntrigger=3, count_time=0.004)
    series = eiger.command("arm")["sequence id"]
    assert sink.config(series).number_of_images == 3
    eiger.command("trigger", 0.006)
    assert exposures(sink.images(series)) == [0.006]
    eiger.command("trigger")  # no time sent: count_time
    eiger.command("trigger", 0.002)
    assert exposures(sink.images(series)) == [0.006, 0.004, 0.002]
    assert eiger.state() == "idle" and sink.ended == [series]

    eiger.command("arm")
    with pytest.raises(Refused) as refused:
        eiger.command("trigger", "long")
    assert refused.value.status == 400 and "count time" in refused.value.body
    eiger.command("disarm")


def test_exts_takes_nimages_per_external_trigger(
    sink: RecordingSink, triggered: EigerSimulator
) -> None:
    simulator, eiger = triggered, DEiger(triggered.url)
    configure(eiger, trigger_mode="exts", nimages=2, ntrigger=2, frame_time=0.01)
    series = eiger.command("arm")["sequence id"]
    with pytest.raises(Refused) as refused:
        eiger.command("trigger")
    assert refused.value.status == 400 and "external trigger input" in refused.value.body
    endpoint = simulator.trigger_endpoint
    assert endpoint is not None
    fire(endpoint)
    wait_until(lambda: len(sink.images(series)) == 2 and eiger.state() == "ready", 5, "burst 1")
    fire(endpoint)
    wait_until(lambda: eiger.state() == "idle", 5, "the series to end")
    assert [image.frame for image in sink.images(series)] == [0, 1, 2, 3]
    assert sink.ended == [series]
    ignored = simulator.detector.ignored_pulses
    fire(endpoint)  # not armed: the detector ignores it
    wait_until(lambda: simulator.detector.ignored_pulses == ignored + 1, 5, "the pulse")
    assert len(sink.images(series)) == 4


def test_exte_exposes_each_image_for_its_pulse(
    sink: RecordingSink, triggered: EigerSimulator
) -> None:
    simulator, eiger = triggered, DEiger(triggered.url)
    configure(eiger, trigger_mode="exte", nimages=4, ntrigger=2, count_time=0.003)
    series = eiger.command("arm")["sequence id"]
    endpoint = simulator.trigger_endpoint
    assert endpoint is not None
    fire(endpoint, width=0.005)
    wait_until(lambda: len(sink.images(series)) == 1 and eiger.state() == "ready", 5, "image 1")
    simulator.detector.external_trigger(0.0)  # an edge, not a gate: count_time
    wait_until(lambda: eiger.state() == "idle", 5, "the series to end")
    assert exposures(sink.images(series)) == [0.005, 0.003]
    assert sink.ended == [series]


def _trigger_in_background(url: str) -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(DEiger(url).command("trigger")))
    thread.start()
    return thread, answers


def test_disarm_ends_the_series_at_once_and_the_trigger_answers(
    eiger: DEiger, sink: RecordingSink, simulator: EigerSimulator
) -> None:
    configure(eiger, trigger_mode="ints", nimages=1000, ntrigger=1, frame_time=0.01)
    series = eiger.command("arm")["sequence id"]
    thread, answers = _trigger_in_background(simulator.url)
    wait_until(lambda: len(sink.images(series)) >= 2, 5, "images")
    assert eiger.state() == "acquire"
    assert eiger.command("disarm") == {"sequence id": series}
    thread.join(5)
    assert answers == [{"sequence id": series}]
    assert eiger.state() == "idle" and sink.ended == [series]
    assert 2 <= len(sink.images(series)) < 1000
    assert eiger.command("disarm") == {"sequence id": series}  # idle: nothing to do
    assert sink.ended == [series]


@pytest.mark.parametrize(("command", "images"), [("cancel", 1), ("abort", 0)])
def test_cancel_finishes_the_image_being_exposed_abort_does_not(
    eiger: DEiger, sink: RecordingSink, simulator: EigerSimulator, command: str, images: int
) -> None:
    configure(eiger, trigger_mode="ints", nimages=3, ntrigger=1, frame_time=0.3, count_time=0.25)
    series = eiger.command("arm")["sequence id"]
    thread, answers = _trigger_in_background(simulator.url)
    wait_until(lambda: eiger.state() == "acquire", 5, "acquire")
    assert eiger.command(command) == {"sequence id": series}
    assert len(sink.images(series)) == images
    assert eiger.state() == "idle" and sink.ended == [series]
    thread.join(5)
    assert answers == [{"sequence id": series}]


# ------------------------------------------------------------------- stream


def test_stream_configuration_reaches_the_series_start(eiger: DEiger, sink: RecordingSink) -> None:
    appendix = json.dumps({"filename": "scan_0001.h5", "rotate": 0})
    for key, value in {
        "header_detail": "basic",
        "header_appendix": appendix,
        "image_appendix": '{"tag": 1}',
        "format": "cbor",
    }.items():
        eiger.set_config(key, value, "stream")
    configure(eiger, nimages=2, ntrigger=3)
    series = eiger.command("arm")["sequence id"]
    start: SeriesConfig = sink.config(series)
    assert (start.header_detail, start.header_appendix, start.format) == ("basic", appendix, "cbor")
    assert start.image_appendix == '{"tag": 1}'
    assert (start.number_of_images, start.shape, start.image_dtype) == (6, (1065, 1030), "uint32")
    assert start.detector["nimages"] == 2 and start.detector["ntrigger"] == 3
    assert start.detector["data_collection_date"] == eiger.config("data_collection_date")["value"]
    assert len(start.series_unique_id) == 26
    assert eiger.status("series_unique_id")["value"] == start.series_unique_id
    assert start.arm_date.tzinfo is not None
    assert eiger.status("state", "stream")["value"] == "acquire"
    eiger.command("disarm")
    assert eiger.status("state", "stream")["value"] == "ready"

    eiger.set_config("mode", "disabled", "stream")
    assert eiger.status("state", "stream")["value"] == "disabled"
    quiet = eiger.command("arm")["sequence id"]
    eiger.command("disarm")
    assert quiet not in sink.series and sink.ended == [series]


def test_dropped_counts_the_images_the_stream_could_not_send() -> None:
    sink = RecordingSink(deliver=False)
    with running(sink) as simulator:
        eiger = DEiger(simulator.url)
        configure(eiger, nimages=3, ntrigger=1, frame_time=0.001)
        eiger.command("arm")
        eiger.command("trigger")
        assert eiger.status("dropped", "stream")["value"] == 3


class FailingSink(RecordingSink):
    def image(self, series: int, frame: int, timing: ImageTiming) -> bool:
        raise ConnectionError("the data network is down")


class HeaderFailingSink(RecordingSink):
    def start_series(self, config: SeriesConfig, series: int) -> None:
        raise ConnectionError("no route to the receiver")


@pytest.mark.allow_error_log
def test_a_header_that_cannot_be_sent_fails_the_arm() -> None:
    with running(HeaderFailingSink()) as simulator:
        eiger = DEiger(simulator.url)
        with pytest.raises(Refused) as refused:
            eiger.command("arm")
        assert refused.value.status == 500 and "no route to the receiver" in refused.value.body
        assert eiger.state() == "error"
        eiger.command("initialize")
        assert eiger.state() == "idle"


@pytest.mark.allow_error_log
def test_a_stream_fault_puts_the_detector_in_error_until_initialize() -> None:
    sink = FailingSink()
    with running(sink) as simulator:
        eiger = DEiger(simulator.url)
        configure(eiger, nimages=2, ntrigger=1, frame_time=0.001)
        series = eiger.command("arm")["sequence id"]
        eiger.command("trigger")
        assert eiger.state() == "error"
        assert any("data network is down" in e for e in eiger.status("error")["value"])
        assert eiger.status("state", "stream")["value"] == "error"
        assert sink.ended == [series]
        with pytest.raises(Refused) as refused:
            eiger.command("arm")
        assert "initialize it first" in refused.value.body
        eiger.command("initialize")
        assert eiger.state() == "idle" and eiger.status("error")["value"] == []


# ------------------------------------------------------ other real clients


def _adeiger_request(port: int, request: str) -> tuple[int, dict[str, str], bytes]:
    """As ADEiger's RestAPI: one send, select, then a single recv of at most 512 bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request.encode())
        assert select.select([conn], [], [], 5)[0]
        data = conn.recv(512)
    head, _, content = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, content


def test_adeiger_requests_get_whole_answers_in_one_read(
    simulator: EigerSimulator, eiger: DEiger, sink: RecordingSink
) -> None:
    get = (
        "GET /detector/api/1.8.0/config/{} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Length: 0\r\nAccept: application/json; charset=utf-8\r\n\r\n"
    )
    put = (
        "PUT /detector/api/1.8.0/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n"
        "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{}"
    )
    status, headers, content = _adeiger_request(
        simulator.port,
        "GET /detector/api/version HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
        "Accept: application/json; charset=utf-8\r\n\r\n",
    )
    assert status == 200 and json.loads(content)["value"] == "1.8.0"
    for key in ("trigger_mode", "count_time", "element"):
        status, headers, content = _adeiger_request(simulator.port, get.format(key))
        assert status == 200 and len(content) == int(headers["content-length"]), key
        assert json.loads(content)["value_type"] in VALUE_TYPES
    value = '{"value": 3}'
    status, _, content = _adeiger_request(
        simulator.port, put.format("config/ntrigger", len(value), value)
    )
    assert status == 200 and json.loads(content) == ["ntrigger"]
    eiger.set_config("trigger_mode", "inte")
    status, _, content = _adeiger_request(simulator.port, put.format("command/arm", 0, ""))
    assert status == 200 and "sequence id" in json.loads(content)
    value = '{"value": 0.005000}'
    status, _, _ = _adeiger_request(
        simulator.port, put.format("command/trigger", len(value), value)
    )
    assert status == 200
    status, _, _ = _adeiger_request(simulator.port, put.format("command/disarm", 0, ""))
    assert status == 200
    assert exposures(sink.images(sink.series[-1])) == [0.005]


def test_fastcs_eiger_commands_with_json_type_and_no_body(
    simulator: EigerSimulator, sink: RecordingSink
) -> None:
    headers = {"Content-Type": "application/json"}
    arm = requests.put(
        f"{simulator.url}/detector/api/1.8.0/command/arm", headers=headers, timeout=5
    )
    assert arm.status_code == 200 and arm.json() == {"sequence id": 1}
    disarm = requests.put(
        f"{simulator.url}/detector/api/1.8.0/command/disarm", headers=headers, timeout=5
    )
    assert disarm.status_code == 200 and sink.ended == [1]


def test_daq_sim_eiger_serves_until_interrupted(processes) -> None:
    port = free_port()
    proc = processes.start("daq-sim", "eiger", "--port", str(port))
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, processes.output(proc)
        try:
            return requests.get(f"{url}/detector/api/version/", timeout=1).ok
        except requests.ConnectionError:
            return False

    wait_until(answers, 20, "daq-sim eiger to serve")
    assert DEiger(url).state() == "na"
    processes.stop(proc)
    assert proc.returncode == 0, processes.output(proc)
    assert "SIMPLON 1.8.0 on" in processes.output(proc)


def test_daq_sim_eiger_says_why_it_cannot_start() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = subprocess.run(
            [str(VENV_BIN / "daq-sim"), "eiger", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr

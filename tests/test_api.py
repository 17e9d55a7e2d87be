"""The receiver's HTTP API as its clients see it: a real server on a free port, queried with httpx."""

from __future__ import annotations

import io
import json
import pickle
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import PIL.Image
import pytest
from prometheus_client.parser import text_string_to_metric_families

from http_service.server import HttpServiceError
from protocols import bslz4
from protocols.model import Image, ModuleLayout, ModulePlacement, StackedImage
from receiver import liveview
from receiver.api import ApiServer, ApiServerError, create_app
from receiver.status import (
    ConfigSummary,
    CurrentSeries,
    Rates,
    ReceiverStatus,
    State,
)
from receiver.stream_items import ModuleImage, ModuleParts
from tests import maxiv_client

pytestmark = pytest.mark.timeout(30)

FRAME = (np.arange(37 * 50, dtype=np.uint16).reshape(37, 50) * 13) % 60000
"""A frame whose shape no factor below divides, so every reduction has a ragged edge."""


def idle_status(state: State, frames_received: int) -> ReceiverStatus:
    """A receiver's status before any series, in ``state``."""
    series = CurrentSeries(
        filename="",
        path="",
        frames_written=0,
        frames_discarded=0,
        frames_rejected=0,
        missing_frames=[],
        messages_lost=0,
        malformed_messages=0,
        started=0.0,
        finished=0.0,
        missing_count=0,
        frames_received=frames_received,
    )
    return ReceiverStatus(
        state=state,
        error="",
        series_open=False,
        series_count=0,
        series=series,
        last_series=None,
        filename="",
        frames_received=frames_received,
        frames_written=0,
        frames_missing=0,
        rates=Rates(
            received_frames_per_s=0.0,
            received_mb_per_s=0.0,
            written_frames_per_s=0.0,
            written_mb_per_s=0.0,
        ),
        forwarder=None,
        unreadable_messages=0,
        modules=None,
        config=ConfigSummary(
            connect=["tcp://127.0.0.1:9999"],
            protocol="stins",
            workers=2,
            data_root="/data",
            write=True,
        ),
    )


class FakeReceiver:
    """A receiver reduced to what the API sees, with a frame the test chooses."""

    def __init__(self, image: Image | None = None) -> None:
        self.state = State.IDLE
        self.image = image
        self._downsample = 1

    def status_model(self) -> ReceiverStatus:
        return idle_status(self.state, self.received_frames)

    @property
    def received_frames(self) -> int:
        return 0 if self.image is None else self.image.frame + 1

    @property
    def downsample(self) -> int:
        return self._downsample

    @downsample.setter
    def downsample(self, value: int) -> None:
        self._downsample = value

    def last_frame(self) -> Image | None:
        return self.image

    def reset(self) -> None:
        self.state = State.IDLE

    def metrics(self) -> dict[str, float]:
        return {"frames_received_total": 7, "frame_rate_hz": 12.5, "writer lag": float("inf")}


def make_image(frame: np.ndarray, compression: str = "none") -> Image:
    data = bslz4.compress(frame) if compression == "bslz4" else frame.tobytes()
    fields = {
        "htype": "image",
        "msg_number": 5,
        "frame": 4,
        "shape": list(frame.shape),
        "type": frame.dtype.name,
        "compression": compression,
        "exposure_time": 0.1,
    }
    return Image(5, 4, frame.shape, frame.dtype, compression, data, fields=fields)


def reference_means(frame: np.ndarray, factor: int) -> np.ndarray:
    """Block means the slow, obvious way: one numpy mean per block, ragged edges included."""
    rows, cols = frame.shape
    return np.array(
        [
            [frame[r : r + factor, c : c + factor].mean() for c in range(0, cols, factor)]
            for r in range(0, rows, factor)
        ]
    )


def reference_downsample(frame: np.ndarray, factor: int) -> np.ndarray:
    """Block means, rounded for integer frames; each module of a stack alone."""
    if frame.ndim > 2:
        return np.stack([reference_downsample(module, factor) for module in frame])
    means = reference_means(frame, factor)
    if frame.dtype.kind in "iu":
        return np.rint(means).astype(frame.dtype)
    return means.astype(frame.dtype)


@pytest.fixture
def receiver() -> FakeReceiver:
    return FakeReceiver()


@pytest.fixture
def client(receiver: FakeReceiver) -> Iterator[httpx.Client]:
    with (
        ApiServer(create_app(receiver), "127.0.0.1", 0) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        yield client


@pytest.fixture(params=["none", "bslz4"])
def compression(request: pytest.FixtureRequest) -> str:
    return request.param


def frame_from_raw(header: dict[str, Any], raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=header["type"]).reshape(header["shape"])


def test_status_and_received_frames(client: httpx.Client, receiver: FakeReceiver) -> None:
    receiver.image = make_image(FRAME)

    status = client.get("/status").json()

    assert status == receiver.status_model().model_dump(mode="json")
    assert status["state"] == "idle"
    assert status["frames_received"] == status["series"]["frames_received"] == 5
    assert status["last_series"] is None
    assert client.get("/received_frames").json() == {"value": 5}


def test_status_schema_is_in_the_openapi_document(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()

    for path, method in (("/status", "get"), ("/reset", "post")):
        answer = schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        assert answer["schema"] == {"$ref": "#/components/schemas/ReceiverStatus"}
    models = schema["components"]["schemas"]
    status = models["ReceiverStatus"]
    assert set(status["required"]) == set(ReceiverStatus.model_fields)
    assert models["State"]["enum"] == ["idle", "running", "error"]
    assert status["properties"]["series"] == {"$ref": "#/components/schemas/CurrentSeries"}
    assert "frames_received" in models["CurrentSeries"]["properties"]
    assert {"ok", "error"} <= set(models["LastSeries"]["properties"])
    assert {"ForwarderStatus", "ModuleStatus", "Rates", "ConfigSummary"} <= set(models)
    assert "never arrived" in models["CurrentSeries"]["properties"]["missing_frames"]["description"]


def test_reset_leaves_the_error_state(client: httpx.Client, receiver: FakeReceiver) -> None:
    receiver.state = State.ERROR

    reply = client.post("/reset")

    assert reply.status_code == 200
    assert reply.json()["state"] == "idle"
    assert receiver.state is State.IDLE


def test_downsample_is_set_as_query_like_max_iv_clients(
    client: httpx.Client, receiver: FakeReceiver
) -> None:
    reply = client.post("/downsample", params={"value": 4})

    assert reply.json() == {"value": 4}
    assert receiver.downsample == 4
    assert client.get("/downsample").json() == {"value": 4}


def test_downsample_is_set_as_json_body(client: httpx.Client, receiver: FakeReceiver) -> None:
    reply = client.post("/downsample", json={"value": 3})

    assert reply.json() == {"value": 3}
    assert receiver.downsample == 3


@pytest.mark.parametrize(
    "request_args",
    [
        {"params": {"value": 0}},
        {"params": {"value": "abc"}},
        {"params": {"value": "2.5"}},
        {"json": {"value": 0}},
        {"json": {"value": "abc"}},
        {"json": {"factor": 2}},
        {},
        {"params": {"value": 2}, "json": {"value": 2}},
    ],
)
def test_bad_downsample_is_refused_with_422(
    client: httpx.Client, receiver: FakeReceiver, request_args: dict[str, Any]
) -> None:
    reply = client.post("/downsample", **request_args)

    assert reply.status_code == 422
    assert reply.json()["detail"][0]["msg"]
    assert receiver.downsample == 1


def test_missing_downsample_says_how_to_send_it(client: httpx.Client) -> None:
    message = client.post("/downsample").json()["detail"][0]["msg"]

    assert "?value=4" in message
    assert '{"value": 4}' in message


@pytest.mark.parametrize("query", [{}, {"format": "json"}, {"format": "png"}, {"format": "pickle"}])
def test_last_frame_before_any_frame_is_404(client: httpx.Client, query: dict[str, str]) -> None:
    reply = client.get("/last_frame", params=query)

    assert reply.status_code == 404
    assert reply.json() == {"detail": "no frame received yet"}


def test_last_frame_default_is_raw_bytes_with_header(
    client: httpx.Client, receiver: FakeReceiver, compression: str
) -> None:
    receiver.image = make_image(FRAME, compression)

    reply = client.get("/last_frame")

    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    header = json.loads(reply.headers["x-frame-header"])
    assert header["frame"] == 4
    assert header["shape"] == [37, 50]
    assert header["type"] == "uint16"
    assert header["compression"] == "none"
    assert header["exposure_time"] == 0.1
    np.testing.assert_array_equal(frame_from_raw(header, reply.content), FRAME)


def test_last_frame_is_downsampled_as_configured(
    client: httpx.Client, receiver: FakeReceiver, compression: str
) -> None:
    receiver.image = make_image(FRAME, compression)
    client.post("/downsample", params={"value": 4})

    reply = client.get("/last_frame")

    header = json.loads(reply.headers["x-frame-header"])
    assert header["shape"] == [10, 13]
    np.testing.assert_array_equal(
        frame_from_raw(header, reply.content), reference_downsample(FRAME, 4)
    )


def test_last_frame_json_is_the_header_only(client: httpx.Client, receiver: FakeReceiver) -> None:
    receiver.image = make_image(FRAME, "bslz4")
    receiver.downsample = 2

    reply = client.get("/last_frame", params={"format": "json"})

    assert reply.headers["content-type"] == "application/json"
    header = reply.json()
    assert header["htype"] == "image"
    assert header["shape"] == [19, 25]
    assert header["compression"] == "none"


@pytest.mark.parametrize(
    "request_args",
    [
        {"params": {"format": "png"}},
        {"headers": {"Accept": "image/avif,image/webp,image/png,*/*;q=0.8"}},
    ],
)
def test_last_frame_png_for_browsers(
    client: httpx.Client, receiver: FakeReceiver, compression: str, request_args: dict[str, Any]
) -> None:
    receiver.image = make_image(FRAME, compression)
    receiver.downsample = 4

    reply = client.get("/last_frame", **request_args)

    assert reply.headers["content-type"] == "image/png"
    assert reply.headers["cache-control"] == "no-store"
    picture = PIL.Image.open(io.BytesIO(reply.content))
    assert picture.mode == "L"
    assert picture.size == (13, 10)


class BuiltinsOnly(pickle.Unpickler):
    """Unpickles only builtins: what any client can load, whatever its numpy version."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the payload needs {module}.{name}")


def maxiv_parts(reply: httpx.Response) -> list[Any]:
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/pickle"
    parts: list[Any] = BuiltinsOnly(io.BytesIO(reply.content)).load()
    return parts


def test_last_frame_pickle_is_max_ivs_form_as_received(
    client: httpx.Client, receiver: FakeReceiver, compression: str
) -> None:
    receiver.image = make_image(FRAME, compression)

    header, blob = maxiv_parts(client.get("/last_frame", params={"format": "pickle"}))

    assert header == receiver.image.fields
    assert blob == bytes(receiver.image.data)
    np.testing.assert_array_equal(maxiv_client.decode([header, blob]), FRAME)


def test_max_iv_drop_in_mode_serves_pickle_by_default(compression: str) -> None:
    receiver = FakeReceiver(make_image(FRAME, compression))
    app = create_app(receiver, legacy_pickle_default=True)
    with ApiServer(app) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        legacy = client.get("/last_frame")
        raw = client.get("/last_frame", params={"format": "raw"})

    header, blob = maxiv_parts(legacy)
    assert header["compression"] == compression
    np.testing.assert_array_equal(maxiv_client.decode([header, blob]), FRAME)
    assert raw.headers["content-type"] == "application/octet-stream"


def test_max_iv_downsamples_only_uncompressed_uint16_frames_and_truncates(
    client: httpx.Client, receiver: FakeReceiver
) -> None:
    receiver.downsample = 4
    truncated = np.trunc(reference_means(FRAME, 4)).astype(np.uint16)
    receiver.image = make_image(FRAME)

    header, blob = maxiv_parts(client.get("/last_frame", params={"format": "pickle"}))

    assert header["shape"] == [10, 13]
    np.testing.assert_array_equal(frame_from_raw(header, blob), truncated)
    for other in (make_image(FRAME, "bslz4"), make_image(FRAME.astype(np.uint32))):
        receiver.image = other
        header, blob = maxiv_parts(client.get("/last_frame", params={"format": "pickle"}))
        assert header["shape"] == [37, 50]
        assert blob == bytes(other.data)


def test_max_iv_form_of_a_dectris_frame_is_the_header_max_iv_makes(
    client: httpx.Client, receiver: FakeReceiver
) -> None:
    frame = FRAME.astype(np.uint32)
    chunk = bslz4.compress(frame)
    fields = {"htype": "dimage-1.0", "series": 3, "frame": 4, "hash": "x", "start_time": 1}
    receiver.image = Image(5, 4, frame.shape, frame.dtype, "bslz4", chunk, fields=fields, series=3)

    header, blob = maxiv_parts(client.get("/last_frame", params={"format": "pickle"}))

    assert header == {
        "htype": "image",
        "msg_number": 5,
        "frame": 4,
        "shape": [37, 50],
        "type": "uint32",
        "compression": "bslz4",
    }
    assert blob == chunk
    np.testing.assert_array_equal(maxiv_client.decompress_lz4(blob, [37, 50], "uint32"), frame)


def test_max_iv_form_of_thresholds_is_one_blob_per_threshold(
    client: httpx.Client, receiver: FakeReceiver
) -> None:
    planes = [FRAME, FRAME[::-1].copy()]
    chunks = [bslz4.compress(plane) for plane in planes]
    receiver.image = StackedImage(
        5, 4, (2, 37, 50), FRAME.dtype, "bslz4", b"".join(chunks),
        fields={"series_id": 3, "image_id": 4}, chunk_sizes=tuple(map(len, chunks)),
    )  # fmt: skip

    header, *blobs = maxiv_parts(client.get("/last_frame", params={"format": "pickle"}))

    assert (header["shape"], header["chunks"]) == ([2, 37, 50], [1, 37, 50])
    assert blobs == chunks
    np.testing.assert_array_equal(maxiv_client.decode([header, *blobs]), np.stack(planes))


def test_max_iv_form_of_a_transformed_frame_describes_the_blob_sent(
    client: httpx.Client, receiver: FakeReceiver
) -> None:
    frame = FRAME.astype(np.int32)
    chunk = bslz4.compress(frame)
    fields = {"htype": "image", "msg_number": 5, "frame": 4, "shape": [50, 37]}
    fields |= {"type": "int32", "compression": "cbf"}
    receiver.image = Image(5, 4, frame.shape, frame.dtype, "bslz4", chunk, fields=fields)

    header, blob = maxiv_parts(client.get("/last_frame", params={"format": "pickle"}))

    assert (header["shape"], header["type"], header["compression"]) == ([37, 50], "int32", "bslz4")
    np.testing.assert_array_equal(maxiv_client.decode([header, blob]), frame)


def test_max_iv_form_of_a_module_frame_is_every_module_and_where_it_goes(
    client: httpx.Client, receiver: FakeReceiver
) -> None:
    m0, m1 = FRAME[:, :25].copy(), FRAME[:, 25:].copy()
    layout = ModuleLayout(
        modules=(
            ModulePlacement("m0", "tcp://dcu1:9010", x=0, y=0, rotation=0),
            ModulePlacement("m1", "tcp://dcu1:9011", x=0, y=37, rotation=3),
        ),
        full_shape=(62, 37),
        fill_value="max",
    )
    fields = {"htype": "image", "msg_number": 5, "frame": 4, "shape": [37, 25]}
    fields |= {"type": "uint16", "compression": "bslz4"}
    receiver.image = ModuleImage(
        5, 4, (2, 37, 25), FRAME.dtype, "bslz4", ModuleParts((bslz4.compress(m0), None)),  # type: ignore[arg-type]
        fields=fields, layout=layout,
    )  # fmt: skip

    header, *blobs = maxiv_parts(client.get("/last_frame", params={"format": "pickle"}))

    assert (header["shape"], header["chunks"]) == ([2, 37, 25], [1, 37, 25])
    assert (header["x"], header["y"], header["rotation"]) == ([0, 0], [0, 37], [0, 270])
    assert header["full_shape"] == [62, 37]
    stack = maxiv_client.decode([header, *blobs])
    np.testing.assert_array_equal(stack[0], m0)
    assert (stack[1] == np.iinfo(np.uint16).max).all()
    del m1


def test_unknown_frame_format_is_422(client: httpx.Client, receiver: FakeReceiver) -> None:
    receiver.image = make_image(FRAME)

    reply = client.get("/last_frame", params={"format": "tiff"})

    assert reply.status_code == 422


def test_undecodable_frame_says_why(client: httpx.Client, receiver: FakeReceiver) -> None:
    image = make_image(FRAME, "bslz4")
    image.data = bytes(image.data)[:100]
    receiver.image = image

    reply = client.get("/last_frame")

    assert reply.status_code == 500
    assert "frame 4" in reply.json()["detail"]


def test_metrics_in_prometheus_text(client: httpx.Client, receiver: FakeReceiver) -> None:
    receiver.state = State.RUNNING

    reply = client.get("/metrics")

    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {family.name: family for family in text_string_to_metric_families(reply.text)}
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families.values()
        for sample in family.samples
    }
    assert families["receiver_frames_received"].type == "counter"
    assert samples["receiver_frames_received_total", ()] == 7
    assert families["receiver_frame_rate_hz"].type == "gauge"
    assert samples["receiver_frame_rate_hz", ()] == 12.5
    assert samples["receiver_writer_lag", ()] == float("inf")
    assert families["receiver_state"].type == "gauge"
    assert samples["receiver_state", (("state", "running"),)] == 1
    assert samples["receiver_state", (("state", "idle"),)] == 0
    assert samples["receiver_state", (("state", "error"),)] == 0
    lines = reply.text.splitlines()
    assert "# TYPE receiver_frames_received_total counter" in lines
    assert "receiver_writer_lag +Inf" in lines


def test_each_app_has_its_own_metrics(receiver: FakeReceiver) -> None:
    other = FakeReceiver()
    other.state = State.ERROR
    with (
        ApiServer(create_app(receiver)) as first,
        ApiServer(create_app(other)) as second,
        httpx.Client(timeout=5) as client,
    ):
        one = client.get(f"{first.url}/metrics").text.splitlines()
        two = client.get(f"{second.url}/metrics").text.splitlines()

    assert 'receiver_state{state="idle"} 1.0' in one
    assert 'receiver_state{state="error"} 1.0' in two
    assert sum(line.startswith("receiver_frames_received_total") for line in one) == 1


def test_index_page_shows_status_and_live_png(client: httpx.Client) -> None:
    reply = client.get("/")

    assert reply.headers["content-type"].startswith("text/html")
    assert "<img" in reply.text
    assert "last_frame?format=png" in reply.text
    assert 'fetch("status"' in reply.text


def test_stop_releases_the_port(receiver: FakeReceiver) -> None:
    first = ApiServer(create_app(receiver))
    first.start()
    port = first.port
    first.stop()
    assert "receiver-api" not in [thread.name for thread in threading.enumerate()]

    with (
        ApiServer(create_app(receiver), port=port) as second,
        httpx.Client(base_url=second.url, timeout=5) as client,
    ):
        assert second.port == port
        assert client.get("/status").json()["state"] == "idle"


def test_server_leaves_signal_handling_to_the_host(receiver: FakeReceiver) -> None:
    before = signal.getsignal(signal.SIGINT)

    with ApiServer(create_app(receiver)):
        assert signal.getsignal(signal.SIGINT) is before


def test_busy_port_is_a_clear_error(receiver: FakeReceiver) -> None:
    with ApiServer(create_app(receiver)) as running:
        clash = ApiServer(create_app(receiver), port=running.port)
        with pytest.raises(ApiServerError, match="cannot listen") as refused:
            clash.start()
    assert isinstance(refused.value, HttpServiceError)
    assert "choose another api_port" in str(refused.value)


@pytest.mark.parametrize("shape", [(37, 50), (8, 8), (1, 5), (3, 2)])
@pytest.mark.parametrize("factor", [2, 3, 4, 7, 64])
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int32, np.float32])
def test_downsample_matches_block_means(
    shape: tuple[int, int], factor: int, dtype: type[np.generic]
) -> None:
    frame = np.random.default_rng(1).integers(0, 60000, size=shape).astype(dtype)

    reduced = liveview.downsample(frame, factor)

    assert reduced.dtype == frame.dtype
    np.testing.assert_allclose(reduced, reference_downsample(frame, factor), rtol=1e-6)


def test_downsample_keeps_saturated_pixels_without_overflow() -> None:
    frame = np.full((5, 5), np.iinfo(np.uint16).max, dtype=np.uint16)

    np.testing.assert_array_equal(liveview.downsample(frame, 2), np.full((3, 3), 65535))


def test_downsample_reduces_each_module_of_a_stack() -> None:
    stack = np.arange(2 * 9 * 11, dtype=np.uint32).reshape(2, 9, 11)

    reduced = liveview.downsample(stack, 4)

    assert reduced.shape == (2, 3, 3)
    np.testing.assert_array_equal(reduced, reference_downsample(stack, 4))


def test_downsample_by_one_is_the_frame_itself() -> None:
    assert liveview.downsample(FRAME, 1) is FRAME


def test_downsample_refuses_factor_below_one() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        liveview.downsample(FRAME, 0)


def test_png_contrast_ignores_eiger_gap_pixels() -> None:
    frame = np.tile(np.arange(100, dtype=np.uint32), (20, 1))
    frame[:, 40:50] = np.iinfo(np.uint32).max

    picture = np.asarray(PIL.Image.open(io.BytesIO(liveview.to_png(frame))))

    assert picture[0, 99] == 255
    assert picture[0, 0] == 0
    assert 100 < picture[0, 60] < 200
    assert (picture[:, 40:50] == 0).all()


def test_png_of_a_flat_frame() -> None:
    picture = PIL.Image.open(io.BytesIO(liveview.to_png(np.zeros((4, 6), dtype=np.float32))))

    assert picture.size == (6, 4)

"""The HTTP API refuses what it cannot serve: huge factors, huge bodies, other addresses.

Issue 23: ``POST /downsample?value=10**30`` was accepted and every
``/last_frame`` then failed with 500, and a 200 MB body was read whole
(105 -> 608 MB). A real server on a free port, clients as users have them
(httpx, raw sockets for what httpx will not send).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from protocols.model import Image, ModuleLayout, ModulePlacement
from receiver.api import MAX_BODY_BYTES, MAX_DOWNSAMPLE, ApiServer, ApiServerError, create_app
from receiver.status import ReceiverStatus
from receiver.stream_items import ModuleImage

pytestmark = pytest.mark.timeout(60)

FRAME = np.arange(37 * 50, dtype=np.uint16).reshape(37, 50)


class View:
    """What the API sees of a receiver: a factor and maybe a frame."""

    def __init__(self, image: Image | None = None) -> None:
        self.image = image
        self.downsample = 1

    def status_model(self) -> ReceiverStatus:
        raise NotImplementedError("these tests ask /received_frames for a live answer")

    @property
    def received_frames(self) -> int:
        return 7

    def last_frame(self) -> Image | None:
        return self.image

    def reset(self) -> None:
        pass

    def metrics(self) -> dict[str, float]:
        return {}


def frame_image(frame: np.ndarray = FRAME) -> Image:
    fields = {"htype": "image", "frame": 4, "shape": list(frame.shape), "type": "uint16"}
    return Image(5, 4, frame.shape, frame.dtype, "none", frame.tobytes(), fields=fields)


@pytest.fixture
def view() -> View:
    return View()


@pytest.fixture
def server(view: View) -> Iterator[ApiServer]:
    with ApiServer(create_app(view), "127.0.0.1", 0) as running:
        yield running


@pytest.fixture
def client(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


def reason(reply: httpx.Response) -> str:
    detail = reply.json()["detail"]
    return str(detail if isinstance(detail, str) else detail[0]["msg"])


# /downsample bounds


@pytest.mark.parametrize(
    "request_args",
    [
        {"params": {"value": 10**30}},
        {"params": {"value": MAX_DOWNSAMPLE + 1}},
        {"params": {"value": -1}},
        {"params": {"value": "9" * 5000}},
        {"json": {"value": 10**30}},
        {"json": {"value": MAX_DOWNSAMPLE + 1}},
    ],
)
def test_factor_out_of_range_is_422_with_the_bound(
    client: httpx.Client, view: View, request_args: dict[str, object]
) -> None:
    view.image = frame_image()

    reply = client.post("/downsample", **request_args)  # type: ignore[arg-type]

    assert reply.status_code == 422
    assert reason(reply)
    assert view.downsample == 1
    assert client.get("/last_frame").status_code == 200, "the live view keeps working"


def test_largest_factor_is_accepted_before_any_frame(client: httpx.Client, view: View) -> None:
    reply = client.post("/downsample", params={"value": MAX_DOWNSAMPLE})

    assert reply.status_code == 200
    assert view.downsample == MAX_DOWNSAMPLE
    message = reason(client.post("/downsample", params={"value": MAX_DOWNSAMPLE + 1}))
    assert str(MAX_DOWNSAMPLE) in message


def test_factor_larger_than_the_frame_is_refused_with_its_size(
    client: httpx.Client, view: View
) -> None:
    view.image = frame_image()

    reply = client.post("/downsample", json={"value": 51})

    assert reply.status_code == 422
    message = reason(reply)
    assert "37 x 50 pixels" in message
    assert "use at most 50" in message
    assert reply.json()["detail"][0]["loc"] == ["body", "value"]
    assert view.downsample == 1


def test_factor_up_to_the_frame_size_is_served(client: httpx.Client, view: View) -> None:
    view.image = frame_image()

    assert client.post("/downsample", params={"value": 50}).status_code == 200
    reply = client.get("/last_frame", params={"format": "json"})

    assert reply.status_code == 200
    assert reply.json()["shape"] == [1, 1]


def test_a_module_frame_is_measured_by_its_full_image(client: httpx.Client, view: View) -> None:
    """A Lambda's planes are 512 x 512, but the live view shows the 2048 x 2048 full image."""
    modules = tuple(ModulePlacement(f"m{k}", f"tcp://dcu:{k}", 0, 0, 0) for k in range(4))
    layout = ModuleLayout(modules, (2048, 2048), 0)
    view.image = ModuleImage(5, 4, (4, 512, 512), np.dtype("u2"), "none", b"", layout=layout)

    assert client.post("/downsample", params={"value": 1024}).status_code == 200
    assert "2048 x 2048" in reason(client.post("/downsample", params={"value": 2049}))


# request-body size limit


def raw_exchange(server: ApiServer, request: bytes, timeout: float = 10) -> bytes:
    """Send ``request`` and read until the server closes (it says Connection: close)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def post_head(extra: str) -> bytes:
    return (
        "POST /downsample HTTP/1.1\r\nHost: receiver\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_a_declared_200_mb_body_is_refused_before_a_byte_of_it_is_read(
    server: ApiServer, view: View
) -> None:
    """Only the headers are sent: the 413 comes without the server waiting for the body."""
    answer = raw_exchange(server, post_head("Content-Length: 200000000\r\n"))

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"connection: close" in head.lower()
    assert b"200000000 bytes declared" in body
    assert str(MAX_BODY_BYTES).encode() in body
    assert view.downsample == 1


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server: ApiServer) -> None:
    piece = b"x" * 16384
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(5))

    answer = raw_exchange(server, post_head("Transfer-Encoding: chunked\r\n") + chunks)

    assert answer.startswith(b"HTTP/1.1 413")
    assert f"more than {MAX_BODY_BYTES} bytes sent".encode() in answer


def test_a_client_streaming_200_mb_gets_413_having_sent_little(
    client: httpx.Client, view: View
) -> None:
    """The body is never read whole: the client is cut off after the first kilobytes."""
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(200 * 64):
            sent += 16384
            yield b" " * 16384

    try:
        reply = client.post(
            "/downsample", content=body(), headers={"content-type": "application/json"}
        )
    except httpx.TransportError:
        pass  # the server closed on a client still sending: a reset, not the answer
    else:
        assert reply.status_code == 413
        assert "request body too large" in reason(reply)
    assert sent < 16 * 1024**2, f"{sent} bytes went out before the refusal"
    assert view.downsample == 1
    assert client.get("/received_frames").json() == {"value": 7}


def test_a_body_at_the_limit_still_reaches_the_route(client: httpx.Client, view: View) -> None:
    document = b'{"value": 4}'
    padded = document + b" " * (MAX_BODY_BYTES - len(document))

    reply = client.post("/downsample", content=padded, headers={"content-type": "application/json"})

    assert reply.status_code == 200
    assert view.downsample == 4
    over = client.post(
        "/downsample", content=padded + b" ", headers={"content-type": "application/json"}
    )
    assert over.status_code == 413


def test_the_api_answers_while_a_client_holds_a_body_back(
    server: ApiServer, client: httpx.Client
) -> None:
    """A slow or stuck sender ties up its own connection only."""
    stuck = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        stuck.sendall(post_head("Content-Length: 1000\r\n") + b'{"value": ')
        started = time.monotonic()
        for _ in range(5):
            assert client.get("/received_frames").json() == {"value": 7}
        assert time.monotonic() - started < 5
    finally:
        stuck.close()


def test_many_refused_bodies_leave_the_api_responsive(server: ApiServer) -> None:
    def hammer() -> None:
        for _ in range(20):
            assert raw_exchange(server, post_head("Content-Length: 500000000\r\n")).startswith(
                b"HTTP/1.1 413"
            )

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    with httpx.Client(base_url=server.url, timeout=10) as other:
        assert other.get("/received_frames").status_code == 200
    for thread in threads:
        thread.join()


# the address it listens on


def test_the_api_listens_only_on_its_configured_address(view: View) -> None:
    """Bound to 127.0.0.2 (loopback too, on Linux), it is not reachable on 127.0.0.1."""
    try:
        server = ApiServer(create_app(view), "127.0.0.2", 0)
        server.start()
    except ApiServerError as exc:
        pytest.skip(f"127.0.0.2 is not usable here: {exc}")
    try:
        assert server.url.startswith("http://127.0.0.2:")
        assert httpx.get(f"{server.url}/received_frames", timeout=5).status_code == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    finally:
        server.stop()


def test_the_default_address_is_loopback(view: View) -> None:
    with ApiServer(create_app(view)) as server, socket.socket() as probe:
        assert server.url.startswith("http://127.0.0.1:")
        probe.settimeout(5)
        assert probe.connect_ex(("127.0.0.1", server.port)) == 0

"""The threaded uvicorn server both the receiver's API and the Eiger simulator serve with."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from http_service.server import HttpServiceError, ThreadedServer

pytestmark = pytest.mark.timeout(30)


def hello_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


def test_port_zero_is_the_real_port_and_it_serves_as_soon_as_start_returns() -> None:
    server = ThreadedServer(hello_app(), name="test-http")
    server.start()
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{server.url}/hello", timeout=5).json() == {"hello": "world"}
        assert "test-http" in [thread.name for thread in threading.enumerate()]
    finally:
        server.stop()


def test_stop_joins_the_thread_and_frees_the_port() -> None:
    with ThreadedServer(hello_app(), name="test-http") as server:
        port = server.port
    assert "test-http" not in [thread.name for thread in threading.enumerate()]
    with socket.create_server(("127.0.0.1", port)):
        pass
    server.stop()


def test_options_reach_uvicorn() -> None:
    with ThreadedServer(hello_app(), keep_alive_s=60, server_header=False) as server:
        reply = httpx.get(f"{server.url}/hello", timeout=5)
    assert "server" not in reply.headers


def test_busy_port_names_the_address_and_the_hint() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        server = ThreadedServer(hello_app(), port=port, busy_hint="set --port to a free one")
        with pytest.raises(HttpServiceError) as refused:
            server.start()
    message = str(refused.value)
    assert message.startswith(f"cannot listen on 127.0.0.1:{port} (Address already in use")
    assert message.endswith("); set --port to a free one")


@pytest.mark.allow_error_log
def test_a_server_that_cannot_start_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(config: uvicorn.Config) -> None:
        raise RuntimeError("no event loop for you")

    monkeypatch.setattr(uvicorn.Config, "load", broken)
    server = ThreadedServer(hello_app(), what="the test server", name="test-http")
    with pytest.raises(HttpServiceError, match=r"the test server on 127\.0\.0\.1:0 did not start"):
        server.start(timeout=5)
    with pytest.raises(HttpServiceError, match="no event loop for you"):
        server.start(timeout=5)
    assert "test-http" not in [thread.name for thread in threading.enumerate()]


def test_port_before_start_and_a_second_start_are_refused() -> None:
    server = ThreadedServer(hello_app(), what="the test server")
    with pytest.raises(HttpServiceError, match="the test server is not started"):
        _ = server.port
    with server, pytest.raises(HttpServiceError, match="already started"):
        server.start()


def test_subclasses_raise_their_own_error() -> None:
    class OwnError(HttpServiceError):
        pass

    class OwnServer(ThreadedServer):
        error = OwnError

    with pytest.raises(OwnError, match="not started"):
        _ = OwnServer(hello_app()).port

"""The device's links to its receiver: one typed status, whether embedded or over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from devices.acquisition import Acquisition, AcquisitionError, LoopState
from devices.backend import create_backend
from devices.receiver_link import ReceiverUnreachable, RemoteReceiver
from devices.settings import AcquisitionSettings
from http_service.server import ThreadedServer
from receiver.api import ApiServer, create_app
from receiver.status import ReceiverStatus, State
from tests.receiver_support import InProcessReceivers
from tooling.ports import free_port

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def answering() -> Iterator[Callable[[Callable[[], Response]], str]]:
    """Serves ``GET /status`` with what the test's function answers; gives the base URL."""
    servers: list[ThreadedServer] = []

    def serve(answer: Callable[[], Response]) -> str:
        app = FastAPI()
        app.get("/status")(answer)
        server = ThreadedServer(app, name="fake-receiver")
        server.start()
        servers.append(server)
        return server.url

    yield serve
    for server in servers:
        server.stop()


def json_answer(document: Any) -> Callable[[], Response]:
    return lambda: JSONResponse(document)


def test_remote_status_is_the_receivers_own_model(receivers: InProcessReceivers) -> None:
    receiver = receivers.start(connect=[f"tcp://127.0.0.1:{free_port()}"])
    with ApiServer(create_app(receiver)) as api:
        link = RemoteReceiver(api.url)
        try:
            remote = link.status()
        finally:
            link.close()

    assert isinstance(remote, ReceiverStatus)
    assert remote == receiver.status_model()
    assert remote.state is State.IDLE
    assert remote.last_series is None


def test_an_answer_that_is_not_json_names_the_receiver(
    answering: Callable[[Callable[[], Response]], str],
) -> None:
    url = answering(lambda: PlainTextResponse("EIGER says hello"))
    link = RemoteReceiver(url)

    with pytest.raises(ReceiverUnreachable) as refused:
        link.status()
    link.close()

    message = str(refused.value)
    assert message.startswith(f"receiver {url} answered GET /status with text/plain")
    assert "not JSON: 'EIGER says hello'" in message
    assert "Receiver property" in message


@pytest.mark.parametrize(
    ("document", "problems"),
    [
        ({"state": "idle"}, "error: Field required; series_open: Field required; "),
        ([1, 2], "the document: Input should be a valid dictionary"),
    ],
)
def test_a_status_that_does_not_fit_names_the_fields(
    answering: Callable[[Callable[[], Response]], str], document: Any, problems: str
) -> None:
    url = answering(json_answer(document))
    link = RemoteReceiver(url)

    with pytest.raises(ReceiverUnreachable) as refused:
        link.status()
    link.close()

    message = str(refused.value)
    assert message.startswith(f"receiver {url} answered GET /status with a status this device")
    assert problems in message


def test_a_wrong_value_in_a_nested_field_is_named(
    receivers: InProcessReceivers, answering: Callable[[Callable[[], Response]], str]
) -> None:
    receiver = receivers.start(connect=[f"tcp://127.0.0.1:{free_port()}"])
    document = receiver.status()
    document["state"] = "sleeping"
    document["series"]["frames_written"] = "many"
    url = answering(json_answer(document))
    link = RemoteReceiver(url)

    with pytest.raises(ReceiverUnreachable) as refused:
        link.status()
    link.close()

    assert "state: Input should be 'idle', 'running' or 'error'" in str(refused.value)
    assert "series.frames_written: Input should be a valid integer" in str(refused.value)


@pytest.mark.allow_error_log
def test_a_status_that_does_not_fit_is_fault_at_arm_with_the_reason(
    answering: Callable[[Callable[[], Response]], str],
) -> None:
    url = answering(json_answer({"state": "idle"}))
    backend = create_backend(
        "simulator",
        {"StreamAddress": "tcp://127.0.0.1:*", "TriggerInputAddress": "tcp://127.0.0.1:*"},
    )
    loop = Acquisition(backend, RemoteReceiver(url), 1, 1)
    try:
        with pytest.raises(AcquisitionError, match=f"receiver unreachable at Arm: receiver {url}"):
            loop.arm(AcquisitionSettings(filename="x.h5"))
        assert loop.state is LoopState.FAULT
        assert "series_count: Field required" in loop.status
    finally:
        loop.close()

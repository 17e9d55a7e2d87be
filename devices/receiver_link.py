"""How the device watches its receiver: in its own process, or another over HTTP.

Both links answer the receiver's own typed status (:class:`ReceiverStatus`,
the model its ``/status`` serves), so the device never knows which kind it
holds: the embedded link hands the receiver's object over, the remote one
parses the HTTP answer with the same model, so an answer that does not fit is
an error naming the receiver and the field, never a default read in its place.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import requests
from pydantic import ValidationError

from receiver import liveview
from receiver.api import ApiServer, create_app
from receiver.config import ConfigError, ReceiverConfig, load
from receiver.receiver import Receiver
from receiver.status import ReceiverStatus

HTTP_TIMEOUT_S = 2.0
PROBLEMS_SHOWN = 3


class ReceiverUnreachable(RuntimeError):
    """No usable answer from the receiver: none, an HTTP error, or a status that does not fit.

    The text says which receiver and what was wrong.
    """


class ReceiverLink(ABC):
    """What the device needs of a receiver."""

    description: str

    @abstractmethod
    def status(self) -> ReceiverStatus:
        """Raise :class:`ReceiverUnreachable` when the receiver gives no usable answer."""

    @abstractmethod
    def reset(self) -> None:
        """Leave the receiver's error state."""

    @abstractmethod
    def last_image(self) -> np.ndarray | None:
        """The latest frame, decoded and downsampled as the receiver is set; None before any."""

    @abstractmethod
    def close(self) -> None:
        """Stop the receiver if this link owns it."""


class EmbeddedReceiver(ReceiverLink):
    """A receiver started and owned by the device server, optionally with its HTTP API."""

    def __init__(self, config: ReceiverConfig, serve_http: bool) -> None:
        self._receiver = Receiver(config)
        self._receiver.start()
        self._api: ApiServer | None = None
        if serve_http:
            self._api = ApiServer(create_app(self._receiver), config.http_host, config.http_port)
            try:
                self._api.start()
            except Exception:
                self._receiver.stop()
                raise
        where = f", HTTP API {self._api.url}" if self._api else ""
        self.description = f"embedded receiver reading {', '.join(config.connect)}{where}"

    @property
    def url(self) -> str | None:
        return self._api.url if self._api else None

    def status(self) -> ReceiverStatus:
        return self._receiver.status_model()

    def reset(self) -> None:
        self._receiver.reset()

    def last_image(self) -> np.ndarray | None:
        image = self._receiver.last_frame()
        if image is None:
            return None
        return liveview.downsample(liveview.decode(image), self._receiver.downsample)

    def close(self) -> None:
        if self._api is not None:
            self._api.stop()
        self._receiver.stop()


class RemoteReceiver(ReceiverLink):
    """A ``stream-receiver`` process reached over its HTTP API at ``url``."""

    def __init__(self, url: str) -> None:
        self._url = url.rstrip("/")
        self._session = requests.Session()
        self.description = f"remote receiver {self._url}"

    def status(self) -> ReceiverStatus:
        response = _checked(self._send("GET", "/status"))
        try:
            document = response.json()
        except requests.JSONDecodeError:
            kind = response.headers.get("Content-Type") or "no content type"
            raise ReceiverUnreachable(
                f"receiver {self._url} answered GET /status with {kind}, not JSON: "
                f"{response.text[:200]!r}; is the Receiver property the URL of a "
                "stream-receiver's HTTP API?"
            ) from None
        try:
            return ReceiverStatus.model_validate(document)
        except ValidationError as exc:
            raise ReceiverUnreachable(
                f"receiver {self._url} answered GET /status with a status this device cannot "
                f"read ({_problems(exc)}); is it a stream-receiver of the same version?"
            ) from None

    def reset(self) -> None:
        _checked(self._send("POST", "/reset"))

    def last_image(self) -> np.ndarray | None:
        response = self._send("GET", "/last_frame", params={"format": "raw"})
        if response.status_code == 404:
            return None
        header = json.loads(_checked(response).headers["X-Frame-Header"])
        return np.frombuffer(response.content, dtype=header["type"]).reshape(header["shape"])

    def close(self) -> None:
        self._session.close()

    def _send(
        self, method: str, path: str, params: dict[str, str] | None = None
    ) -> requests.Response:
        try:
            return self._session.request(
                method, self._url + path, params=params, timeout=HTTP_TIMEOUT_S
            )
        except requests.RequestException as exc:
            raise ReceiverUnreachable(
                f"receiver {self._url} does not answer ({type(exc).__name__}): "
                "is stream-receiver running there? Check the Receiver property"
            ) from None


def _checked(response: requests.Response) -> requests.Response:
    if not response.ok:
        raise ReceiverUnreachable(
            f"receiver {response.url} answered HTTP {response.status_code}: {response.text[:200]}"
        )
    return response


def _problems(exc: ValidationError) -> str:
    """The first few validation errors as ``field.path: message``."""
    errors = exc.errors(include_url=False)
    shown = [
        f"{'.'.join(str(part) for part in error['loc']) or 'the document'}: {error['msg']}"
        for error in errors[:PROBLEMS_SHOWN]
    ]
    more = len(errors) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


PROPERTY_NAMES = {
    "connect": "StreamAddress",
    "data_root": "DataRoot",
    "detector_name": "DetectorName",
    "workers": "ReceiverWorkers",
    "http_port": "ReceiverHttpPort",
    "forward": "ReceiverForward",
    "transforms": "ReceiverTransforms",
    "config": "DataRoot",
}


def embedded_config(
    stream_endpoint: str,
    modules: Sequence[tuple[str, str]],
    protocol: str,
    transforms: list[dict[str, Any]],
    data_root: str,
    detector_name: str,
    workers: int,
    http_port: int,
    forward: str,
) -> ReceiverConfig:
    """The embedded receiver's configuration from the device properties.

    ``modules`` (name, endpoint) are a multi-module detector's streams, read
    instead of ``stream_endpoint``; their headers place them. Raises
    ``ConfigError`` naming the device property to fix.
    """
    settings: dict[str, Any] = {
        "connect": [stream_endpoint],
        "protocol": protocol,
        "transforms": transforms,
        "data_root": data_root,
        "detector_name": detector_name,
        "workers": workers,
        "http_port": max(http_port, 0),
        "forward": forward or None,
    }
    if modules:
        del settings["connect"]
        settings["modules"] = [{"name": name, "connect": endpoint} for name, endpoint in modules]
    try:
        return load(None, settings)
    except ConfigError as exc:
        message = str(exc)
        for field, prop in PROPERTY_NAMES.items():
            message = message.replace(f"{field}.0:", f"{prop}:").replace(f"{field}:", f"{prop}:")
        raise ConfigError(message) from None

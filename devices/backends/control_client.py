"""An HTTP JSON client for a streamer's control channel (lambda-streamer, camera-streamer).

Both channels answer every request with the streamer's status model and
refuse with ``{"detail": "<reason>"}``: HTTP 422 for settings the hardware
cannot take (bad input, the device stays ON), any other error for a
streamer that failed. This turns those answers into the backend's errors,
each saying which streamer and what to check.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import requests
from pydantic import BaseModel, ValidationError

from devices.backend import BackendError, SettingsRefused

HTTP_TIMEOUT_S = 3.0
UNPROCESSABLE = 422
"""The streamers' answer to settings the hardware refused (bad input, not a fault)."""

Status = TypeVar("Status", bound=BaseModel)


class ControlClient(Generic[Status]):
    """The control channel of the ``program`` at ``address``, answering ``status_model``."""

    def __init__(self, address: str, program: str, status_model: type[Status]) -> None:
        address = address.strip().rstrip("/")
        self.url = address if "://" in address else f"http://{address}"
        self._program = program
        self._model = status_model
        self._session = requests.Session()

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout: float = HTTP_TIMEOUT_S,
    ) -> Status:
        try:
            response = self._session.request(method, self.url + path, json=body, timeout=timeout)
        except requests.RequestException as exc:
            raise BackendError(
                f"the {self._program} at {self.url} does not answer ({type(exc).__name__}): "
                f"is {self._program} running there? (DetectorAddress)"
            ) from None
        if response.status_code == UNPROCESSABLE:
            raise SettingsRefused(_detail(response))
        if not response.ok:
            raise BackendError(f"{self._program} {self.url}: {_detail(response)}")
        try:
            return self._model.model_validate_json(response.content)
        except ValidationError as exc:
            raise BackendError(
                f"{self.url} answered {method} {path} with something that is not a "
                f"{self._program}'s status ({exc.error_count()} problems, first: "
                f"{exc.errors()[0]['msg']}); is DetectorAddress right?"
            ) from None

    def close(self) -> None:
        self._session.close()


def _detail(response: requests.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else f"HTTP {response.status_code}: {response.text[:200]}"

"""The XSpectrum Lambda backend: the DCUs' ``lambda-streamer`` control channels over HTTP.

A Lambda's modules are read on their DCUs (ForMAX: two DCUs, two modules
each), by one ``lambda-streamer`` per DCU (:mod:`streamers.lambda_`), which
holds the SDK. ``DetectorAddress`` lists the streamers' control addresses,
comma-separated (``dcu1:9020, dcu2:9020``). At Init the backend asks each
for its modules and their streams, so the device's embedded receiver reads
every module stream without further configuration; each module's header
places it in the full image.

=============== ============== ===========================================
TriggerMode     SDK trigger    frames
=============== ============== ===========================================
INTERNAL        software       nTriggers x nFramesPerTrigger at ExposureTime
EXTERNAL        ext_sequence   one trigger starts all of them
EXTERNAL_MULTI  ext_frames     one frame per trigger (nFramesPerTrigger 1)
=============== ============== ===========================================

A Lambda reads out while it counts, so its frames follow each other without
a gap: FrameTime must equal ExposureTime. It has no software trigger and no
gate input here. While a series runs, a watcher polls every streamer; a
stalled module, an SDK failure or a streamer that stops answering is ERROR
with the streamer's own words.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from devices.backend import (
    BackendError,
    BackendState,
    ModuleStream,
    SettingsRefused,
    parse_options,
)
from devices.backends.control_client import ControlClient
from devices.backends.watched import WatchedBackend
from devices.settings import AcquisitionSettings, TriggerMode
from protocols.lambda_control import ArmRequest, SdkTrigger, StreamerState, StreamerStatus

logger = logging.getLogger(__name__)

MODES = {
    TriggerMode.INTERNAL: SdkTrigger.SOFTWARE,
    TriggerMode.EXTERNAL: SdkTrigger.EXT_SEQUENCE,
    TriggerMode.EXTERNAL_MULTI: SdkTrigger.EXT_FRAMES,
}
STOP_TIMEOUT_S = 15.0
FRAME_TIME_TOLERANCE = 1e-6
ADDRESS_HINT = (
    " (DetectorAddress lists the lambda-streamers' control host:port, one per DCU, "
    "comma-separated, e.g. dcu1:9020, dcu2:9020)"
)


class LambdaOptions(BaseModel):
    """The device properties this backend reads."""

    model_config = ConfigDict(extra="ignore")

    detector_address: str = Field(alias="DetectorAddress", min_length=1)


class StreamerLink:
    """One DCU's streamer, over its HTTP control channel."""

    def __init__(self, address: str) -> None:
        self._client = ControlClient(address, "lambda-streamer", StreamerStatus)
        self.url = self._client.url

    def status(self) -> StreamerStatus:
        return self._client.call("GET", "/status")

    def arm(self, request: ArmRequest) -> StreamerStatus:
        try:
            return self._client.call("POST", "/arm", request.model_dump(mode="json"))
        except SettingsRefused as exc:
            raise SettingsRefused(f"the Lambda SDK refused: {exc}") from None

    def stop(self) -> StreamerStatus:
        return self._client.call("POST", "/stop", timeout=STOP_TIMEOUT_S)

    def close(self) -> None:
        self._client.close()


class LambdaBackend(WatchedBackend):
    name = "lambda"
    trigger_modes = frozenset(MODES)

    def __init__(self, links: list[StreamerLink]) -> None:
        super().__init__()
        self._links = links
        modules: list[ModuleStream] = []
        for link in links:
            status = link.status()
            if not status.modules:
                status = link.stop()  # a streamer whose SDK refused to open tries again
            if not status.modules:
                raise BackendError(
                    f"lambda-streamer {link.url}: {status.error or 'it serves no module'}"
                )
            host = link.url.split("://", 1)[1].rsplit(":", 1)[0]
            modules += [
                ModuleStream(module.id, _reachable(module.endpoint, host))
                for module in status.modules
            ]
        names = [module.name for module in modules]
        if len(set(names)) != len(names):
            raise BackendError(
                f"the streamers serve modules named {names}: a module is served twice, or two "
                "DCUs' system files give the same module id"
            )
        self._modules = tuple(modules)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        opts = parse_options(LambdaOptions, options, "lambda", ADDRESS_HINT)
        addresses = [a for a in opts.detector_address.replace(" ", ",").split(",") if a]
        links = [StreamerLink(address) for address in addresses]
        try:
            return cls(links)
        except BackendError:
            for link in links:
                link.close()
            raise

    @property
    def stream_endpoint(self) -> str:
        return ", ".join(module.endpoint for module in self._modules)

    @property
    def stream_modules(self) -> tuple[ModuleStream, ...]:
        return self._modules

    def arm(self, settings: AcquisitionSettings) -> None:
        trigger = MODES.get(settings.trigger_mode)
        if trigger is None:
            raise SettingsRefused(
                f"a Lambda has no trigger mode {settings.trigger_mode.name}: use "
                f"{', '.join(mode.name for mode in MODES)}"
            )
        if trigger is SdkTrigger.EXT_FRAMES and settings.frames_per_trigger != 1:
            raise SettingsRefused(
                "a Lambda takes one frame per trigger in EXTERNAL_MULTI: set nFramesPerTrigger "
                "to 1 and nTriggers to the number of triggers (or use EXTERNAL: one trigger, "
                "all frames)"
            )
        if trigger is not SdkTrigger.EXT_FRAMES and abs(
            settings.frame_time - settings.exposure_time
        ) > FRAME_TIME_TOLERANCE * max(settings.exposure_time, 1.0):
            raise SettingsRefused(
                f"a Lambda reads out while it counts, so its frames follow without a gap: set "
                f"FrameTime equal to ExposureTime ({settings.exposure_time:g} s), or "
                f"ExposureTime to FrameTime ({settings.frame_time:g} s)"
            )
        if self._state is BackendState.ARMED and not self._look():
            raise BackendError("already armed: stop the series first")
        self._end_watcher()
        request = ArmRequest(
            frames=settings.total_frames,
            shutter_time=settings.exposure_time,
            trigger=trigger,
            filename=settings.filename,
        )
        armed: list[StreamerLink] = []
        for link in self._links:
            try:
                link.arm(request)
            except BackendError:
                for other in armed:
                    self._stop_quietly(other)
                raise
            armed.append(link)
        self._armed()
        logger.info("lambda: %d frames armed on %d streamer(s)", request.frames, len(armed))

    def trigger(self) -> None:
        raise BackendError(
            "a Lambda has no software trigger: use TriggerMode INTERNAL, EXTERNAL or EXTERNAL_MULTI"
        )

    def stop(self) -> None:
        """Stop every streamer (each answers once its modules' series ends are sent).

        As for the other backends, a stop also leaves ERROR once the streamers
        answer without one (MAX IV clients call Stop before every scan).
        """
        self._end_watcher()
        problems = []
        for link in self._links:
            try:
                status = link.stop()
            except BackendError as exc:
                problems.append(str(exc))
                continue
            if status.state is not StreamerState.IDLE:
                problems.append(f"lambda-streamer {link.url} did not stop: {status.error}")
        self._stopped(problems)

    def close(self) -> None:
        self.stop()
        for link in self._links:
            link.close()

    def _look(self) -> bool:
        """One look at every streamer; True once the series is over (done or failed)."""
        states = []
        for link in self._links:
            try:
                status = link.status()
            except BackendError as exc:
                self._fail(f"lost a lambda-streamer during the series: {exc}")
                return True
            if status.state is StreamerState.ERROR:
                self._fail(f"lambda-streamer {link.url}: {status.error}")
                return True
            states.append(status.state)
        if not all(state is StreamerState.IDLE for state in states):
            return False
        self._done_with_series()
        return True

    @staticmethod
    def _stop_quietly(link: StreamerLink) -> None:
        try:
            link.stop()
        except BackendError as exc:
            logger.warning("lambda: %s", exc)


def _reachable(endpoint: str, host: str) -> str:
    """A module's bound endpoint as the receiver reaches it: a wildcard host is the DCU's."""
    scheme, _, rest = endpoint.partition("://")
    bound, _, port = rest.rpartition(":")
    if bound in ("*", "0.0.0.0", "[::]", "::"):
        return f"{scheme}://{host}:{port}"
    return endpoint

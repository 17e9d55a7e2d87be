"""The sCMOS camera backends: ``andor`` (Zyla, Balor) and ``hamamatsu`` (ORCA).

Both drive a camera-streamer (:mod:`streamers.camera_stream`), one code
path for both SDKs. ``DetectorAddress`` says where it runs:

- ``embedded`` (the default): in this device server's process, which then
  runs on the camera's machine, as MAX IV runs its camera devices; the SDK
  library is ``SdkLibrary`` (empty: the SDK's environment variable, then its
  usual place) and the stream binds ``StreamAddress``;
- ``host:port``: a ``camera-streamer`` process there, over its HTTP control
  channel (the device server may then run anywhere); ``StreamAddress`` is
  where the receiver reads that streamer's stream.

=============== ================ ==========================================
TriggerMode     camera trigger   frames
=============== ================ ==========================================
INTERNAL        internal         nTriggers x nFramesPerTrigger at FrameTime
SOFTWARE        software         each SoftwareTrigger: nFramesPerTrigger frames
EXTERNAL        external_start   one trigger starts all of them at FrameTime
EXTERNAL_MULTI  external         one frame per trigger (nFramesPerTrigger 1)
GATE            gate             one frame per gate, exposed for its width
=============== ================ ==========================================

A mode the camera lacks is not offered. Exposure and frame time are
checked by the camera itself at Arm: a refusal names the camera's own
limits and leaves the device ON, as does a ``RegionOfInterest`` (column, row,
width, height on the sensor; empty: the whole sensor) the camera cannot
read. ``PixelEncoding`` Mono12p (an ORCA's 12-bit packed pixels) or
Mono12Packed (an Andor's) makes the receiver unpack them (its ``mono12p`` or
``mono12packed`` transform).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field

from devices.backend import BackendError, BackendState, SettingsRefused, parse_options
from devices.backends.control_client import ControlClient
from devices.backends.watched import WatchedBackend
from devices.settings import AcquisitionSettings, TriggerMode
from protocols.camera_control import CameraArm, CameraState, CameraStatus, CameraTrigger
from streamers.camera_adapter import CameraError, CameraRefused
from streamers.camera_stream import CameraStreamer, StreamerBusy
from streamers.cameras import open_adapter

MODES = {
    TriggerMode.INTERNAL: CameraTrigger.INTERNAL,
    TriggerMode.SOFTWARE: CameraTrigger.SOFTWARE,
    TriggerMode.EXTERNAL: CameraTrigger.EXTERNAL_START,
    TriggerMode.EXTERNAL_MULTI: CameraTrigger.EXTERNAL,
    TriggerMode.GATE: CameraTrigger.GATE,
}
EMBEDDED = "embedded"
STOP_TIMEOUT_S = 15.0


class CameraOptions(BaseModel):
    """The device properties these backends read."""

    model_config = ConfigDict(extra="ignore")

    detector_address: str = Field(EMBEDDED, alias="DetectorAddress")
    stream_address: str = Field("tcp://127.0.0.1:9999", alias="StreamAddress")
    sdk_library: str = Field("", alias="SdkLibrary")
    pixel_encoding: str = Field("Mono16", alias="PixelEncoding")
    region: tuple[int, int, int, int] | None = Field(None, alias="RegionOfInterest")


class CameraControl(Protocol):
    """A camera-streamer, in this process or reached over HTTP."""

    def status(self) -> CameraStatus: ...
    def arm(self, arm: CameraArm) -> CameraStatus: ...
    def trigger(self) -> CameraStatus: ...
    def stop(self) -> CameraStatus: ...
    def close(self) -> None: ...


class LocalControl:
    """The streamer in this process: its errors become the backend's."""

    def __init__(self, streamer: CameraStreamer) -> None:
        self._streamer = streamer

    def status(self) -> CameraStatus:
        return self._streamer.status()

    def arm(self, arm: CameraArm) -> CameraStatus:
        try:
            return self._streamer.arm(arm)
        except CameraRefused as exc:
            raise SettingsRefused(str(exc)) from None
        except (CameraError, StreamerBusy) as exc:
            raise BackendError(str(exc)) from None

    def trigger(self) -> CameraStatus:
        try:
            return self._streamer.trigger()
        except (CameraError, StreamerBusy) as exc:
            raise BackendError(str(exc)) from None

    def stop(self) -> CameraStatus:
        return self._streamer.stop()

    def close(self) -> None:
        self._streamer.close()


class RemoteControl:
    """A camera-streamer process over its HTTP control channel."""

    def __init__(self, address: str) -> None:
        self._client = ControlClient(address, "camera-streamer", CameraStatus)

    def status(self) -> CameraStatus:
        return self._client.call("GET", "/status")

    def arm(self, arm: CameraArm) -> CameraStatus:
        return self._client.call("POST", "/arm", arm.model_dump(mode="json"))

    def trigger(self) -> CameraStatus:
        return self._client.call("POST", "/trigger")

    def stop(self) -> CameraStatus:
        return self._client.call("POST", "/stop", timeout=STOP_TIMEOUT_S)

    def close(self) -> None:
        self._client.close()


class CameraBackend(WatchedBackend):
    """What the two camera backends share; a subclass names its SDK."""

    sdk: str

    def __init__(
        self,
        control: CameraControl,
        stream_endpoint: str,
        region: tuple[int, int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self._control = control
        self._stream_endpoint = stream_endpoint
        self._region = region
        status = control.status()
        self.camera = f"{status.model} {status.serial}"
        self.trigger_modes = frozenset(m for m, t in MODES.items() if t in status.triggers)
        if status.wire_format in ("mono12p", "mono12packed"):
            self.stream_transforms = ({"kind": status.wire_format},)
        self._per_trigger = 1

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        opts = parse_options(CameraOptions, options, cls.name)
        control: CameraControl
        if opts.detector_address.strip().lower() == EMBEDDED:
            try:
                adapter = open_adapter(cls.sdk, opts.sdk_library, 0, opts.pixel_encoding)
            except CameraError as exc:
                raise BackendError(f"{cls.name}: {exc} (SdkLibrary, PixelEncoding)") from None
            try:
                streamer = CameraStreamer(adapter, opts.stream_address)
            except OSError as exc:
                adapter.close()
                raise BackendError(f"{exc} (StreamAddress)") from None
            control, endpoint = LocalControl(streamer), streamer.endpoint
        else:
            control, endpoint = RemoteControl(opts.detector_address), opts.stream_address
        try:
            return cls(control, endpoint, opts.region)
        except BackendError:
            control.close()
            raise

    @property
    def stream_endpoint(self) -> str:
        return self._stream_endpoint

    def arm(self, settings: AcquisitionSettings) -> None:
        trigger = MODES[settings.trigger_mode]
        if settings.trigger_mode is TriggerMode.EXTERNAL_MULTI and settings.frames_per_trigger != 1:
            raise SettingsRefused(
                "a camera takes one frame per trigger in EXTERNAL_MULTI: set nFramesPerTrigger "
                "to 1 and nTriggers to the number of triggers (or use EXTERNAL: one trigger, "
                "all frames)"
            )
        if self._state is BackendState.ARMED and not self._look():
            raise BackendError("already armed: stop the series first")
        self._end_watcher()
        self._control.arm(
            CameraArm(
                frames=settings.total_frames,
                exposure_time=settings.exposure_time,
                frame_time=settings.frame_time,
                trigger=trigger,
                filename=settings.filename,
                aoi=self._region,
            )
        )
        self._per_trigger = settings.frames_per_trigger
        self._armed()

    def trigger(self) -> None:
        """One SoftwareTrigger: nFramesPerTrigger frames, one camera trigger each."""
        for _ in range(self._per_trigger):
            self._control.trigger()

    def stop(self) -> None:
        """End the series; also leaves ERROR once the streamer answers without one."""
        self._end_watcher()
        try:
            status = self._control.stop()
        except BackendError as exc:
            self._fail(str(exc))
            return
        problems = (
            []
            if status.state is CameraState.IDLE
            else [f"the camera-streamer did not stop: {status.error}"]
        )
        self._stopped(problems)

    def close(self) -> None:
        self.stop()
        self._control.close()

    def _look(self) -> bool:
        """One look at the streamer; True once the series is over (done or failed)."""
        try:
            status = self._control.status()
        except BackendError as exc:
            self._fail(f"lost the camera-streamer during the series: {exc}")
            return True
        if status.state is CameraState.ERROR:
            self._fail(f"{self.camera}: {status.error}")
            return True
        if status.state is CameraState.ARMED:
            return False
        self._done_with_series()
        return True


class AndorBackend(CameraBackend):
    name = "andor"
    sdk = "andor"
    trigger_modes = frozenset(MODES)


class HamamatsuBackend(CameraBackend):
    name = "hamamatsu"
    sdk = "dcam"
    trigger_modes = frozenset(MODES)

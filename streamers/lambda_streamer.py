"""The streamer of one Lambda DCU: its SDK system, one stream per module, arm and stop.

At ForMAX two DCUs serve two modules each; each runs one ``lambda-streamer``
(:mod:`streamers.lambda_`), which holds this object. It turns the control
channel's requests (:mod:`protocols.lambda_control`) into SDK calls and
reports what the module streams do; everything the SDK says is passed on in
its own words.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import zmq

from protocols.lambda_control import (
    ArmRequest,
    ModuleState,
    SdkTrigger,
    StreamerState,
    StreamerStatus,
)
from streamers.lambda_module import ModuleStream, Progress
from streamers.lambda_sdk.binding import (
    LambdaSdkError,
    LambdaSystem,
    LibraryNotFound,
    TriggerMode,
)

logger = logging.getLogger(__name__)

SDK_TRIGGER = {
    SdkTrigger.SOFTWARE: TriggerMode.SOFTWARE,
    SdkTrigger.EXT_SEQUENCE: TriggerMode.EXT_SEQUENCE,
    SdkTrigger.EXT_FRAMES: TriggerMode.EXT_FRAMES,
}
STOP_TIMEOUT_S = 10.0


class StreamerBusy(RuntimeError):
    """A series is running: stop it first."""


class ArmRefused(RuntimeError):
    """The SDK refused the settings or the start; the text is its own."""


def module_endpoint(base: str, index: int) -> str:
    """Module ``index``'s endpoint: ``tcp://host:P`` gives port P + index (MAX IV: 9010..9013).

    ``tcp://host:*`` lets the system choose a free port for every module.
    """
    head, colon, port = base.rpartition(":")
    if base.startswith("tcp://") and colon and port.isdigit():
        return f"{head}:{int(port) + index}"
    if base.startswith("tcp://") and port == "*":
        return base
    raise ValueError(
        f"--stream {base!r}: give tcp://HOST:PORT (module i binds PORT + i) or tcp://HOST:*"
    )


class LambdaStreamer:
    """The DCU's SDK system and its module streams; arm and stop from any thread.

    A system the SDK cannot open (a module unreachable, the detector off) is
    not the end of the streamer: it reports the SDK's text in its status and
    tries again at the next arm or stop, so the backend shows the vendor's
    reason and recovers once the cause is gone. A library that is not one
    (``LibraryNotFound``) is a mistake of the command line and raised.
    """

    def __init__(
        self,
        library: str | Path,
        system_file: str | Path,
        stream: str,
        stall_timeout_s: float = 5.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._library = library
        self._system_file = system_file
        self._stream = stream
        self._stall_timeout_s = stall_timeout_s
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._on_change = on_change
        self._lock = threading.Lock()
        self._system: LambdaSystem | None = None
        self._open_error = ""
        self._series = 0
        self._frames = 0
        self._error = ""
        self.modules: list[ModuleStream] = []
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> bool:
        """Open the SDK's system and bind every module's stream; False when the SDK refused."""
        if self._system is not None:
            return True
        try:
            system = LambdaSystem(self._library, self._system_file)
        except LibraryNotFound:
            raise
        except LambdaSdkError as exc:
            self._open_error = f"the SDK cannot open the system {self._system_file}: {exc}"
            logger.error("%s", self._open_error)
            return False
        modules: list[ModuleStream] = []
        try:
            for position, described in enumerate(system.modules):
                endpoint = module_endpoint(self._stream, described.index)
                modules.append(
                    ModuleStream(
                        system,
                        position,
                        system.info,
                        self._context,
                        endpoint,
                        self._stall_timeout_s,
                        self._on_change,
                    )
                )
        except BaseException:
            for module in modules:
                module.close()
            system.close()
            raise
        self._system, self.modules, self._open_error = system, modules, ""
        for module in modules:
            logger.info(
                "module %s (index %d): %s", module.info.id, module.info.index, module.endpoint
            )
        return True

    def status(self) -> StreamerStatus:
        modules = [module.status() for module in self.modules]
        problems = [
            m.error for m in modules if m.state in (ModuleState.FAILED, ModuleState.STALLED)
        ]
        with self._lock:
            error = self._open_error or self._error or (problems[0] if problems else "")
            series, frames = self._series, self._frames
        if error:
            state = StreamerState.ERROR
        elif any(m.state is not ModuleState.IDLE for m in modules):
            state = StreamerState.ARMED
        else:
            state = StreamerState.IDLE
        system = self._system
        return StreamerStatus(
            system=system.info.id if system else "",
            sdk_version=system.version if system else "",
            state=state,
            error=error,
            series=series,
            frames=frames,
            modules=modules,
        )

    def arm(self, request: ArmRequest) -> StreamerStatus:
        """Set the SDK up, start it and the module streams; raise StreamerBusy or ArmRefused."""
        with self._lock:
            if any(module.running for module in self.modules):
                raise StreamerBusy("a series is running: stop it first (POST /stop)")
            if not self._open():
                raise ArmRefused(self._open_error)
            assert self._system is not None
            try:
                self._system.set_trigger_mode(SDK_TRIGGER[request.trigger])
                self._system.set_frame_count(request.frames)
                self._system.set_shutter_time(request.shutter_time)
                self._system.start()
            except LambdaSdkError as exc:
                raise ArmRefused(str(exc)) from None
            self._series += 1
            self._frames = request.frames
            self._error = ""
            progress = Progress()
            for module in self.modules:
                module.start(request, progress)
        logger.info(
            "series %d: %d frames, shutter %g s, trigger %s, file %r",
            self._series,
            request.frames,
            request.shutter_time,
            request.trigger.value,
            request.filename,
        )
        self._on_change()
        return self.status()

    def stop(self) -> StreamerStatus:
        """Stop the SDK; return once every module stream has sent its series end.

        Without a system (the SDK refused to open it) this tries to open it again.
        """
        if self._system is None:
            with self._lock:
                self._open()
            self._on_change()
            return self.status()
        try:
            self._system.stop()
        except LambdaSdkError as exc:
            with self._lock:
                self._error = f"the SDK refused to stop: {exc}"
        for module in self.modules:
            module.stop()
        late = [m.info.id for m in self.modules if not m.join(STOP_TIMEOUT_S)]
        with self._lock:
            if late:
                self._error = (
                    f"module(s) {', '.join(late)} still sending {STOP_TIMEOUT_S:g} s after "
                    "stop: is the receiver taking their streams?"
                )
            elif not any(module.running for module in self.modules):
                self._error = ""
                for module in self.modules:
                    module.clear_error()
        self._on_change()
        return self.status()

    def close(self) -> None:
        for module in self.modules:
            module.close()
        self._context.term()
        if self._system is not None:
            self._system.close()

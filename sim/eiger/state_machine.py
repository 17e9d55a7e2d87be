"""The simulated detector's SIMPLON states: which one it is in, and what that allows.

States as SIMPLON 1.8 reports them: ``na`` until ``initialize``; ``idle``;
``configure`` while ``arm`` sends the series header; ``ready`` while armed and
waiting for a trigger; ``acquire`` while images are taken; ``error`` after a
stream fault, until ``initialize``. Settings that change the detector and
``arm`` need ``idle``; a refusal names what to do first.
"""

from __future__ import annotations

from enum import StrEnum

from sim.eiger.simplon import SimplonError


class State(StrEnum):
    NA = "na"
    INITIALIZE = "initialize"
    IDLE = "idle"
    CONFIGURE = "configure"
    READY = "ready"
    ACQUIRE = "acquire"
    ERROR = "error"


class Stop(StrEnum):
    """How a series is ended early."""

    DISARM = "disarm"
    CANCEL = "cancel"
    ABORT = "abort"


NOT_IDLE = {
    State.NA: "the detector is not initialized: send the initialize command first",
    State.INITIALIZE: "the detector is initializing",
    State.CONFIGURE: "the detector is arming",
    State.READY: "the detector is armed: disarm it first",
    State.ACQUIRE: "the detector is acquiring: disarm or abort first",
    State.ERROR: "the detector is in error: initialize it first",
}
"""Why a command or setting that needs state ``idle`` is refused."""


class StateMachine:
    """The state, the detector's error list, whether it is closing; guarded by the detector's lock.

    Transitions that another one may have overtaken (an abort during arm, an
    initialize while a series ends) happen only from the state they leave.
    """

    def __init__(self, initialized: bool) -> None:
        self.state = State.IDLE if initialized else State.NA
        self.errors: list[str] = []
        self.closed = False

    def require_idle(self, command: str) -> None:
        if self.closed:
            raise SimplonError(503, "the detector is shutting down")
        if self.state in NOT_IDLE:
            raise SimplonError(400, f"{command} refused: {NOT_IDLE[self.state]}")

    def refuse_change(self, key: str) -> None:
        """A detector setting may change only while ``idle``."""
        if self.state in NOT_IDLE:
            raise SimplonError(400, f"cannot change {key}: {NOT_IDLE[self.state]}")

    def require_initialized(self, command: str) -> None:
        if self.state is State.NA:
            raise SimplonError(
                400, f"{command} refused: the detector is not initialized: send initialize first"
            )

    def initializing(self) -> None:
        self.state = State.INITIALIZE
        self.errors.clear()

    def initialized(self) -> None:
        if self.state is State.INITIALIZE:
            self.state = State.IDLE

    def arming(self) -> None:
        self.state = State.CONFIGURE

    def armed(self) -> None:
        if self.state is State.CONFIGURE:
            self.state = State.READY

    def acquiring(self) -> None:
        self.state = State.ACQUIRE

    def waiting_for_trigger(self) -> None:
        self.state = State.READY

    def series_ended(self) -> None:
        if self.state in (State.READY, State.ACQUIRE):
            self.state = State.IDLE

    def fail(self, reason: str) -> None:
        self.state = State.ERROR
        self.errors.append(reason)

"""Threads of the receiver whose unexpected end reaches the state machine, never a log alone.

A worker, the collector, the forwarder or the writer that dies of an
exception nobody foresaw would leave a receiver that says ``running`` while
nothing moves. Each runs its loop through :class:`ReportedThread`, which
turns such an exception into the receiver's ``error`` state with the reason
(the frames already stored stay in the file, which the writer flushes and
closes as usual when it can).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class ReportedThread(threading.Thread):
    """A daemon thread running ``loop`` (default: :meth:`work`); an exception ends it
    through ``on_failure``."""

    def __init__(
        self,
        name: str,
        on_failure: Callable[[str], None],
        loop: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._on_failure = on_failure
        self._loop = loop or self.work

    def run(self) -> None:
        try:
            self._loop()
        except Exception as exc:
            logger.exception("the %s thread stopped", self.name)
            self._on_failure(crash_reason(self.name, exc))

    def work(self) -> None:
        """The thread's loop."""
        raise NotImplementedError


def crash_reason(where: str, exc: BaseException) -> str:
    """What a user reads when a part of the receiver failed in a way nobody foresaw."""
    return (
        f"internal error in the {where} thread ({type(exc).__name__}: {exc}); it stopped, "
        "frames already stored stay in the file: restart the receiver and report this"
    )

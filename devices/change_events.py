"""Change events pushed from a thread of their own.

Tango serialises a device's commands and its event pushes on one monitor.
The acquisition's watcher thread notices changes while a command such as
Stop may hold that monitor and wait for the watcher, so pushing from the
watcher would deadlock; the watcher only signals here and this thread
pushes once the monitor is free.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tango import EnsureOmniThread

logger = logging.getLogger(__name__)


class ChangeEvents(threading.Thread):
    """Calls ``push`` after every :meth:`signal`, coalescing signals that arrive meanwhile."""

    def __init__(self, push: Callable[[], None]) -> None:
        super().__init__(name="change-events", daemon=True)
        self._push = push
        self._pending = threading.Event()
        self._stopping = False

    def signal(self) -> None:
        self._pending.set()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop after the push in progress; ``timeout`` bounds the wait, as that push may itself
        wait for the monitor the caller holds."""
        self._stopping = True
        self._pending.set()
        self.join(timeout)

    def run(self) -> None:
        with EnsureOmniThread():
            while True:
                self._pending.wait()
                self._pending.clear()
                if self._stopping:
                    return
                try:
                    self._push()
                except Exception:
                    logger.exception("pushing change events failed")

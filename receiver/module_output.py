"""The module matcher's output: joined messages in order, each problem in its series.

Everything the matching finds wrong becomes a :class:`~receiver.stream_items.Problem`
in the ordered stream, after the series' header, so that the writer puts
the receiver in error for the series it concerns while the other modules'
frames are still stored. A problem found between series (a module sending
frames without a header) is held until the next series' header, or until
it is clear no header is coming.
"""

from __future__ import annotations

from collections import deque

from protocols.model import Message, SeriesEnd, SeriesStart
from receiver.module_feed import ModuleFeed
from receiver.reorder import Gap, Stale
from receiver.stream_items import Malformed, Problem

Item = Message | Malformed | Gap | Stale | Problem


class MatchedOutput:
    """What the collector gets from the matcher, in order; problems placed by series."""

    def __init__(self) -> None:
        self._out: deque[Item] = deque()
        self._held: list[Problem] = []
        self.open = False
        """A series is open: its problems go out now, after its header."""

    def __len__(self) -> int:
        return len(self._out)

    def take(self, limit: int) -> list[Item]:
        """Up to ``limit`` items, oldest first."""
        return [self._out.popleft() for _ in range(min(limit, len(self._out)))]

    def append(self, item: Item) -> None:
        self._out.append(item)

    def report(self, reason: str, lost: int = 0, malformed: int = 0) -> None:
        problem = Problem(reason, lost, malformed)
        if self.open:
            self._out.append(problem)
        else:
            self._held.append(problem)

    def once(self, module: ModuleFeed, kind: str, reason: str) -> None:
        """Report a module's problem of one kind once per series (or between series)."""
        if kind not in module.told:
            module.told.add(kind)
            self.report(reason)

    def open_series(self, header: SeriesStart, problems: list[str]) -> None:
        """The series' header, what opening it found wrong, then what was held for it."""
        self._out.append(header)
        self._out.extend(Problem(reason) for reason in problems)
        self.release_held()
        self.open = True

    def close_series(self, end: SeriesEnd) -> None:
        self._out.append(end)
        self.open = False

    def release_held(self) -> None:
        """Let the problems held between series go (no header is coming for them)."""
        self._out.extend(self._held)
        self._held.clear()

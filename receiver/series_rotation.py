"""The rotation a series' own header asks for (MAX IV's ``header_appendix`` ``"rotate"``).

A Dectris detector's control system writes ``{"filename": ..., "rotate": k}``
into the header appendix (stream v1) or ``user_data`` (stream v2), and
MAX IV's receivers rotate that series' frames by ``k`` quarter turns. The
frames are rotated in the parallel workers, like every transform; a worker
that parses a frame before any worker has parsed its header waits for the
header (it always comes first on the wire, so the wait is its parsing time),
at most ``wait_s``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

from protocols.model import Buffer, Image, Message, SeriesStart
from receiver.transforms import Transform, build_pipeline

logger = logging.getLogger(__name__)

Parser = Callable[[Sequence[Buffer]], Message]
KEPT_SERIES = 64


class SeriesRotation:
    """Wraps a per-series protocol's parser; one instance is shared by all workers."""

    def __init__(self, wait_s: float) -> None:
        self._wait_s = wait_s
        self._turns: OrderedDict[Hashable, int] = OrderedDict()
        self._known = threading.Condition()
        self._rotations: dict[int, Transform] = {}

    def wrap(self, parse: Parser) -> Parser:
        def parse_and_rotate(parts: Sequence[Buffer]) -> Message:
            message = parse(parts)
            if isinstance(message, SeriesStart):
                self._learn(message.series, int(message.fields.get("rotate", 0)))
            elif isinstance(message, Image) and message.series is not None:
                turns = self._turns_of(message.series)
                if turns:
                    return self._rotation(turns)(message)
            return message

        return parse_and_rotate

    def _learn(self, series: Hashable, turns: int) -> None:
        with self._known:
            self._turns[series] = turns % 4
            while len(self._turns) > KEPT_SERIES:
                self._turns.popitem(last=False)
            self._known.notify_all()

    def _turns_of(self, series: Hashable) -> int:
        with self._known:
            if not self._known.wait_for(lambda: series in self._turns, self._wait_s):
                logger.warning(
                    "no header of series %r within %g s: its frames are stored unrotated",
                    series,
                    self._wait_s,
                )
                return 0
            return self._turns[series]

    def _rotation(self, turns: int) -> Transform:
        if turns not in self._rotations:
            self._rotations[turns] = build_pipeline([{"kind": "rotate", "k": turns}])
        return self._rotations[turns]

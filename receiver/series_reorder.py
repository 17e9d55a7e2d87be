"""Restores order for streams numbered per series: Dectris stream v1/v2 and SLS.

These streams carry no stream-wide message number. Each message names its
series (the detector's series id: the ``series`` key of the model) and its
place in it follows from its content: the header is at 0, frame n at n + 1.
What nothing announces is where a series ends: a Dectris end message carries
no frame count, a series may stop early (disarm, abort), stream v1 with
``header_detail`` ``none`` and SLS announce no count at all, and an end can be
lost altogether (the real v1 capture has none). Workers parse in parallel, so
an end or the next series' header may reach this buffer before the last
frames of a series do.

The rules, all decided here under one lock, so every worker sees one state:

- Within the current series, messages are released strictly by position; a
  gap that outlives ``gap_timeout`` is skipped and reported, as for STINS.
- The end of the current series is released right after its last frame when
  the header announced the count (``SeriesStart.frames``: nimages x ntrigger
  for v1, number_of_images for v2, or a frame known to be the last, SLS's
  100 % progress) and every announced frame has been released: exact and
  without waiting, the normal case.
- Otherwise (a series stopped early, no count announced) the end waits until
  every frame that has arrived is released and nothing of the series has
  arrived for ``gap_timeout``: a frame later than that counts as lost, as a
  STINS message later than ``gap_timeout`` does.
- A header of another series waits in the same way while the current series
  is still open (its end lost), then it starts the new series; the writer
  closes the old one with the frames that arrived.
- Once the reorderer has moved past a series, anything of it that still
  comes is dropped and reported (:class:`Stale`), never written into the next
  series. Series are started in the order of their keys (detector series ids
  grow), whatever order their messages arrive in.

So the order is exact whenever the header announced the count, and
otherwise (and for a lost end) exact unless a frame is later than
``gap_timeout``, which is reported. The window bounds memory as for STINS:
the one message needed next, headers and ends are always admitted, and a
frame of the current series that does not fit goes to the file ahead of its
turn (every message names its series and frame, so there is no doubt where
it belongs), as does one whose wait has timed out: the file needs no order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from protocols.model import Image, Message, SeriesEnd, SeriesStart
from receiver.readers import SeriesRules
from receiver.reorder import Gap, OutOfTurn, Placed, Reorderer, Stale
from receiver.stream_items import Malformed

Item = Message | Malformed
RETIRED_KEPT = 256
"""Series moved past that are remembered, to drop their stragglers."""


@dataclass(slots=True, eq=False)
class _Series:
    key: Hashable
    expected: int | None = None
    pending: int = 0
    has_header: bool = False
    end: Item | None = None
    last_arrival: float = 0.0


class SeriesReorderer(Reorderer[Item]):
    """A bounded buffer releasing per-series numbered messages in order (module docstring)."""

    def __init__(
        self,
        window: int,
        gap_timeout: float,
        window_bytes: int | None = None,
        rules: SeriesRules | None = None,
        clock: Callable[[], float] = time.monotonic,
        frame_of: Callable[[Item], int | None] | None = None,
    ) -> None:
        """``frame_of``: as for :class:`Reorderer`; without it nothing goes out of turn."""
        super().__init__(window, gap_timeout, window_bytes, frame_of=frame_of)
        self._rules = rules or SeriesRules()
        self._clock = clock
        self._pending: dict[tuple[Hashable, int], tuple[Item | Placed, bool, int]] = {}  # type: ignore[assignment]
        self._known: dict[Hashable, _Series] = {}
        self._loose_ends: deque[Item] = deque()
        self._loose_since: float | None = None
        self._retired: deque[Hashable] = deque()
        self._retired_keys: set[Hashable] = set()
        self._current: _Series | None = None
        self._position = 0
        self._deadline: float | None = None

    def put_many(self, entries: Sequence[tuple[int, Item, bool, int]]) -> None:
        """Add ``(seq, item, is_header, nbytes)`` entries; ``seq`` is the position in the series."""
        with self._lock:
            for seq, item, is_header, nbytes in entries:
                if isinstance(item, SeriesEnd):
                    self._add_end(item)
                elif not self._placed_out_of_turn(seq, item, is_header, nbytes):
                    if self._is_stale(item.series, seq, is_header):
                        self._stale += 1
                    else:
                        self._add(item.series, seq, item, is_header, nbytes)
            self._can_get.notify()

    def _placed_out_of_turn(self, seq: int, item: Item, is_header: bool, nbytes: int) -> bool:
        """Wait for room; True when the item went to the file out of turn instead."""
        key = item.series
        while True:
            if self._is_late_in_series(key, seq, item) and self._ahead_fits(nbytes):
                self._hand_on_late(item, nbytes)
                return True
            if self._closed or is_header or self._is_needed(key, seq) or self._fits(nbytes):
                return False
            if self._may_go_ahead_in_series(key, seq, item) and self._ahead_fits(nbytes):
                self._hand_on(OutOfTurn(item), nbytes)
                self._store((key, seq), self._series(key), Placed(seq), False, 0)
                self._marks += 1
                return True
            self._can_get.notify()
            self._can_put.wait()

    def _storable(self, item: Item) -> bool:
        """A frame the file can take in any order (``frame_of`` says which; none without it)."""
        return self._frame_of is not None and self._frame_of(item) is not None

    def _is_late_in_series(self, key: Hashable, seq: int, item: Item) -> bool:
        """A frame of the current series whose place the order has already passed."""
        current = self._current
        return (
            current is not None
            and current.key == key
            and 0 < seq < self._position
            and self._storable(item)
        )

    def _may_go_ahead_in_series(self, key: Hashable, seq: int, item: Item) -> bool:
        current = self._current
        return (
            current is not None
            and current.key == key
            and seq > self._position
            and (key, seq) not in self._pending
            and self._storable(item)
        )

    def _is_stale(self, key: Hashable, seq: int, is_header: bool) -> bool:
        """Of a series moved past, or of a place the current series has passed."""
        if key in self._retired_keys:
            if not is_header:
                return True
            self._unretire(key)  # a new series under an old id (detector restarted)
            return False
        current = self._current
        return current is not None and current.key == key and seq < self._position

    def _is_needed(self, key: Hashable, seq: int) -> bool:
        current = self._current
        return current is not None and current.key == key and seq == self._position

    def _series(self, key: Hashable) -> _Series:
        series = self._known.get(key)
        if series is None:
            series = self._known[key] = _Series(key)
        series.last_arrival = self._clock()
        return series

    def _add(self, key: Hashable, seq: int, item: Item, is_header: bool, nbytes: int) -> None:
        series = self._series(key)
        if is_header and isinstance(item, SeriesStart):
            series.has_header = True
            series.expected = item.frames
        elif isinstance(item, Image):
            if not series.has_header and self._rules.opener is not None:
                series.has_header = True
                header = self._rules.opener(item)
                series.expected = header.frames
                self._store((key, 0), series, header, True, 0)
            last_frame = self._rules.last_frame
            if last_frame is not None and last_frame(item):
                series.expected = max(series.expected or 0, item.frame + 1)
        self._store((key, seq), series, item, is_header, nbytes)

    def _store(
        self,
        where: tuple[Hashable, int],
        series: _Series,
        item: Item | Placed,
        is_header: bool,
        nbytes: int,
    ) -> None:
        old = self._pending.get(where)
        if old is not None:
            if isinstance(old[0], Placed):
                self._marks -= 1
            self._stale += 1
            self._pending_bytes -= old[2]
            series.pending -= 1
        self._pending[where] = (item, is_header, nbytes)
        self._pending_bytes += nbytes
        series.pending += 1

    def _add_end(self, end: SeriesEnd) -> None:
        if end.series is None:
            self._loose_ends.append(end)
            return
        if end.series in self._retired_keys:
            self._stale += 1
            return
        series = self._series(end.series)
        if series.end is not None:
            self._stale += 1
        series.end = end

    # Releasing, under the lock (called by get_batch).

    def _gap_wait(self) -> float:
        if self._deadline is None:
            return self._gap_timeout
        return max(0.0, self._deadline - self._clock())

    def _after_timeout(self, since: float) -> bool:
        """True once ``gap_timeout`` has passed since ``since``; else note when to look again."""
        due = since + self._gap_timeout
        if self._clock() >= due:
            return True
        self._deadline = due if self._deadline is None else min(self._deadline, due)
        return False

    def _stalled(self) -> bool:
        """True once the current wait for a missing message has lasted ``gap_timeout``."""
        if self._stalled_since is None:
            self._stalled_since = self._clock()
        if self._after_timeout(self._stalled_since):
            self._stalled_since = None
            return True
        return False

    def _take_next(self) -> Item | Gap | Stale | Placed | None:
        self._deadline = None
        if self._stale:
            count, self._stale = self._stale, 0
            return Stale(count)
        current = self._current
        if current is None:
            return self._start_next()
        ready = self._pending.pop((current.key, self._position), None)
        if ready is not None:
            return self._release_entry(current, ready)
        if current.pending:
            return self._skip_gap(current)
        if current.end is not None or self._loose_ends:
            return self._release_end(current)
        if any(s is not current for s in self._known.values()):
            if self._after_timeout(current.last_arrival):
                self._retire(current)
                return self._start_next()
            return None
        self._stalled_since = None
        return None

    def _release_entry(
        self, series: _Series, entry: tuple[Item | Placed, bool, int]
    ) -> Item | Placed:
        item, _, nbytes = entry
        self._pending_bytes -= nbytes
        series.pending -= 1
        if isinstance(item, Placed):
            self._marks -= 1
        self._position += 1
        self._stalled_since = None
        return item

    def _skip_gap(self, series: _Series) -> Gap | None:
        """Frames of the current series wait behind a gap: skip it once it is old enough."""
        if not self._stalled():
            return None
        first = min(pos for key, pos in self._pending if key == series.key)
        gap = Gap(self._position - 1, first - 2, series.key)
        self._position = first
        return gap

    def _release_end(self, series: _Series) -> Item | None:
        complete = series.expected is not None and self._position > series.expected
        if not (complete or self._after_timeout(series.last_arrival)):
            return None
        end = series.end
        if end is None:
            end = self._loose_ends.popleft()
            self._loose_since = None
        self._retire(series)
        return end

    def _retire(self, series: _Series) -> None:
        self._known.pop(series.key, None)
        self._retired.append(series.key)
        self._retired_keys.add(series.key)
        if len(self._retired) > RETIRED_KEPT:
            self._retired_keys.discard(self._retired.popleft())
        self._current = None
        self._stalled_since = None

    def _unretire(self, key: Hashable) -> None:
        self._retired_keys.discard(key)
        self._retired.remove(key)

    def _start_next(self) -> Item | Gap | Placed | None:
        """Start the series that comes next: the lowest key, once its header is here."""
        waiting = [s for s in self._known.values() if s.pending or s.end is not None]
        if not waiting:
            return self._lone_end()
        try:
            series = min(waiting, key=_order)
        except TypeError:  # keys of unlike kinds: the one seen first
            series = waiting[0]
        header = self._pending.pop((series.key, 0), None)
        if header is not None:
            self._current, self._position = series, 0
            return self._release_entry(series, header)
        if not self._stalled():
            return None
        # Its header never came (lost, or the receiver joined mid-series).
        self._current, self._position = series, 0
        if series.pending:
            first = min(pos for key, pos in self._pending if key == series.key)
            self._position = first
            return Gap(-1, first - 2, series.key)
        return self._release_end(series)

    def _lone_end(self) -> Item | None:
        """An end that no series is open for: released once nothing claimed it in time."""
        if not self._loose_ends:
            self._loose_since = None
            self._stalled_since = None
            return None
        if self._loose_since is None:
            self._loose_since = self._clock()
        if not self._after_timeout(self._loose_since):
            return None
        self._loose_since = None
        return self._loose_ends.popleft()


def _order(series: _Series) -> Any:
    """Series start in the order of their keys: detector series ids grow.

    Any: keys are whatever the protocol makes them (ints, tuples); keys of
    unlike kinds do not compare, and the caller catches that TypeError.
    """
    return series.key

"""Restores stream order between the parallel workers and the collector.

Each worker owns one PULL socket, so messages reach the workers round-robin
and leave them in any order. Every message carries its position in the stream
(``seq``); this buffer hands them on strictly by ``seq``. It holds at most
``window`` messages ahead of the one it waits for, so memory stays bounded and
a fast worker waits (ZeroMQ then pushes back on the sender) instead of
queueing without limit. The message the collector needs is always admitted,
so the window can never deadlock.

Two situations end a wait for a message that will never come:
- a header with a lower ``seq`` than expected means the sender restarted its
  numbering (a new acquisition): it is delivered at once;
- a gap that outlives ``gap_timeout`` (a message lost before it could be
  numbered, e.g. unparseable JSON) is skipped and reported.

Messages that can no longer be delivered in order (older than the one
expected once the wait timed out, leftovers of a numbering that restarted, a
number seen twice) are dropped and reported as :class:`Stale`.

A full window never holds up a frame that the file can take: the file needs
no order (a frame is stored at the index of its frame number), only the
forwarded stream does. A frame of the open series that does not fit is
handed on *ahead of its turn* (given a ``frame_of`` that says which frame it
is) and leaves a :class:`Placed` mark where it belongs in the order, which
the forwarder counts as not forwarded. Without this, the frame the window
waits for could sit in the socket of a worker that is itself waiting for
room, until ``gap_timeout`` gave it up: the frame would arrive, and be lost.
Only frames whose number matches their place (``seq`` = header + 1 + frame,
as STINS senders number them) go ahead, so a frame of a later series whose
header is still on its way is never taken for one of the open series; such
frames wait for room as before, which cannot deadlock: everything the open
series still needs was sent before them and is in no socket behind them.
A sender that starts the numbering again with each series makes the same
number mean a message of this series or of the next: such a stream is kept
apart series by series (``receiver/renumbering.py``), and the order moves to
the next series at each series end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from receiver.renumbering import STRIDE, Renumbering, next_epoch, number_of

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages ``first``..``last`` never arrived; the stream went on without them.

    For a stream numbered per series, ``series`` names the series and
    ``first``..``last`` are frame numbers (-1 standing for its header).
    """

    first: int
    last: int
    series: Hashable | None = None

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class Placed:
    """The place in the order of a frame that was handed on ahead of its turn."""

    seq: int


@dataclass(frozen=True, slots=True)
class OutOfTurn(Generic[T]):
    """A frame for the file only, out of the order: ahead of its turn, or ``late`` after it."""

    item: T
    late: bool = False


@dataclass(frozen=True, slots=True)
class Stale:
    """Messages dropped because a restart overtook them (``count`` of them)."""

    count: int


class Reorderer(Generic[T]):
    """A bounded buffer that releases items in ``seq`` order (see module docstring)."""

    def __init__(
        self,
        window: int,
        gap_timeout: float,
        window_bytes: int | None = None,
        shared: tuple[threading.Lock, threading.Condition] | None = None,
        frame_of: Callable[[T], int | None] | None = None,
        ends_series: Callable[[T], bool] | None = None,
    ) -> None:
        """``shared``: a lock and a condition on it that several reorderers share, so
        that one consumer can wait on all of them (the module matcher); the
        condition is notified whenever something is added.

        ``frame_of``: the frame number of an item the file may take ahead of its
        turn (None for one that must keep its place: headers, ends, frames
        flagged discard); ``ends_series``: true for an item that closes the
        open series. Without them nothing goes ahead of its turn."""
        if window < 1:
            raise ValueError("window must be at least 1")
        self._window = window
        self._window_bytes = window_bytes
        self._pending_bytes = 0
        self._gap_timeout = gap_timeout
        if shared is None:
            self._lock = threading.Lock()
            self._can_get = threading.Condition(self._lock)
        else:
            self._lock, self._can_get = shared
        self._can_put = threading.Condition(self._lock)
        self._pending: dict[int, tuple[T | Placed, bool, int]] = {}
        self._next: int | None = None
        self._closed = False
        self._stalled_since: float | None = None
        self._stale = 0
        self._frame_of = frame_of
        self._ends_series = ends_series
        self._open_header: int | None = None
        self._series_ended = False
        self._renumbering = Renumbering()
        self._ahead: list[tuple[OutOfTurn[T], int]] = []
        self._ahead_bytes = 0
        self._marks = 0

    def put(self, seq: int, item: T, is_header: bool = False, nbytes: int = 0) -> None:
        """Add one item (see :meth:`put_many`)."""
        self.put_many([(seq, item, is_header, nbytes)])

    def put_many(self, entries: Sequence[tuple[int, T, bool, int]]) -> None:
        """Add ``(seq, item, is_header, nbytes)`` entries under one lock acquisition.

        Blocks while the window (items, and bytes if bounded) is full and the
        entry is not the one needed; the collector is told about what was
        added so far before waiting.
        """
        worker = threading.get_ident()
        with self._lock:
            for number, item, is_header, nbytes in entries:
                waiting = None
                passed = number in self._pending or (self._next is not None and number < self._next)
                if self._renumbering.restarts(number, is_header, passed):
                    waiting = self._move_to_first_epoch()
                seq = self._renumbering.place(worker, number, is_header, self._next or 0, waiting)
                if self._wait_for_room(seq, item, is_header, nbytes):
                    continue
                if seq in self._pending:
                    self._stale += 1
                    self._pending_bytes -= self._pending[seq][2]
                self._pending[seq] = (item, is_header, nbytes)
                self._pending_bytes += nbytes
            self._can_get.notify()

    def _move_to_first_epoch(self) -> set[int]:
        """The numbering restarts: what waits below the order, or after a series that has
        ended, can only be of the next series, and moves to its epoch."""
        expected = self._next
        if self._series_ended:
            moved = set(self._pending)
        elif expected is None:
            moved = set()
        else:
            moved = {seq for seq in self._pending if seq < expected}
        self._pending = {
            (STRIDE + seq if seq in moved else seq): entry for seq, entry in self._pending.items()
        }
        return moved

    def _wait_for_room(self, seq: int, item: T, is_header: bool, nbytes: int) -> bool:
        """Wait until the item may be added; True when it went to the file out of turn instead.

        A frame of the open series whose place the order has passed (its wait
        timed out) still goes to the file: late for the forwarded stream, not
        for the file.
        """
        while not (self._closed or is_header or seq == self._next or self._fits(nbytes)):
            if self._may_go_ahead(seq, item) and self._ahead_fits(nbytes):
                self._go_ahead(seq, item, nbytes)
                return True
            if self._is_late_frame(seq, item) and self._ahead_fits(nbytes):
                self._hand_on_late(item, nbytes)
                return True
            self._can_get.notify()
            self._can_put.wait()
        if self._is_late_frame(seq, item):
            self._hand_on_late(item, nbytes)
            return True
        return False

    def _is_late_frame(self, seq: int, item: T) -> bool:
        """A frame of the open series whose place the order has already passed."""
        header, expected = self._open_header, self._next
        if self._frame_of is None or header is None or expected is None or seq >= expected:
            return False
        frame = self._frame_of(item)
        return frame is not None and seq == header + 1 + frame

    def _hand_on_late(self, item: T, nbytes: int) -> None:
        self._hand_on(OutOfTurn(item, late=True), nbytes)

    def _hand_on(self, item: OutOfTurn[T], nbytes: int) -> None:
        """Keep ``item`` for the collector's next batch, out of the order."""
        self._ahead.append((item, nbytes))
        self._ahead_bytes += nbytes

    def _fits(self, nbytes: int) -> bool:
        if len(self._pending) - self._marks >= self._window:
            return False
        return self._window_bytes is None or self._pending_bytes + nbytes <= self._window_bytes

    def _may_go_ahead(self, seq: int, item: T) -> bool:
        """A frame of the open series, at the place its frame number gives it, not yet here."""
        header, expected = self._open_header, self._next
        if self._frame_of is None or header is None or expected is None:
            return False
        frame = self._frame_of(item)
        if frame is None or seq != header + 1 + frame or seq <= expected or seq in self._pending:
            return False
        for pending_seq, (pending, is_header, _) in self._pending.items():
            if pending_seq < seq and (is_header or self._ends(pending)):
                return False  # the item may be of the next series
        return True

    def _ends(self, item: T | Placed) -> bool:
        if isinstance(item, Placed) or self._ends_series is None:
            return False
        return self._ends_series(item)

    def _ahead_fits(self, nbytes: int) -> bool:
        if not self._ahead:
            return True
        if len(self._ahead) >= self._window:
            return False
        return self._window_bytes is None or self._ahead_bytes + nbytes <= self._window_bytes

    def _go_ahead(self, seq: int, item: T, nbytes: int) -> None:
        self._hand_on(OutOfTurn(item), nbytes)
        self._pending[seq] = (Placed(seq), False, 0)
        self._marks += 1

    def close(self) -> None:
        """Wake everyone up; ``get`` returns nothing and ``put`` stops blocking."""
        with self._lock:
            self._closed = True
            self._can_get.notify_all()
            self._can_put.notify_all()

    def get(self, timeout: float) -> T | Gap | Stale | Placed | OutOfTurn[T] | None:
        """The next item in order, a :class:`Gap` or :class:`Stale` report, or None on timeout."""
        batch = self.get_batch(timeout, 1)
        return batch[0] if batch else None

    def get_batch(
        self, timeout: float, limit: int
    ) -> list[T | Gap | Stale | Placed | OutOfTurn[T]]:
        """Up to ``limit`` consecutive items (and reports) in order; empty on timeout or close.

        Taking what is ready in one go costs one wake-up per batch instead of
        one per message when the stream is fast; a slow stream gives batches
        of one, so nothing waits for a batch to fill.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._closed:
                batch = self.take_ready(limit)
                if batch:
                    return batch
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._can_get.wait(min(remaining, self._gap_wait()))
            return []

    def take_ready(self, limit: int) -> list[T | Gap | Stale | Placed | OutOfTurn[T]]:
        """Up to ``limit`` items that are ready now; the caller holds the (shared) lock."""
        taken = self._ahead[:limit]
        del self._ahead[:limit]
        self._ahead_bytes -= sum(nbytes for _, nbytes in taken)
        batch: list[T | Gap | Stale | Placed | OutOfTurn[T]] = [item for item, _ in taken]
        while len(batch) < limit and (ready := self._take_next()) is not None:
            batch.append(ready)
        if batch:
            self._can_put.notify_all()
        return batch

    @property
    def pending(self) -> int:
        """Messages held, waiting for their turn (read with the lock held)."""
        return len(self._pending)

    @property
    def stalled(self) -> bool:
        """Waiting for a missing message, which ``gap_timeout`` will skip (lock held)."""
        return self._stalled_since is not None

    def _gap_wait(self) -> float:
        if self._stalled_since is None:
            return self._gap_timeout
        return max(0.0, self._stalled_since + self._gap_timeout - time.monotonic())

    def _take_next(self) -> T | Gap | Stale | Placed | OutOfTurn[T] | None:
        if self._stale:
            count, self._stale = self._stale, 0
            return Stale(count)
        if not self._pending:
            self._stalled_since = None
            return None
        if self._next in self._pending:
            return self._release(self._next)
        if self._renumbering.active and self._next is not None:
            following = self._following_header(self._next)
            if following is not None:
                self._next = following
                below = [seq for seq in self._pending if seq < following]
                return self._drop(below) if below else self._release(following)
        restart = self._restart_header()
        if restart is not None:
            return self._restart_at(restart)
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = now
            return None
        if now - self._stalled_since < self._gap_timeout:
            return None
        self._stalled_since = None
        return self._skip()

    def _skip(self) -> T | Gap | Stale | Placed | OutOfTurn[T]:
        """The wait timed out: drop late arrivals, or report the gap and move past it."""
        if self._next is not None:
            late = [seq for seq in self._pending if seq < self._next]
            if late:
                return self._drop(late)
        first = min(self._pending)
        if self._next is None:
            return self._release(first)
        if next_epoch(self._next) <= first:  # the rest of a series numbered again after it
            gap = Gap(number_of(self._next), number_of(self._next))
        else:
            gap = Gap(number_of(self._next), number_of(first - 1))
        self._next = first
        return gap

    def _following_header(self, expected: int) -> int | None:
        """A header of a later epoch, when nothing of the epoch of ``expected`` waits: its
        series has nothing more to come but perhaps its end, so the next one starts now
        (as a header that restarts the numbering did before epochs)."""
        if any(expected <= seq < next_epoch(expected) for seq in self._pending):
            return None
        headers = [
            seq
            for seq, (_, is_header, _) in self._pending.items()
            if is_header and seq >= next_epoch(expected)
        ]
        return min(headers) if headers else None

    def _restart_header(self) -> int | None:
        """The lowest pending header that starts a new numbering, if any.

        At the very start (nothing released yet) a header with lower numbers
        pending is not one: those belong to an earlier header that a slower
        worker still holds (several series queued before the receiver read
        anything), so they wait for it as any gap does.
        """
        headers = [
            seq
            for seq, (_, is_header, _) in self._pending.items()
            if is_header and (self._next is None or seq < self._next)
        ]
        if not headers:
            return None
        first = min(headers)
        if self._next is None and min(self._pending) < first:
            return None
        return first

    def _restart_at(self, seq: int) -> T | Stale | Placed:
        """Start the new numbering at header ``seq``.

        Leftovers of the old numbering are the pending messages below the
        header and those at or beyond the old expected number (they waited
        behind a gap); the new acquisition cannot have got that far while its
        header was still pending.
        """
        old_next = self._next
        self._next = seq
        leftovers = [
            s for s in self._pending if s < seq or (old_next is not None and s >= old_next)
        ]
        if leftovers:
            return self._drop(leftovers)
        return self._release(seq)

    def _drop(self, seqs: list[int]) -> Stale:
        """Drop leftovers; frames already handed on ahead of their turn are not counted."""
        dropped = 0
        for seq in seqs:
            item, _, nbytes = self._pending.pop(seq)
            self._pending_bytes -= nbytes
            if isinstance(item, Placed):
                self._marks -= 1
            else:
                dropped += 1
        return Stale(dropped)

    def _release(self, seq: int) -> T | Placed:
        item, is_header, nbytes = self._pending.pop(seq)
        self._pending_bytes -= nbytes
        if isinstance(item, Placed):
            self._marks -= 1
        elif is_header:
            self._open_header = seq
            self._series_ended = False
        elif self._ends(item):
            self._open_header = None
            self._series_ended = True
        self._next = seq + 1
        if self._renumbering.active and self._ends(item):
            self._next = next_epoch(seq)
        self._stalled_since = None
        return item

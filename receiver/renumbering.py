"""Tells series apart in a stream whose sender starts ``msg_number`` again with each series.

STINS numbers messages across the whole stream, but some senders start at 0
again with every header. The same number then means a message of this
series or of the next, and the reorderer, which keeps messages by number,
would mix them up: a frame of the next series stored as one of this one, a
header dropped as a number seen twice. Once a header shows that the stream
does this (its number not above every number seen so far), every message is
given a place of its own, ``epoch * STRIDE + msg_number``, where the epoch
counts the series since then:

- a header that starts the numbering again begins the next epoch (headers
  arrive in the order they were sent: a whole series lies between two);
- any other message belongs to the epoch of the worker that read it, and a
  worker moves to the next epoch when its numbers go down (each worker reads
  its share of the stream in the order it was sent, so within one series its
  numbers only grow), or when the series of its epoch is over (it read
  nothing of the next one that showed it).

What this cannot place: a frame of the next series read, before that
series' header arrived, by a worker whose numbers did not go down (it read
nothing of the series before but a few first messages); and anything of the
first series after the one that showed the restart. Those are placed as
before, by their number alone. A sender that numbers its whole stream, as
STINS asks, never starts epochs.
"""

from __future__ import annotations

from collections.abc import Hashable

STRIDE = 1 << 40
"""Room for 10^12 messages in one series."""


class Renumbering:
    """Places of messages in a stream that may restart its numbering (module docstring)."""

    def __init__(self) -> None:
        self.active = False
        self._epochs = 0
        self._workers: dict[Hashable, tuple[int, int]] = {}

    def restarts(self, seq: int, is_header: bool, passed: bool) -> bool:
        """True for the header that shows, for the first time, that the numbering restarts.

        ``passed``: the order has gone past ``seq`` already, or holds another
        message under it. A header below numbers seen but not yet passed is no
        restart: it is the stream's first header, read by a slower worker.
        """
        return not self.active and is_header and passed

    def place(
        self,
        worker: Hashable,
        seq: int,
        is_header: bool,
        ordering: int,
        waiting: set[int] | None = None,
    ) -> int:
        """The place of message ``seq`` read by ``worker``: ``seq`` itself until a restart.

        ``ordering``: the place the order waits for; a worker still in an
        epoch the order has left (its series is over) is behind and joins the
        order's epoch. ``waiting``: given with the header that :meth:`restarts`
        the numbering, and only then: the places still held of a series that
        has ended, which can only be of the next series (they move there, and
        so do the workers that read them); empty while that series still runs.
        """
        epoch, last = self._workers.get(worker, (0, -1))
        if not self.active:
            if waiting is None:
                self._workers[worker] = (0, seq)
                return seq
            self.active = True
            self._epochs = 1
            for other, (_, other_last) in self._workers.items():
                if other_last in waiting:
                    self._workers[other] = (1, other_last)
            self._workers[worker] = (1, seq)
            return STRIDE + seq
        if is_header:
            self._epochs += 1
            epoch = max(epoch, self._epochs)
        else:
            if seq < last:
                epoch += 1
            epoch = max(epoch, ordering // STRIDE)
        self._workers[worker] = (epoch, seq)
        return epoch * STRIDE + seq


def number_of(place: int) -> int:
    """The message number a place stands for, as the sender wrote it."""
    return place % STRIDE


def next_epoch(place: int) -> int:
    """The first place of the epoch after the one ``place`` is in."""
    return (place // STRIDE + 1) * STRIDE

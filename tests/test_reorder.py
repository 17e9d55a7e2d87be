"""The reorderer hands messages on in stream order, whatever order the workers deliver them in.

Timing: the outcome of each test never depends on how threads are scheduled.
Where a thread must be blocked, the test checks it is still running after a
short join (a correct implementation is always still blocked there); waits
for gaps use a short ``gap_timeout`` and generous ``get`` timeouts.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from receiver.reorder import Gap, Reorderer, Stale

pytestmark = pytest.mark.timeout(20)

LONG = 5.0  # a gap_timeout that a passing test never reaches
GAP = 0.1


def start(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def drain(reorderer: Reorderer, count: int, timeout: float = 2.0) -> list:
    out = []
    for _ in range(count):
        item = reorderer.get(timeout)
        assert item is not None, f"nothing came out after {out!r}"
        out.append(item)
    return out


def put_series(reorderer: Reorderer, first: int, images: int) -> None:
    """Header at ``first``, then its images, all as "h<seq>" / "i<seq>"."""
    reorderer.put(first, f"h{first}", is_header=True)
    for seq in range(first + 1, first + 1 + images):
        reorderer.put(seq, f"i{seq}")


def test_in_order_delivery_comes_out_unchanged() -> None:
    reorderer: Reorderer[str] = Reorderer(window=8, gap_timeout=LONG)
    put_series(reorderer, 0, 5)

    assert drain(reorderer, 6) == ["h0", "i1", "i2", "i3", "i4", "i5"]
    assert reorderer.get(0.01) is None


def test_fully_shuffled_delivery_by_several_threads_comes_out_in_order() -> None:
    count = 400
    reorderer: Reorderer[int] = Reorderer(window=count, gap_timeout=LONG)
    seqs = list(range(count))
    random.Random(1).shuffle(seqs)
    threads = [
        start(lambda part=seqs[k::4]: [reorderer.put(s, s, is_header=s == 0) for s in part])
        for k in range(4)
    ]

    out = drain(reorderer, count)

    for thread in threads:
        thread.join(2)
        assert not thread.is_alive()
    assert out == list(range(count))


def test_round_robin_workers_through_a_small_window_never_deadlock() -> None:
    """Like the receiver: each worker sees every 4th message, in order, at its own pace."""
    count, workers = 300, 4
    reorderer: Reorderer[int] = Reorderer(window=3, gap_timeout=LONG)

    def worker(k: int) -> None:
        rng = random.Random(k)
        for seq in range(k, count, workers):
            if rng.random() < 0.05:
                time.sleep(0.001)
            reorderer.put(seq, seq, is_header=seq == 0)

    threads = [start(lambda k=k: worker(k)) for k in range(workers)]

    out = drain(reorderer, count)

    for thread in threads:
        thread.join(2)
        assert not thread.is_alive()
    assert out == list(range(count)), "a Gap here means the window blocked the needed message"


def test_header_arriving_after_its_first_images_is_released_first() -> None:
    reorderer: Reorderer[str] = Reorderer(window=8, gap_timeout=LONG)
    for seq in (3, 1, 2):
        reorderer.put(seq, f"i{seq}")
    reorderer.put(0, "h0", is_header=True)

    assert drain(reorderer, 4) == ["h0", "i1", "i2", "i3"]


def test_at_the_start_a_later_header_waits_for_the_earlier_one_a_slower_worker_holds() -> None:
    """Two series queued before the receiver read anything; the worker holding h0 is late."""
    reorderer: Reorderer[str] = Reorderer(window=8, gap_timeout=LONG)
    reorderer.put_many([(1, "i1", False, 0), (3, "h3", True, 0), (5, "i5", False, 0)])
    assert reorderer.get(0.05) is None

    reorderer.put_many([(0, "h0", True, 0), (2, "end2", False, 0), (4, "i4", False, 0)])

    assert drain(reorderer, 6) == ["h0", "i1", "end2", "h3", "i4", "i5"]


def test_numbering_continues_across_series() -> None:
    reorderer: Reorderer[str] = Reorderer(window=16, gap_timeout=LONG)
    stream = [(0, "h0", True), (1, "i1", False), (2, "i2", False), (3, "end3", False)]
    stream += [(4, "h4", True), (5, "i5", False), (6, "i6", False), (7, "end7", False)]
    for seq, item, is_header in [stream[i] for i in (2, 5, 0, 4, 7, 1, 6, 3)]:
        reorderer.put(seq, item, is_header)

    assert drain(reorderer, 8) == [item for _, item, _ in stream]


def test_restart_with_a_lower_number_releases_the_new_header_at_once() -> None:
    reorderer: Reorderer[str] = Reorderer(window=16, gap_timeout=LONG)
    put_series(reorderer, 0, 9)
    assert drain(reorderer, 10)[-1] == "i9"

    reorderer.put(1, "new-i1")
    reorderer.put(0, "new-h0", is_header=True)
    reorderer.put(2, "new-i2")

    started = time.monotonic()
    assert drain(reorderer, 3) == ["new-h0", "new-i1", "new-i2"]
    assert time.monotonic() - started < LONG / 2, "a restart must not wait for a gap timeout"


def test_restart_reports_messages_below_the_new_header_as_stale() -> None:
    """The sender restarted, its first header was lost: images 1-2 wait, then header 3 comes."""
    reorderer: Reorderer[str] = Reorderer(window=16, gap_timeout=LONG)
    put_series(reorderer, 0, 9)
    drain(reorderer, 10)

    reorderer.put(1, "new-i1")
    reorderer.put(2, "new-i2")
    reorderer.put(3, "new-h3", is_header=True)
    reorderer.put(4, "new-i4")

    assert drain(reorderer, 3) == [Stale(2), "new-h3", "new-i4"]


def test_a_restart_keeps_the_old_series_messages_after_its_gap_then_starts_the_new_one() -> None:
    """The new numbering is kept apart: what still waits of the old one is delivered first."""
    reorderer: Reorderer[str] = Reorderer(window=16, gap_timeout=GAP)
    put_series(reorderer, 0, 9)
    drain(reorderer, 10)
    reorderer.put(12, "old-i12")  # old-i10 and old-i11 were lost; these two wait for them
    reorderer.put(13, "old-i13")

    reorderer.put(0, "new-h0", is_header=True)
    for seq in (1, 2, 3):
        reorderer.put(seq, f"new-i{seq}")

    assert drain(reorderer, 7) == [
        Gap(10, 11),
        "old-i12",
        "old-i13",
        "new-h0",
        "new-i1",
        "new-i2",
        "new-i3",
    ]


def test_a_gap_older_than_the_timeout_is_skipped_and_reported() -> None:
    reorderer: Reorderer[str] = Reorderer(window=16, gap_timeout=GAP)
    put_series(reorderer, 0, 1)
    for seq in (5, 4):
        reorderer.put(seq, f"i{seq}")
    assert drain(reorderer, 2) == ["h0", "i1"]

    started = time.monotonic()
    gap = reorderer.get(2.0)
    waited = time.monotonic() - started

    assert gap == Gap(2, 3)
    assert gap.count == 2
    assert waited >= GAP * 0.9, "the gap was reported before gap_timeout"
    assert drain(reorderer, 2) == ["i4", "i5"]


def test_a_gap_filled_before_the_timeout_is_not_reported() -> None:
    reorderer: Reorderer[str] = Reorderer(window=16, gap_timeout=LONG)
    put_series(reorderer, 0, 1)
    reorderer.put(3, "i3")
    assert drain(reorderer, 2) == ["h0", "i1"]
    assert reorderer.get(0.05) is None

    reorderer.put(2, "i2")

    assert drain(reorderer, 2) == ["i2", "i3"]


def test_a_message_arriving_after_its_gap_was_reported_is_not_released_out_of_order() -> None:
    reorderer: Reorderer[str] = Reorderer(window=16, gap_timeout=GAP)
    put_series(reorderer, 0, 1)
    reorderer.put(3, "i3")
    assert drain(reorderer, 4) == ["h0", "i1", Gap(2, 2), "i3"]

    reorderer.put(2, "late-i2")
    reorderer.put(4, "i4")
    out = [reorderer.get(4 * GAP) for _ in range(2)]
    reorderer.put(5, "i5")
    out += [reorderer.get(4 * GAP) for _ in range(2)]

    released = [x for x in out if x is not None and not isinstance(x, Stale)]
    assert released == ["i4", "i5"]


def test_images_before_any_header_are_released_after_the_timeout_lowest_first() -> None:
    reorderer: Reorderer[str] = Reorderer(window=16, gap_timeout=GAP)
    for seq in (7, 5, 6):
        reorderer.put(seq, f"i{seq}")

    started = time.monotonic()
    first = reorderer.get(2.0)
    waited = time.monotonic() - started

    assert first == "i5"
    assert waited >= GAP * 0.9
    assert drain(reorderer, 2) == ["i6", "i7"]


def test_the_window_bounds_pending_messages_but_admits_the_needed_one() -> None:
    reorderer: Reorderer[str] = Reorderer(window=2, gap_timeout=LONG)
    reorderer.put(0, "h0", is_header=True)
    assert reorderer.get(1.0) == "h0"
    reorderer.put(2, "i2")
    reorderer.put(3, "i3")

    beyond = start(lambda: reorderer.put(4, "i4"))
    beyond.join(0.1)
    assert beyond.is_alive(), "a put beyond the window must wait"

    needed = start(lambda: reorderer.put(1, "i1"))
    needed.join(2)
    assert not needed.is_alive(), "the message the reader needs must always be admitted"

    assert drain(reorderer, 3) == ["i1", "i2", "i3"]
    beyond.join(2)
    assert not beyond.is_alive(), "taking messages out must free the window"
    assert reorderer.get(1.0) == "i4"


def test_a_header_is_admitted_into_a_full_window() -> None:
    reorderer: Reorderer[str] = Reorderer(window=2, gap_timeout=LONG)
    reorderer.put(1, "i1")
    reorderer.put(2, "i2")

    header = start(lambda: reorderer.put(0, "h0", is_header=True))
    header.join(2)

    assert not header.is_alive()
    assert drain(reorderer, 3) == ["h0", "i1", "i2"]


def test_close_wakes_a_blocked_get() -> None:
    reorderer: Reorderer[str] = Reorderer(window=4, gap_timeout=LONG)
    results: list[object] = []
    reader = start(lambda: results.append(reorderer.get(30.0)))
    reader.join(0.05)
    assert reader.is_alive()

    reorderer.close()
    reader.join(2)

    assert not reader.is_alive()
    assert results == [None]


def test_close_wakes_a_blocked_put() -> None:
    reorderer: Reorderer[str] = Reorderer(window=1, gap_timeout=LONG)
    reorderer.put(0, "h0", is_header=True)
    assert reorderer.get(1.0) == "h0"
    reorderer.put(3, "i3")
    writer = start(lambda: reorderer.put(4, "i4"))
    writer.join(0.05)
    assert writer.is_alive()

    reorderer.close()
    writer.join(2)

    assert not writer.is_alive()
    assert reorderer.get(1.0) is None


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        Reorderer(window=0, gap_timeout=GAP)

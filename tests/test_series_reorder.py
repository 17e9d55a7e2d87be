"""The series reorderer: per-series numbered streams (Dectris, SLS) come out in exact order.

Messages are the receiver's own model objects, put as the workers put them
(``(seq, message, is_header, nbytes)``), from several threads and in any
order. A passing test never waits for ``LONG``; waits for a quiet series use
a short ``GAP`` and generous ``get`` timeouts.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from protocols import sls
from protocols.model import Image, SeriesEnd, SeriesStart
from receiver.readers import PROTOCOLS, SeriesRules
from receiver.reorder import Gap, Stale
from receiver.series_reorder import SeriesReorderer
from receiver.stream_items import Malformed

pytestmark = pytest.mark.timeout(30)

LONG = 5.0
GAP = 0.15
DTYPE = np.dtype("uint16")


def header(series: object, frames: int | None = None) -> SeriesStart:
    return SeriesStart(seq=0, filename=f"{series}.h5", series=series, frames=frames)


def image(series: object, frame: int, **fields: object) -> Image:
    return Image(
        seq=frame + 1,
        frame=frame,
        shape=(2, 2),
        dtype=DTYPE,
        compression="none",
        data=bytes(8),
        fields=dict(fields),
        series=series,
    )


def end(series: object = None) -> SeriesEnd:
    return SeriesEnd(seq=-1, series=series)


def entry(message: object) -> tuple[int, object, bool, int]:
    """As a worker hands a parsed message over."""
    nbytes = len(message.data) if isinstance(message, Image) else 0
    return message.seq, message, isinstance(message, SeriesStart), nbytes


def put(reorderer: SeriesReorderer, *messages: object) -> None:
    reorderer.put_many([entry(m) for m in messages])


def series(key: object, frames: int, announce: bool = True) -> list[object]:
    return [
        header(key, frames if announce else None),
        *(image(key, f) for f in range(frames)),
        end(key),
    ]


def drain(reorderer: SeriesReorderer, count: int, timeout: float = 5.0) -> list[object]:
    out = []
    for _ in range(count):
        item = reorderer.get(timeout)
        assert item is not None, f"nothing came out after {describe(out)}"
        out.append(item)
    return out


def describe(items: Sequence[object]) -> list[str]:
    """``h14``, ``i14:3``, ``e14``, ``gap14:2..4``, ``stale2``, ``m14:1`` for readable asserts."""
    names = []
    for item in items:
        if isinstance(item, SeriesStart):
            names.append(f"h{item.series}")
        elif isinstance(item, Image):
            names.append(f"i{item.series}:{item.frame}")
        elif isinstance(item, SeriesEnd):
            names.append(f"e{item.series}")
        elif isinstance(item, Gap):
            names.append(f"gap{item.series}:{item.first}..{item.last}")
        elif isinstance(item, Stale):
            names.append(f"stale{item.count}")
        elif isinstance(item, Malformed):
            names.append(f"m{item.series}:{item.seq}")
    return names


def expected(key: object, frames: int) -> list[str]:
    return [f"h{key}", *(f"i{key}:{f}" for f in range(frames)), f"e{key}"]


def start(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_a_series_in_order_ends_right_after_its_announced_last_frame() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=LONG)
    put(reorderer, *series(14, 5))

    began = time.monotonic()
    assert describe(drain(reorderer, 7)) == expected(14, 5)
    assert time.monotonic() - began < 1.0
    assert reorderer.get(0.01) is None


def test_end_and_frames_parsed_before_the_header_still_come_after_it() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=LONG)
    messages = series(14, 4)
    put(reorderer, messages[-1], messages[3], messages[1], messages[0], messages[4], messages[2])

    assert describe(drain(reorderer, 6)) == expected(14, 4)


def test_the_end_waits_for_an_announced_frame_still_in_a_worker() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=LONG)
    put(reorderer, header(3, 3), image(3, 0), image(3, 2), end(3))

    assert describe(drain(reorderer, 2)) == ["h3", "i3:0"]
    assert reorderer.get(0.2) is None
    put(reorderer, image(3, 1))
    assert describe(drain(reorderer, 3)) == ["i3:1", "i3:2", "e3"]


@pytest.mark.parametrize("workers", [2, 4, 7])
def test_series_shuffled_over_several_workers_come_out_exact(workers: int) -> None:
    """Round-robin like ZeroMQ, each worker in its own order and speed; three series."""
    reorderer = SeriesReorderer(window=32, gap_timeout=LONG)
    stream = [m for key in (20, 21, 22) for m in series(key, 40)]
    shares = [stream[w::workers] for w in range(workers)]

    def worker(share: list[object], seed: int) -> None:
        rng = random.Random(seed)
        for message in share:  # a worker hands its messages on in the order it got them
            if rng.random() < 0.3:
                time.sleep(rng.random() * 0.002)
            put(reorderer, message)

    threads = [start(lambda s=s, i=i: worker(s, i)) for i, s in enumerate(shares)]
    out = describe(drain(reorderer, len(stream)))
    for thread in threads:
        thread.join(5)

    assert out == expected(20, 40) + expected(21, 40) + expected(22, 40)


def test_fully_shuffled_delivery_comes_out_exact() -> None:
    reorderer = SeriesReorderer(window=500, gap_timeout=LONG)
    stream = [m for key in (1, 2) for m in series(key, 100)]
    shuffled = stream[:]
    random.Random(3).shuffle(shuffled)
    put(reorderer, *shuffled)

    assert describe(drain(reorderer, len(stream))) == expected(1, 100) + expected(2, 100)


def test_without_an_announced_count_the_end_waits_until_the_series_is_quiet() -> None:
    """v1 with header_detail 'none': a late frame within gap_timeout still precedes the end."""
    reorderer = SeriesReorderer(window=64, gap_timeout=GAP)
    put(reorderer, header(9), image(9, 0), image(9, 1), end(9))
    assert describe(drain(reorderer, 3)) == ["h9", "i9:0", "i9:1"]
    time.sleep(GAP / 3)
    put(reorderer, image(9, 2))

    began = time.monotonic()
    assert describe(drain(reorderer, 2)) == ["i9:2", "e9"]
    assert time.monotonic() - began >= GAP * 0.8


def test_a_series_stopped_early_ends_after_the_frames_that_came() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=GAP)
    put(reorderer, header(5, 100), image(5, 0), image(5, 1), end(5))

    assert describe(drain(reorderer, 4)) == ["h5", "i5:0", "i5:1", "e5"]


def test_a_lost_end_is_replaced_by_the_next_header_once_the_series_is_quiet() -> None:
    """The real v1 capture: 9 frames, no end, then the next series."""
    reorderer = SeriesReorderer(window=64, gap_timeout=GAP)
    put(reorderer, header(14, 100_000), *(image(14, f) for f in range(9)))
    put(reorderer, image(15, 0), header(15, 2), image(15, 1), end(15))

    out = describe(drain(reorderer, 10 + 4))
    assert out == expected(14, 9)[:-1] + expected(15, 2)


def test_stragglers_of_a_series_left_behind_are_dropped_and_reported() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=GAP)
    put(reorderer, header(1, 10), image(1, 0), header(2, 1), image(2, 0), end(2))
    assert describe(drain(reorderer, 5)) == ["h1", "i1:0", "h2", "i2:0", "e2"]
    put(reorderer, image(1, 1), end(1))

    assert describe(drain(reorderer, 1)) == ["stale2"]


def test_the_next_series_frames_wait_for_its_header() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=LONG)
    put(reorderer, *series(1, 2))
    put(reorderer, image(2, 1), image(2, 0))
    assert describe(drain(reorderer, 4)) == expected(1, 2)
    assert reorderer.get(0.1) is None

    put(reorderer, header(2, 2), end(2))
    assert describe(drain(reorderer, 4)) == expected(2, 2)


def test_series_start_in_the_order_of_their_ids() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=LONG)
    put(reorderer, *series(8, 1), *series(7, 1))

    assert describe(drain(reorderer, 6)) == expected(7, 1) + expected(8, 1)


def test_a_gap_inside_a_series_is_skipped_after_the_timeout_and_reported() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=GAP)
    put(reorderer, header(4, 6), image(4, 0), image(4, 4), image(4, 5), end(4))

    out = describe(drain(reorderer, 6))
    assert out == ["h4", "i4:0", "gap4:1..3", "i4:4", "i4:5", "e4"]


def test_a_missing_header_is_reported_and_the_frames_follow() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=GAP)
    put(reorderer, image(6, 0), image(6, 1), end(6))

    assert describe(drain(reorderer, 4)) == ["gap6:-1..-1", "i6:0", "i6:1", "e6"]


def test_a_malformed_frame_keeps_its_place() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=LONG)
    bad = Malformed(seq=2, reason="bad blob", series=3)
    put(reorderer, header(3, 3), image(3, 0), image(3, 2), end(3))
    reorderer.put_many([(2, bad, False, 0)])

    assert describe(drain(reorderer, 5)) == ["h3", "i3:0", "m3:2", "i3:2", "e3"]


def test_a_duplicate_is_reported_once_and_the_order_is_kept() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=LONG)
    put(reorderer, header(3, 2), image(3, 0), image(3, 0), image(3, 1), end(3))

    assert describe(drain(reorderer, 5)) == ["stale1", *expected(3, 2)]


def test_a_new_series_under_an_id_seen_before_starts_cleanly() -> None:
    """A detector restart counts series ids from 1 again."""
    reorderer = SeriesReorderer(window=64, gap_timeout=LONG)
    put(reorderer, *series(1, 2))
    assert describe(drain(reorderer, 4)) == expected(1, 2)

    put(reorderer, *series(1, 3))
    assert describe(drain(reorderer, 5)) == expected(1, 3)


def test_the_window_bounds_what_waits_but_admits_the_needed_frame() -> None:
    reorderer = SeriesReorderer(window=4, gap_timeout=LONG)
    put(reorderer, header(1, 20))
    assert describe(drain(reorderer, 1)) == ["h1"]
    ahead = start(lambda: put(reorderer, *(image(1, f) for f in range(1, 20))))
    ahead.join(0.3)
    assert ahead.is_alive(), "the window let everything in"

    put(reorderer, image(1, 0), end(1))
    out = describe(drain(reorderer, 21))
    ahead.join(5)

    assert out == expected(1, 20)[1:]


def test_round_robin_workers_through_a_small_window_never_deadlock() -> None:
    reorderer = SeriesReorderer(window=3, gap_timeout=LONG)
    stream = [m for key in range(1, 6) for m in series(key, 30)]
    shares = [stream[w::3] for w in range(3)]
    threads = [start(lambda s=s: [put(reorderer, m) for m in s]) for s in shares]

    out = describe(drain(reorderer, len(stream)))
    for thread in threads:
        thread.join(5)

    assert out == [name for key in range(1, 6) for name in expected(key, 30)]


def test_close_wakes_a_blocked_get_and_put() -> None:
    reorderer = SeriesReorderer(window=1, gap_timeout=LONG)
    put(reorderer, header(1, 9))
    getter = start(lambda: reorderer.get_batch(LONG, 10))
    reorderer.get(1)
    blocked = start(lambda: put(reorderer, image(1, 5), image(1, 6)))
    blocked.join(0.2)
    assert blocked.is_alive()

    reorderer.close()

    blocked.join(2)
    getter.join(2)
    assert not blocked.is_alive() and not getter.is_alive()


# SLS: no header message, the end names no series.

SLS_RULES = SeriesRules(opener=sls.opener, last_frame=sls.is_last_frame)


def sls_image(first: int, frame: int, frames: int) -> Image:
    parts = sls.encode_image(
        frame, bytes(8), (2, 2), "uint16", frames=frames, first_frame_number=first,
        add_json_header={"filename": f"acq{first}.h5"},
    )  # fmt: skip
    return sls.parse(parts)


def sls_end() -> SeriesEnd:
    return sls.parse(sls.encode_end())


def test_sls_rules_are_the_registered_ones() -> None:
    assert PROTOCOLS["sls"].series == SLS_RULES


def test_sls_acquisitions_get_a_header_and_end_at_their_last_frame() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=LONG, rules=SLS_RULES)
    frames = [sls_image(1, f, 5) for f in range(5)] + [sls_image(6, f, 3) for f in range(3)]
    messages = [*frames[:5], sls_end(), *frames[5:], sls_end()]
    random.Random(5).shuffle(messages)
    put(reorderer, *messages)

    out = drain(reorderer, 5 + 3 + 4)
    first, second = expected((0, 1), 5), expected((0, 6), 3)
    assert describe(out) == [*first[:-1], "eNone", *second[:-1], "eNone"]
    assert out[0].filename == "acq1.h5"
    assert out[7].filename == "acq6.h5"


def test_sls_acquisition_stopped_early_ends_once_quiet() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=GAP, rules=SLS_RULES)
    put(reorderer, sls_image(1, 1, 10), sls_end(), sls_image(1, 0, 10))

    assert describe(drain(reorderer, 4)) == ["h(0, 1)", "i(0, 1):0", "i(0, 1):1", "eNone"]


def test_an_sls_end_with_no_acquisition_open_is_released_alone_after_the_timeout() -> None:
    reorderer = SeriesReorderer(window=64, gap_timeout=GAP, rules=SLS_RULES)
    put(reorderer, sls_end())
    assert describe(drain(reorderer, 1)) == ["eNone"]

    put(reorderer, sls_end())  # parsed before the one frame of its acquisition
    time.sleep(GAP / 3)
    put(reorderer, sls_image(9, 0, 1))
    assert describe(drain(reorderer, 3)) == ["h(0, 9)", "i(0, 9):0", "eNone"]

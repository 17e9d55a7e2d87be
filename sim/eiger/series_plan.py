"""One series as the hardware runs it: its plan latched at arm, and what it has done so far.

Trigger modes:

- ``ints``: each ``trigger`` command takes ``nimages`` images, one every
  ``frame_time``, each exposed ``count_time``; ``ntrigger`` triggers make the
  series.
- ``inte``: each ``trigger`` command takes one image, exposed for the value
  sent with it (``count_time`` without one); ``ntrigger`` images.
- ``exts``: each pulse on the trigger input takes ``nimages`` images;
  ``ntrigger`` pulses.
- ``exte``: each pulse takes one image exposed for the pulse's width
  (``count_time`` for an edge); ``ntrigger`` images.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass, field

from sim.eiger.state_machine import Stop

SUBFRAME_RATE_HZ = 750.0
"""Auto summation splits a frame into ceil(frame_time x 750) subframes: 751 for the
capture's 1.0000029 s, whose ``frame_period`` x 751 is its ``frame_time`` within 5 us
and whose ``countrate_correction_count_cutoff`` is 751 subframes' worth."""


def subframes_of(frame_time: float, auto_summation: bool) -> int:
    return max(1, math.ceil(frame_time * SUBFRAME_RATE_HZ - 1e-9)) if auto_summation else 1


@dataclass(frozen=True, slots=True)
class Plan:
    """One series as the hardware runs it, latched at arm."""

    mode: str
    nimages: int
    ntrigger: int
    count_time: float
    frame_time: float
    readout_time: float
    auto_summation: bool

    @property
    def software(self) -> bool:
        return self.mode in ("ints", "inte")

    @property
    def per_trigger(self) -> int:
        return 1 if self.mode in ("inte", "exte") else self.nimages

    @property
    def total(self) -> int:
        return self.per_trigger * self.ntrigger

    def real_ns(self, exposure: float) -> int:
        """Counting time of one image: the exposure less the subframe readout gaps."""
        subframes = subframes_of(exposure, self.auto_summation)
        gaps = (subframes - 1) * self.readout_time if subframes > 1 else 0.0
        return max(0, round((exposure - gaps) * 1e9))


@dataclass(slots=True)
class Series:
    """The armed series; guarded by the detector's lock."""

    id: int
    unique_id: str
    """A ULID (:func:`ulid`), the detector's ``series_unique_id`` and stream v2's."""
    plan: Plan
    streaming: bool
    armed_at: float
    accepted: int = 0
    """Triggers taken so far (software and external)."""
    done: int = 0
    """Triggers whose images are all taken."""
    pending: list[float | None] = field(default_factory=list)
    """The trigger waiting for the acquisition thread: its exposure (None = count_time)."""
    frames: int = 0
    stop: Stop | None = None
    finished: bool = False
    thread: threading.Thread | None = None


def ulid() -> str:
    """A ULID (48-bit ms time + 80 random bits, Crockford base32), as stream v2 carries."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    number = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    return "".join(alphabet[(number >> shift) & 31] for shift in range(125, -1, -5))

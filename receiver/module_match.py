"""Joins the module streams of a multi-module detector frame by frame.

An XSpectrum Lambda sends one STINS stream per module (paper 3.1: four
streams, from two DCUs), each with its own ``msg_number`` sequence: header,
frames, series end. Every module stream gets its own workers and its own
:class:`~receiver.reorder.Reorderer`, which puts that stream back in
``msg_number`` order exactly as for a one-stream detector. This matcher sits
between those reorderers and the collector (it offers the collector the same
``get_batch``) and joins the modules:

- A series starts when every module's header has come (or ``gap_timeout``
  after the first one: the missing modules are reported and left out). The
  file name is the one most modules name (ties: the first module in the
  configuration); a module naming another file is reported and left out of
  the series. The headers' placement fields (``x``, ``y``, ``rotation`` in
  degrees, ``full_shape``, as MAX IV's Lambda streamers send them) are
  checked against the configuration, which is what is stored.
- Frames are matched by frame number, in whatever order they come: frame k
  goes on as one :class:`~protocols.model.ModuleImage` (one chunk per module,
  as received) as soon as every module still in the series has sent it.
- A frame that one module has not sent ``gap_timeout`` after the first module
  sent it goes on without that module, which is reported by name. A module
  that has sent nothing at all meanwhile (its stream ended or went silent)
  is marked silent: frames stop waiting for it, and it rejoins if it sends
  again. A module whose own stream is waiting behind a lost message is
  given that wait (its reorderer skips the gap after ``gap_timeout``).
- A module whose series end comes before a frame the others sent is done:
  frames stop waiting for it. The series ends when every module still in it
  has ended (or gone silent); then the frame counts are compared, and each
  module missing from frames is reported with how many.
- The first frame of a series fixes the modules' shape, type and
  compression (what most modules send, ties: the first module): a module
  that sends something else is reported and its frames are not stored, as
  they cannot go in the series' dataset.

Everything wrong becomes a :class:`~protocols.model.Problem` in the ordered
stream, after the series' header, so the writer puts the receiver in error
for that series and the other modules' frames are still stored.

Memory stays bounded: the matcher takes a module's messages from its
reorderer only while that module holds fewer than ``window`` frames (and
``window_bytes`` / K) waiting for other modules, and nothing while messages it
took before still wait (a header for the next series); otherwise that
reorderer (``window_bytes`` / K) fills and its workers, then its ZeroMQ
socket, push back on that module's sender.
Modules that send frames in very different orders (beyond the window) end
up waiting for each other until ``gap_timeout``, which is reported.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import numpy as np

from protocols.model import Image, Message, ModuleLayout, SeriesEnd, SeriesStart
from receiver.nexus import DETECTOR_FIELDS
from receiver.reorder import Gap, Reorderer, Stale
from receiver.stream_items import Malformed, ModuleImage, ModuleParts, Problem

Item = Message | Malformed | Gap | Stale | Problem
Layout = tuple[tuple[int, ...], str, str]

PLACEMENT_KEYS = ("x", "y", "rotation", "full_shape")
"""Keys of a module header's 2nd part that place the module (MAX IV's Lambda streamers)."""


class ModuleState(StrEnum):
    WAITING = "waiting"
    """No series yet."""
    OPEN = "open"
    """In the series: frames wait for it."""
    SILENT = "silent"
    """In the series but sent nothing while the others went on; frames do not wait."""
    ENDED = "ended"
    """Sent its series end (or a new header: its end was lost)."""
    ABSENT = "absent"
    """Sent no header for this series in time; may still join with one."""
    EXCLUDED = "excluded"
    """Named another file than the other modules: left out of this series."""


@dataclass(eq=False)
class _Module:
    index: int
    name: str
    endpoint: str
    x: int
    y: int
    rotation: int
    input: Reorderer[Message | Malformed]
    inbox: deque[Message | Malformed | Gap | Stale] = field(default_factory=deque)
    state: ModuleState = ModuleState.WAITING
    held: int = 0
    held_bytes: int = 0
    last_taken: float = 0.0
    newest: float = 0.0
    """When the newest frame it sent a part of was first seen: it has moved on past older ones."""
    frames: int = 0
    missing: int = 0
    first_missing: int | None = None
    end: SeriesEnd | None = None
    told: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        return f"module {self.name!r} ({self.endpoint})"

    def new_series(self) -> None:
        self.newest = 0.0
        self.frames = self.missing = 0
        self.first_missing = None
        self.end = None
        self.told.clear()


@dataclass(eq=False, slots=True)
class _Frame:
    number: int
    parts: list[Image | None]
    first: float


class ModuleMatcher:
    """K module streams in, one ordered stream of joined frames out (module docstring)."""

    def __init__(
        self,
        layout: ModuleLayout,
        window: int,
        gap_timeout: float,
        window_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._layout = layout
        self._window = window
        self._gap_timeout = gap_timeout
        count = len(layout.modules)
        self._window_bytes = max(1, window_bytes // count)
        self._clock = clock
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._modules = [
            _Module(
                index,
                placement.name,
                placement.endpoint,
                placement.x,
                placement.y,
                placement.rotation % 4,
                Reorderer(window, gap_timeout, self._window_bytes, (self._lock, self._ready)),
            )
            for index, placement in enumerate(layout.modules)
        ]
        self._out: deque[Item] = deque()
        self._held_problems: list[Problem] = []
        self._closed = False
        self._open = False
        self._filename = ""
        self._pending: dict[int, _Frame] = {}
        self._stored: set[int] = set()
        self._reference: Layout | None = None
        self._first_header: float | None = None
        self._wake: float | None = None

    @property
    def inputs(self) -> list[Reorderer[Message | Malformed]]:
        """One reorderer per module, in the layout's order: the module's workers put into it."""
        return [module.input for module in self._modules]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._ready.notify_all()
        for module in self._modules:
            module.input.close()

    def snapshot(self) -> list[dict[str, Any]]:
        """What each module did in the current (or last) series, for the status."""
        with self._lock:
            return [
                {
                    "name": m.name,
                    "connect": m.endpoint,
                    "state": str(m.state),
                    "frames_received": m.frames,
                    "frames_missing": m.missing,
                    "first_missing": m.first_missing,
                }
                for m in self._modules
            ]

    def get_batch(self, timeout: float, limit: int) -> list[Item]:
        """Up to ``limit`` joined messages and reports in order; empty on timeout or close."""
        deadline = self._clock() + timeout
        with self._lock:
            while not self._closed:
                self._advance(limit)
                if self._out:
                    return [self._out.popleft() for _ in range(min(limit, len(self._out)))]
                now = self._clock()
                if now >= deadline:
                    return []
                wait = deadline - now
                if self._wake is not None:
                    wait = min(wait, max(0.0, self._wake - now))
                # The modules' reorderers skip their gaps only when asked: ask again in time.
                self._ready.wait(min(wait, self._gap_timeout / 4))
            return []

    # Everything below runs with the lock held, in the collector's thread.

    def _advance(self, limit: int) -> None:
        progress = True
        while progress and len(self._out) < limit:
            now = self._clock()
            self._wake = None
            progress = False
            for module in self._modules:
                progress |= self._pull(module, now)
                progress |= self._consume(module, now)
            if self._open:
                progress |= self._expire(now)
                progress |= self._finish()
            else:
                progress |= self._start(now)
        if not self._open and not self._header_waiting() and self._held_problems:
            self._out.extend(self._held_problems)
            self._held_problems.clear()

    def _pull(self, module: _Module, now: float) -> bool:
        """Take what the module's reorderer has ready, as far as the module's budget allows.

        Nothing while messages taken before still wait (a header for the next
        series): what waits is then at most one reorderer's worth of bytes.
        """
        room = self._window - module.held
        if module.inbox or room <= 0 or module.held_bytes >= self._window_bytes:
            return False
        items = module.input.take_ready(room)
        if not items:
            return False
        module.inbox.extend(items)
        module.last_taken = now
        return True

    def _consume(self, module: _Module, now: float) -> bool:
        """Handle the module's messages in its stream order until one has to wait."""
        progress = False
        inbox = module.inbox
        while inbox:
            item = inbox[0]
            if isinstance(item, SeriesStart) and not self._join(module, item, now):
                return progress
            inbox.popleft()
            progress = True
            if isinstance(item, Image):
                self._image(module, item, now)
            elif isinstance(item, SeriesEnd):
                self._end(module, item)
            elif isinstance(item, Malformed):
                self._report(
                    f"{module.label}: malformed message (msg_number {item.seq}) skipped: "
                    f"{item.reason}",
                    malformed=1,
                )
            elif isinstance(item, Gap):
                self._report(
                    f"{module.label}: messages {item.first}..{item.last} of its stream never "
                    "arrived",
                    lost=item.count,
                )
            elif isinstance(item, Stale):
                self._report(
                    f"{module.label}: {item.count} messages arrived after the receiver had "
                    "moved past their place (an earlier series, or twice) and were dropped"
                )
        return progress

    def _join(self, module: _Module, header: SeriesStart, now: float) -> bool:
        """True when ``header`` is taken now; False while it waits for the next series."""
        if not self._open:
            return False
        if module.state in (ModuleState.OPEN, ModuleState.SILENT):
            module.state = ModuleState.ENDED
            self._report(f"{module.label} sent a new header before its series_end")
            self._flush_complete(now)
            return False
        if module.state is ModuleState.ABSENT and header.filename == self._filename:
            module.state = ModuleState.OPEN
            module.last_taken = now
            self._report(
                f"{module.label} sent its header more than {self._gap_timeout:g} s after the "
                "others; frames stored before it joined lack it"
            )
            return True
        return False

    def _image(self, module: _Module, image: Image, now: float) -> None:
        state = module.state
        if not self._open or state in (ModuleState.ENDED, ModuleState.ABSENT):
            self._once(
                module,
                "outside",
                f"{module.label} sent frame {image.frame} outside a series (no header); "
                "its frames are not stored until its next header",
            )
            return
        if state is ModuleState.EXCLUDED:
            return
        if state is ModuleState.SILENT:
            module.state = ModuleState.OPEN
        module.frames += 1
        number = image.frame
        if number in self._stored:
            self._once(
                module,
                "late",
                f"{module.label} sent frame {number} after it was stored without it "
                f"(more than {self._gap_timeout:g} s late); dropped",
            )
            return
        frame = self._pending.get(number)
        if frame is None:
            frame = self._pending[number] = _Frame(number, [None] * len(self._modules), now)
        if frame.parts[module.index] is not None:
            self._report(f"{module.label} sent frame {number} twice; the first one is kept")
            return
        frame.parts[module.index] = image
        module.newest = max(module.newest, frame.first)
        module.held += 1
        module.held_bytes += len(image.data)
        if self._complete(frame):
            self._emit(frame)

    def _end(self, module: _Module, end: SeriesEnd) -> None:
        if self._open and module.state in (ModuleState.OPEN, ModuleState.SILENT):
            module.state = ModuleState.ENDED
            module.end = end
            self._flush_complete(self._clock())
            return
        if module.state is ModuleState.EXCLUDED:
            return
        self._once(module, "end", f"{module.label} sent series_end outside a series; ignored")

    def _complete(self, frame: _Frame) -> bool:
        return all(
            part is not None or module.state is not ModuleState.OPEN
            for part, module in zip(frame.parts, self._modules, strict=True)
        )

    def _flush_complete(self, now: float) -> None:
        """Send on the frames that no longer wait for anyone (a module ended or fell silent)."""
        for frame in [f for f in self._pending.values() if self._complete(f)]:
            self._emit(frame)

    def _expire(self, now: float) -> bool:
        """Frames that waited ``gap_timeout`` for a module go on without it.

        A module lacking a frame that old is silent once it has sent nothing
        for ``gap_timeout`` (frames stop waiting for it); it skipped the frame
        when it has since sent parts of newer frames. A module that sent
        something lately but nothing newer (it lags behind the others, or
        died just after) is given until it has been quiet for ``gap_timeout``,
        and one whose own stream waits behind a lost message until its
        reorderer skips that gap.
        """
        old = []
        for frame in self._pending.values():  # in the order first seen: the rest is younger
            due = frame.first + self._gap_timeout
            if now < due:
                self._wake = due if self._wake is None else min(self._wake, due)
                break
            old.append(frame)
        progress = False
        for frame in old:
            due = frame.first + self._gap_timeout
            lacking = [
                m
                for m, part in zip(self._modules, frame.parts, strict=True)
                if part is None and m.state is ModuleState.OPEN
            ]
            for module in lacking:
                if module.input.stalled:
                    due = max(due, now + self._gap_timeout / 4)
                elif module.newest <= frame.first:
                    due = max(due, module.last_taken + self._gap_timeout)
            if now < due:
                self._wake = due if self._wake is None else min(self._wake, due)
                continue
            for module in lacking:
                self._lacks(module, frame, now)
            self._emit(frame)
            progress = True
        if progress:
            self._flush_complete(now)
        return progress

    def _lacks(self, module: _Module, frame: _Frame, now: float) -> None:
        if now - module.last_taken >= self._gap_timeout and not module.input.pending:
            module.state = ModuleState.SILENT
            self._report(
                f"{module.label} sent nothing for frame {frame.number} after "
                f"{self._gap_timeout:g} s; the frames of the other modules are stored without it"
            )
        else:
            self._once(
                module,
                "skipped",
                f"{module.label} sent no frame {frame.number} within {self._gap_timeout:g} s "
                "of the other modules; it is stored without it",
            )

    def _emit(self, frame: _Frame) -> None:
        """Frame ``frame.number`` goes on with the parts that came (and fit the series)."""
        del self._pending[frame.number]
        self._stored.add(frame.number)
        for module, part in zip(self._modules, frame.parts, strict=True):
            if part is not None:
                module.held -= 1
                module.held_bytes -= len(part.data)
        reference = self._reference or self._choose_reference(frame)
        shape, _, compression = reference
        chunks: list[Any] = []
        lead: Image | None = None
        for module, received in zip(self._modules, frame.parts, strict=True):
            part = received
            if part is not None and _layout_of(part) != reference:
                self._once(
                    module,
                    "layout",
                    f"{module.label} sends {_describe(_layout_of(part))} frames but the series "
                    f"started with {_describe(reference)}; its frames are not stored",
                )
                part = None
            if part is None:
                module.missing += 1
                if module.first_missing is None:
                    module.first_missing = frame.number
                chunks.append(None)
                continue
            chunks.append(part.data)
            lead = lead or part
        if lead is None:
            return
        self._out.append(
            ModuleImage(
                seq=lead.seq,
                frame=frame.number,
                shape=(len(chunks), *shape),
                dtype=lead.dtype,
                compression=compression,
                data=ModuleParts(tuple(chunks)),  # type: ignore[arg-type]
                discard=lead.discard,
                fields=lead.fields,
                layout=self._layout,
            )
        )

    def _choose_reference(self, frame: _Frame) -> Layout:
        """What most modules send in the series' first frame (ties: the first module)."""
        layouts = [_layout_of(part) for part in frame.parts if part is not None]
        counts = Counter(layouts)
        reference = max(layouts, key=lambda layout: counts[layout])
        self._reference = reference
        shape = reference[0]
        if len(shape) != 2:
            self._report(
                f"module frames must have 2 dimensions to be placed in the full image; "
                f"they have shape {list(shape)}"
            )
            return reference
        self._check_fit(shape)
        return reference

    def _check_fit(self, shape: tuple[int, ...]) -> None:
        """Report modules that reach beyond the full image or overlap another one."""
        height, width = self._layout.full_shape
        boxes = []
        for module in self._modules:
            rows, columns = shape if module.rotation % 2 == 0 else shape[::-1]
            box = (module.y, module.x, module.y + rows, module.x + columns)
            if box[2] > height or box[3] > width:
                self._report(
                    f"{module.label}: its {shape[0]}x{shape[1]} frames, turned {module.rotation} "
                    f"quarter turns and placed at x={module.x}, y={module.y}, reach beyond "
                    f"full_shape {list(self._layout.full_shape)}; the assembled image cuts them"
                )
            for other, other_box in boxes:
                if _overlap(box, other_box):
                    self._report(
                        f"{module.label} overlaps module {other.name!r} in the full image; "
                        "check x, y and rotation in the configuration"
                    )
            boxes.append((module, box))

    def _finish(self) -> bool:
        """End the series once no module is still in it."""
        if any(m.state is ModuleState.OPEN for m in self._modules):
            return False
        for frame in list(self._pending.values()):
            self._emit(frame)
        in_series = [
            m
            for m in self._modules
            if m.state in (ModuleState.ENDED, ModuleState.SILENT) or m.frames
        ]
        counts = {m.name: m.frames for m in in_series}
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{name!r} {frames}" for name, frames in counts.items())
            self._report(f"the modules disagree on the number of frames: {listed}")
        stored = len(self._stored)
        for module in in_series:
            if module.missing:
                self._report(
                    f"{module.label} is missing from {module.missing} of the {stored} frames "
                    f"stored (the first: frame {module.first_missing})"
                )
        end = next((m.end for m in self._modules if m.end is not None), None)
        self._out.append(end or SeriesEnd(seq=-1))
        self._open = False
        self._pending.clear()
        self._stored = set()
        for module in self._modules:
            module.told.clear()  # its state stays, for the status, until the next header
        return True

    def _header_waiting(self) -> bool:
        return any(m.inbox and isinstance(m.inbox[0], SeriesStart) for m in self._modules)

    def _start(self, now: float) -> bool:
        """Open the series once every module's header is here, or ``gap_timeout`` after the first."""
        heads = [m for m in self._modules if m.inbox and isinstance(m.inbox[0], SeriesStart)]
        if not heads:
            self._first_header = None
            return False
        if self._first_header is None:
            self._first_header = now
        if len(heads) < len(self._modules):
            due = self._first_header + self._gap_timeout
            if now < due:
                self._wake = due if self._wake is None else min(self._wake, due)
                return False
        self._first_header = None
        headers = {m.index: cast(SeriesStart, m.inbox.popleft()) for m in heads}
        names = Counter(h.filename for h in headers.values())
        most = max(names.values())
        filename = next(h.filename for h in headers.values() if names[h.filename] == most)
        problems: list[str] = []
        for module in self._modules:
            module.new_series()
            module.last_taken = now
            header = headers.get(module.index)
            if header is None:
                module.state = ModuleState.ABSENT
                problems.append(
                    f"{module.label} sent no header within {self._gap_timeout:g} s of the other "
                    f"modules; the series {filename!r} goes on without it"
                )
            elif header.filename != filename:
                module.state = ModuleState.EXCLUDED
                problems.append(
                    f"{module.label} names the file {header.filename!r} but the other "
                    f"modules {filename!r}; its frames are not stored"
                )
            else:
                module.state = ModuleState.OPEN
                problems.extend(self._placement_problems(module, header.meta))
        taken = [headers[m.index] for m in self._modules if m.state is ModuleState.OPEN]
        self._out.append(self._series_start(taken, problems))
        self._out.extend(Problem(reason) for reason in problems)
        self._out.extend(self._held_problems)
        self._held_problems.clear()
        self._open = True
        self._filename = filename
        self._reference = None
        self._stored = set()
        return True

    def _series_start(self, headers: Sequence[SeriesStart], problems: list[str]) -> SeriesStart:
        lead = headers[0]
        names = {m.name for m in self._modules} | DETECTOR_FIELDS
        meta = {k: v for k, v in lead.meta.items() if k not in PLACEMENT_KEYS}
        for key in [k for k in meta if k in names]:
            del meta[key]
            problems.append(
                f"header metadata {key!r} has the name of a module or of the file's own "
                "data; it was not stored"
            )
        module_meta = {}
        for module, header in zip(
            [m for m in self._modules if m.state is ModuleState.OPEN], headers, strict=True
        ):
            own = {
                k: v
                for k, v in header.meta.items()
                if k not in PLACEMENT_KEYS and (k not in meta or meta[k] != v) and k not in names
            }
            if own:
                module_meta[module.name] = own
        return SeriesStart(
            seq=lead.seq,
            filename=lead.filename,
            meta=meta,
            fields=lead.fields,
            modules=self._layout,
            module_meta=module_meta,
        )

    def _placement_problems(self, module: _Module, meta: dict[str, Any]) -> list[str]:
        """The header's placement (MAX IV: x, y, rotation in degrees, full_shape) against ours."""
        told = {key: meta[key] for key in PLACEMENT_KEYS if key in meta}
        ours = {
            "x": module.x,
            "y": module.y,
            "rotation": module.rotation * 90,
            "full_shape": list(self._layout.full_shape),
        }
        wrong = [
            key
            for key, value in told.items()
            if (value % 360 if key == "rotation" and isinstance(value, int) else value) != ours[key]
        ]
        if not wrong:
            return []
        theirs = ", ".join(f"{key} {told[key]!r}" for key in wrong)
        mine = ", ".join(f"{key} {ours[key]!r}" for key in wrong)
        return [
            f"{module.label} places itself at {theirs} in its header but the configuration at "
            f"{mine}; the configuration's placement is stored and used"
        ]

    def _report(self, reason: str, lost: int = 0, malformed: int = 0) -> None:
        problem = Problem(reason, lost, malformed)
        if self._open:
            self._out.append(problem)
        else:
            self._held_problems.append(problem)

    def _once(self, module: _Module, kind: str, reason: str) -> None:
        """Report a module's problem of one kind once per series (or between series)."""
        if kind not in module.told:
            module.told.add(kind)
            self._report(reason)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Boxes (top, left, bottom, right) that share a pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _layout_of(image: Image) -> Layout:
    return image.shape, image.dtype.str, image.compression


def _describe(layout: Layout) -> str:
    shape, dtype, compression = layout
    return f"{'x'.join(map(str, shape))} {np.dtype(dtype).name} {compression}"

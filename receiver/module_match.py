"""Joins the module streams of a multi-module detector frame by frame.

An XSpectrum Lambda sends one STINS stream per module (four streams, from
two DCUs), each with its own ``msg_number`` sequence: header, frames, series
end. Every module stream gets its own workers and its own
:class:`~receiver.reorder.Reorderer`, which puts that stream back in
``msg_number`` order exactly as for a one-stream detector. This matcher sits
between those reorderers and the collector (it offers the collector the same
``get_batch``) and joins the modules. Each part of that is its own piece,
all run under the one lock the module reorderers share, in the collector's
thread:

- :mod:`receiver.module_feed`: one module's stream as the matcher takes it
  (bounded by its budget), its state in the series and its counters;
- :mod:`receiver.module_headers`: when a series opens, with which modules,
  under which header;
- :mod:`receiver.module_frames`: frame k of every module into one
  :class:`~receiver.stream_items.ModuleImage`, as soon as no module still
  open lacks it (:mod:`receiver.module_fit`: the layout its parts must have);
- :mod:`receiver.module_timeouts`: a frame that waited ``gap_timeout`` goes
  on without the modules it waits for, which are named silent or skipping;
- :mod:`receiver.module_output`: the joined stream out, each problem after
  the header of the series it concerns.

What is left here is each module's messages in its stream order: a header
waits for the next series (or, sent before the series end, ends the module's
part of this one: its end was lost; or joins a module that was late), a frame
goes to the join, a series end stops frames from waiting for that module.
The series ends when every module still in it has ended (or gone silent);
then the frame counts are compared, and each module missing from frames is
reported with how many.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from protocols.model import Image, Message, ModuleLayout, SeriesEnd, SeriesStart
from receiver.module_feed import ModuleFeed, ModuleState, tally
from receiver.module_frames import FrameJoin
from receiver.module_headers import SeriesOpener
from receiver.module_output import Item, MatchedOutput
from receiver.module_timeouts import Alarm, FrameTimeouts
from receiver.reorder import Gap, Reorderer, Stale
from receiver.stream_items import Malformed


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
        self._window = window
        self._gap_timeout = gap_timeout
        self._window_bytes = max(1, window_bytes // len(layout.modules))
        self._clock = clock
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._modules = [
            ModuleFeed(
                index,
                placement,
                Reorderer(window, gap_timeout, self._window_bytes, (self._lock, self._ready)),
            )
            for index, placement in enumerate(layout.modules)
        ]
        self._output = MatchedOutput()
        self._frames = FrameJoin(layout, self._modules, self._output, gap_timeout)
        self._timeouts = FrameTimeouts(self._frames, self._output, gap_timeout)
        self._opener = SeriesOpener(layout, self._modules, gap_timeout)
        self._alarm = Alarm()
        self._closed = False
        self._filename = ""

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
            return [module.status() for module in self._modules]

    def get_batch(self, timeout: float, limit: int) -> list[Item]:
        """Up to ``limit`` joined messages and reports in order; empty on timeout or close."""
        deadline = self._clock() + timeout
        with self._lock:
            while not self._closed:
                self._advance(limit)
                if self._output:
                    return self._output.take(limit)
                now = self._clock()
                if now >= deadline:
                    return []
                wait = deadline - now
                if self._alarm.at is not None:
                    wait = min(wait, max(0.0, self._alarm.at - now))
                # The modules' reorderers skip their gaps only when asked: ask again in time.
                self._ready.wait(min(wait, self._gap_timeout / 4))
            return []

    # Everything below runs with the lock held, in the collector's thread.

    def _advance(self, limit: int) -> None:
        output = self._output
        progress = True
        while progress and len(output) < limit:
            now = self._clock()
            self._alarm.clear()
            progress = False
            for module in self._modules:
                progress |= module.pull(now, self._window, self._window_bytes)
                progress |= self._consume(module, now)
            if output.open:
                progress |= self._timeouts.expire(now, self._alarm)
                progress |= self._finish()
            else:
                progress |= self._start(now)
        if not output.open and not any(m.heading for m in self._modules):
            output.release_held()

    def _consume(self, module: ModuleFeed, now: float) -> bool:
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
            elif isinstance(item, Malformed | Gap | Stale):
                self._stream_problem(module, item)
        return progress

    def _join(self, module: ModuleFeed, header: SeriesStart, now: float) -> bool:
        """True when ``header`` is taken now; False while it waits for the next series."""
        if not self._output.open:
            return False
        if module.state in (ModuleState.OPEN, ModuleState.SILENT):
            module.state = ModuleState.ENDED
            self._output.report(f"{module.label} sent a new header before its series_end")
            self._frames.flush_complete()
            return False
        if module.state is ModuleState.ABSENT and header.filename == self._filename:
            module.state = ModuleState.OPEN
            module.last_taken = now
            self._output.report(
                f"{module.label} sent its header more than {self._gap_timeout:g} s after the "
                "others; frames stored before it joined lack it"
            )
            return True
        return False

    def _image(self, module: ModuleFeed, image: Image, now: float) -> None:
        state = module.state
        if not self._output.open or state in (ModuleState.ENDED, ModuleState.ABSENT):
            self._output.once(
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
        self._frames.add(module, image, now)

    def _end(self, module: ModuleFeed, end: SeriesEnd) -> None:
        if self._output.open and module.state in (ModuleState.OPEN, ModuleState.SILENT):
            module.state = ModuleState.ENDED
            module.end = end
            self._frames.flush_complete()
            return
        if module.state is ModuleState.EXCLUDED:
            return
        self._output.once(
            module, "end", f"{module.label} sent series_end outside a series; ignored"
        )

    def _stream_problem(self, module: ModuleFeed, item: Malformed | Gap | Stale) -> None:
        """What the module's own reorderer found wrong with its stream."""
        if isinstance(item, Malformed):
            self._output.report(
                f"{module.label}: malformed message (msg_number {item.seq}) skipped: {item.reason}",
                malformed=1,
            )
        elif isinstance(item, Gap):
            self._output.report(
                f"{module.label}: messages {item.first}..{item.last} of its stream never arrived",
                lost=item.count,
            )
        else:
            self._output.report(
                f"{module.label}: {item.count} messages arrived after the receiver had "
                "moved past their place (an earlier series, or twice) and were dropped"
            )

    def _start(self, now: float) -> bool:
        """Open the next series once the opener says it may."""
        opened = self._opener.open(now, self._alarm)
        if opened is None:
            return False
        header, problems = opened
        self._output.open_series(header, problems)
        self._filename = header.filename
        self._frames.begin(header.modules)
        return True

    def _finish(self) -> bool:
        """End the series once no module is still in it."""
        if any(m.state is ModuleState.OPEN for m in self._modules):
            return False
        stored = self._frames.finish()
        for reason in tally(self._modules, stored):
            self._output.report(reason)
        end = next((m.end for m in self._modules if m.end is not None), None)
        self._output.close_series(end or SeriesEnd(seq=-1))
        for module in self._modules:
            module.told.clear()  # its state stays, for the status, until the next header
        return True

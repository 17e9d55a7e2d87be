"""The DCU's RAM disk as camserver fills it: whole files appearing one by one, and a size.

Completion: camserver writes an image under a hidden temporary name and
renames it into place when it is complete, so a watcher sees each image
appear whole (an inotify ``IN_MOVED_TO``). The evidence is indirect, since
Dectris does not document it: MAX IV's Pilatus streamer reacts to
``IN_MOVED_TO`` only, and Diamond's PPU file streamer skips dot-files. The
temporary name used here, ``.<name>.tmp``, is our choice. ``in-place`` mode
writes under the final name instead, in chunks with an optional pause
between them, as a slow or foreign writer would: a streamer that reads a file
on creation or modification then sees it half written, one that waits for
``IN_CLOSE_WRITE`` does not.

Size: a real RAM disk is a tmpfs of fixed size; here a byte limit on the
files in the image directory plays that part, so tests can fill it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

WriteMode = Literal["rename", "in-place"]
WRITE_MODES: tuple[WriteMode, ...] = ("rename", "in-place")


class RamDiskFull(OSError):
    """The image does not fit in what is left of the RAM disk."""


class RamDisk:
    """Writes image files the way camserver does; ``limit_bytes`` None = no limit."""

    def __init__(
        self,
        limit_bytes: int | None = None,
        write_mode: WriteMode = "rename",
        chunks: int = 4,
        chunk_pause_s: float = 0.0,
    ) -> None:
        if write_mode not in WRITE_MODES:
            raise ValueError(f"write mode {write_mode!r} unknown; use one of {WRITE_MODES}")
        self.limit_bytes = limit_bytes
        self.write_mode = write_mode
        self._chunks = max(1, chunks)
        self._chunk_pause_s = chunk_pause_s

    def used(self, directory: Path) -> int:
        """Bytes held by the files in ``directory`` (temporary ones included)."""
        total = 0
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # removed by the streamer meanwhile
        return total

    def check_room(self, directory: Path, nbytes: int) -> None:
        """Raise :class:`RamDiskFull` unless ``nbytes`` more fit into ``directory``."""
        if self.limit_bytes is None:
            return
        used = self.used(directory)
        if used + nbytes > self.limit_bytes:
            raise RamDiskFull(
                f"RAM disk full: {directory} holds {used} of {self.limit_bytes} bytes, "
                f"no room for {nbytes} more (is the streamer deleting the images it sent?)"
            )

    def write(self, path: Path, data: bytes, stop: threading.Event | None = None) -> None:
        """Write ``path`` whole: via a temporary name and a rename, or in place in chunks.

        A ``stop`` during a slow in-place write finishes the file anyway, as
        camserver finishes the image it is reading out.
        """
        self.check_room(path.parent, len(data))
        if self.write_mode == "rename":
            temporary = path.with_name(f".{path.name}.tmp")
            try:
                with temporary.open("wb") as out:
                    out.write(data)
                temporary.rename(path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
            return
        self._write_in_place(path, data, lambda: stop is not None and stop.is_set())

    def _write_in_place(self, path: Path, data: bytes, stopping: Callable[[], bool]) -> None:
        step = -(-len(data) // self._chunks)
        view = memoryview(data)
        pause = threading.Event()
        with path.open("wb") as out:
            for offset in range(0, len(data), step):
                out.write(view[offset : offset + step])
                out.flush()
                if self._chunk_pause_s and offset + step < len(data) and not stopping():
                    pause.wait(self._chunk_pause_s)

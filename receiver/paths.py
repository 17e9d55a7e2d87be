"""Where a file named by the stream may go: inside the data root, never over an existing file."""

from __future__ import annotations

from pathlib import Path


class PathRefusedError(ValueError):
    """The destination is not acceptable; the message says why and what to do."""


def resolve_destination(data_root: Path, filename: str) -> Path:
    """Resolve ``filename`` inside ``data_root`` and check that it may be created.

    Relative names are taken relative to the root; absolute names must already
    lie inside it. Symbolic links and ``..`` are resolved before the check, so
    neither can lead out of the root.
    """
    root = data_root.resolve()
    target = (root / filename).resolve()
    if not target.is_relative_to(root) or target == root:
        raise PathRefusedError(
            f"file name {filename!r} lies outside the data root {root}; "
            "send a name relative to the data root or an absolute path inside it"
        )
    if target.exists():
        raise PathRefusedError(
            f"file {target} already exists and is never overwritten; choose a new file name"
        )
    return target

"""Where a file named by the stream may go: inside the data root, never over an existing file.

:func:`create_destination` checks the name and creates the file in one step,
relative to directory descriptors, so nothing can be swapped in between the
check and the creation (checking a path string first and creating the file
by name afterwards let a swapped-in link send files out of the root).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

NAME_MAX = 255
"""Bytes a single path component may have (Linux, every common file system)."""
PATH_MAX = 4096
"""Bytes a whole path may have, its terminating NUL included (Linux)."""
SHOWN_NAME_CHARS = 120
"""A refused name is quoted up to this many characters: a name can be megabytes long."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_STEP_FLAGS = _DIR_FLAGS | os.O_NOFOLLOW
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_MODE = 0o777
"""As ``mkdir -p`` and ``Path.mkdir``: the umask takes away what the site does not want."""
_FILE_MODE = 0o666
"""As ``open(..., "x")`` and HDF5's own create: the umask applies."""


class PathRefusedError(ValueError):
    """The destination is not acceptable; the message says why and what to do."""


@dataclass(slots=True)
class CreatedFile:
    """A new, empty file created by :func:`create_destination`, still open.

    ``fd`` is open for writing on the new file; ``path`` is where it was
    created (the resolved data root joined with the checked components).
    ``proc_path`` names this very file for a library that wants a name:
    opening ``/proc/self/fd/<fd>`` follows the kernel's own reference to the
    opened inode, not the file's name, so a link or file swapped in at that
    name afterwards cannot redirect it. Use it as a context manager, which
    closes the descriptors on the way out and, if the block raised, removes
    the empty file again (only if its name still holds this very file)::

        with create_destination(root, filename) as created:
            h5 = h5py.File(created.proc_path, "w", libver="latest")
        # h5 holds its own descriptor of the same inode; created.path names it.
    """

    fd: int
    path: Path
    _dir_fd: int = field(repr=False)
    _leaf: bytes = field(repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def proc_path(self) -> str:
        """``/proc/self/fd/<fd>``: opens the created inode whatever its name points to now."""
        if self._closed:
            raise ValueError(f"{self.path} was already closed; open /proc/self/fd/N before that")
        return f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        """Close the file and its directory (idempotent); the file stays where it is."""
        if self._closed:
            return
        self._closed = True
        try:
            os.close(self.fd)
        finally:
            os.close(self._dir_fd)

    def remove(self) -> None:
        """Remove the file again if its name still holds this file (a failed open of it).

        Directories created for it are left, as ``mkdir -p`` leaves them.
        """
        if self._closed:
            raise ValueError(f"{self.path} was already closed; remove it before closing")
        mine = os.fstat(self.fd)
        try:
            there = os.stat(self._leaf, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
            os.unlink(self._leaf, dir_fd=self._dir_fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc is not None:
                with contextlib.suppress(OSError):  # the error that brought us here matters
                    self.remove()
        finally:
            self.close()


def create_destination(data_root: Path, filename: str) -> CreatedFile:
    """Create ``filename`` inside ``data_root``, exclusively, and return it open.

    The check and the creation are one step. Checking a path string and then
    creating the file by name leaves a window in which a symbolic link put
    in place of a directory sends the file out of the root (it did, for 38 of
    150 series, in a test). So this walks from a descriptor of the data root
    down each component with ``openat(O_DIRECTORY | O_NOFOLLOW)``, creating
    missing directories in the directory it holds open (``mkdir -p``, as the
    receiver always did), and creates the file itself with
    ``O_CREAT | O_EXCL | O_NOFOLLOW`` in the last one. A name swapped under
    the walk afterwards changes nothing: every step uses the directory
    already opened, and a link at any step is refused, never followed.

    The data root is configuration and may be reached through links (it is
    opened as configured); inside it nothing is followed. A relative name is
    taken from the root; an absolute one must start with the root, as
    configured or resolved. Refused with :class:`PathRefusedError`, before
    anything is created: NUL bytes, names not encodable as file names, a
    component over NAME_MAX (255) bytes, a path over PATH_MAX (4096) bytes,
    ``..``, an absolute path outside the root, the root itself, a name
    ending in ``/`` (a directory), a symbolic link or non-directory in any
    component, and an existing file (never overwritten). Other failures
    (permissions, a missing data root, a full disk) raise :class:`OSError`.

    Write HDF5 into the result through ``CreatedFile.proc_path`` with mode
    ``"w"`` (see :class:`CreatedFile`), never through ``path``.
    """
    name = _encoded(filename)
    root_fd = os.open(data_root, _DIR_FLAGS)
    try:
        root = os.fsencode(os.path.realpath(data_root))
        parts = _components(name, filename, data_root, root)
        full = b"/".join([root.rstrip(b"/"), *parts])
        if len(full) >= PATH_MAX:
            raise PathRefusedError(
                f"file name {_shown(filename)} makes a path of {len(full)} bytes in the data "
                f"root {os.fsdecode(root)}, more than the {PATH_MAX - 1} a path may have; "
                "choose a shorter name"
            )
        dir_fd = _walk(root_fd, parts[:-1], root)
        try:
            fd = _create(dir_fd, parts[-1], full)
        except BaseException:
            if dir_fd != root_fd:
                os.close(dir_fd)
            raise
    except BaseException:
        os.close(root_fd)
        raise
    if dir_fd != root_fd:
        os.close(root_fd)
    return CreatedFile(fd, Path(os.fsdecode(full)), dir_fd, parts[-1])


def _shown(filename: str) -> str:
    """``filename`` quoted for a message, shortened if it is long."""
    if len(filename) <= SHOWN_NAME_CHARS:
        return repr(filename)
    return f"{filename[:SHOWN_NAME_CHARS]!r}... ({len(filename)} characters)"


def _encoded(filename: str) -> bytes:
    """The name as the file system gets it, refused if no file can be called that."""
    if "\0" in filename:
        raise PathRefusedError(
            f"file name {_shown(filename)} contains a NUL byte, which no file name can hold; "
            "send the name without it"
        )
    if len(filename) >= PATH_MAX:  # a character is at least one byte: refuse before encoding
        raise PathRefusedError(
            f"file name {_shown(filename)} is longer than the {PATH_MAX - 1} bytes a path "
            "may have; choose a shorter name"
        )
    try:
        return os.fsencode(filename)
    except UnicodeEncodeError as exc:
        raise PathRefusedError(
            f"file name {_shown(filename)} cannot be encoded as a file name ({exc.reason} at "
            f"character {exc.start}); send a valid UTF-8 name"
        ) from None


def _components(name: bytes, filename: str, data_root: Path, root: bytes) -> list[bytes]:
    """The components of ``name`` below the root, checked; nothing on disk is looked at."""
    parts = [part for part in name.split(b"/") if part not in (b"", b".")]
    if b".." in parts:
        where = (
            "lies outside the data root"
            if not name.startswith(b"/") and os.path.normpath(name).startswith(b"..")
            else "contains '..'"
        )
        raise PathRefusedError(
            f"file name {_shown(filename)} {where}; the receiver never goes up a directory, "
            "so '..' cannot lead out of the data root: send a name relative to the data "
            "root, or an absolute path inside it, without '..'"
        )
    if name.startswith(b"/"):
        parts = _below_root(parts, filename, data_root, root)
    if not parts:
        raise PathRefusedError(
            f"file name {_shown(filename)} names the data root {os.fsdecode(root)} itself, "
            "not a file in it; send a file name such as 'scan_001.h5'"
        )
    if name.endswith((b"/", b"/.")):
        raise PathRefusedError(
            f"file name {_shown(filename)} ends with '/' and so names a directory, not a "
            "file; send the name of the file to create, such as 'sub/scan_001.h5'"
        )
    for part in parts:
        if len(part) > NAME_MAX:
            raise PathRefusedError(
                f"component {_shown(os.fsdecode(part))} of file name {_shown(filename)} is "
                f"{len(part)} bytes, more than the {NAME_MAX} a file name may have; "
                "choose a shorter name"
            )
    return parts


def _below_root(parts: list[bytes], filename: str, data_root: Path, root: bytes) -> list[bytes]:
    """What follows the data root in an absolute name (as configured or resolved), or refuse."""
    for prefix in (os.fsencode(os.path.abspath(data_root)), root):
        head = [part for part in prefix.split(b"/") if part]
        if parts[: len(head)] == head:
            return parts[len(head) :]
    raise PathRefusedError(
        f"file name {_shown(filename)} lies outside the data root {os.fsdecode(root)}; "
        "send a name relative to the data root or an absolute path inside it"
    )


def _walk(root_fd: int, directories: list[bytes], root: bytes) -> int:
    """A descriptor of the last of ``directories`` below ``root_fd``, made if missing.

    Each step opens the next component relative to the directory opened
    before, never following a link; only two descriptors are open at a time,
    however deep the name.
    """
    current = root_fd
    where = root
    for part in directories:
        where = where.rstrip(b"/") + b"/" + part
        try:
            step = _open_or_make(current, part, where)
        finally:
            if current != root_fd:
                os.close(current)
        current = step
    return current


def _open_or_make(dir_fd: int, part: bytes, where: bytes) -> int:
    try:
        return os.open(part, _STEP_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _refusal(exc, dir_fd, part, where) from None
    # made meanwhile by someone else: whatever it is, the open below judges it
    with contextlib.suppress(FileExistsError):
        os.mkdir(part, _DIR_MODE, dir_fd=dir_fd)
    try:
        return os.open(part, _STEP_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _refusal(exc, dir_fd, part, where) from None


def _create(dir_fd: int, leaf: bytes, full: bytes) -> int:
    try:
        return os.open(leaf, _CREATE_FLAGS, _FILE_MODE, dir_fd=dir_fd)
    except OSError as exc:
        raise _refusal(exc, dir_fd, leaf, full) from None


def _refusal(exc: OSError, dir_fd: int, part: bytes, where: bytes) -> OSError | PathRefusedError:
    """The refusal that explains ``exc``, met at ``where``; other errors stay OSError."""
    shown = os.fsdecode(where)
    kind = _kind(dir_fd, part)
    if kind == "symbolic link":
        return PathRefusedError(
            f"{shown} is a symbolic link; the receiver follows no links inside the data root, "
            "so that none can lead a file out of it: send the real path, or configure the "
            "data root at the directory the link points to"
        )
    if exc.errno == errno.EEXIST:
        return PathRefusedError(
            f"file {shown} already exists and is never overwritten; choose a new file name"
        )
    if exc.errno == errno.ENOTDIR:
        return PathRefusedError(
            f"{shown} is a {kind or 'file'}, not a directory, so nothing can be created in it; "
            "choose another file name"
        )
    if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ):
        return PathRefusedError(
            f"{shown} cannot be used ({exc.strerror or exc}); choose another file name"
        )
    return exc


def _kind(dir_fd: int, part: bytes) -> str:
    """What ``part`` is in ``dir_fd`` now, without following it ("" if it is gone)."""
    try:
        mode = os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return ""
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "special file"

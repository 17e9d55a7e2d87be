"""create_destination under any name and under a racing swap: never a file outside the root.

Hypothesis builds names from the pieces that matter (``..``, links, NUL
bytes, over-long components, absolute paths in and out of the root, lone
surrogates) and from arbitrary text; each name runs in a fresh tree, with the
root given as itself or through a link. A thread swapping a link in and out
of the root while series start is the attack from issue 23, run against the
function directly: the check-then-create it replaces lets files out in the
same harness, so the harness is known to catch an escape.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.paths import NAME_MAX, PathRefusedError, create_destination
from tests.test_paths import naive_check

Entry = tuple[str, int | str]


def tree(top: Path) -> dict[str, Entry]:
    """Everything under ``top``, links not followed: (kind, size or link target) by path."""
    found: dict[str, Entry] = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(top))
            if path.is_symlink():
                found[key] = ("link", os.readlink(path))
            elif path.is_dir():
                found[key] = ("dir", 0)
            else:
                found[key] = ("file", path.stat().st_size)
    return found


@dataclass
class Site:
    """A fresh tree: the data root with traps in it, a place outside, a link to the root."""

    top: Path

    @property
    def root(self) -> Path:
        return self.top / "data"

    @property
    def outside(self) -> Path:
        return self.top / "outside"

    @property
    def alias(self) -> Path:
        return self.top / "alias"

    def build(self) -> None:
        self.root.mkdir()
        self.outside.mkdir()
        (self.outside / "victim.h5").write_bytes(b"precious")
        (self.root / "sub").mkdir()
        (self.root / "file.h5").write_bytes(b"kept")
        (self.root / "sub" / "old.h5").write_bytes(b"kept")
        (self.root / "link-out").symlink_to(self.outside, target_is_directory=True)
        (self.root / "link-in").symlink_to(self.root / "sub", target_is_directory=True)
        (self.root / "victim.h5").symlink_to(self.outside / "victim.h5")
        (self.root / "dangling.h5").symlink_to(self.outside / "new.h5")
        self.alias.symlink_to(self.root, target_is_directory=True)


@contextmanager
def fresh_site() -> Iterator[Site]:
    with tempfile.TemporaryDirectory(prefix="paths-") as top:
        site = Site(Path(top).resolve())
        site.build()
        yield site


PLAIN = ["sub", "new", "scan.h5", "a" * NAME_MAX, "é" * 127, "data", "outside", "alias"]
PLAIN += [" ", "-", "~", "\\", "\udcff", "scan 001.h5", "$HOME", "*"]
"""Pieces that are fine as such (a few of them only where they are)."""
TRAPS = ["..", ".", "", "link-out", "link-in", "file.h5", "victim.h5", "dangling.h5"]
TRAPS += ["old.h5", "scan\x00.h5", "\x00", "b" * (NAME_MAX + 1), "é" * 128, "\ud800"]
"""Pieces that are refused as such, or where they lead (links, existing files)."""
component = st.one_of(st.sampled_from(PLAIN * 2 + TRAPS), st.text(max_size=12))
PREFIXES = ["", "", "", "./", "{root}/", "{root}/", "{alias}/", "/", "{outside}/", "{top}/"]
"""Placeholders for absolute prefixes, filled in with the example's own paths."""


@st.composite
def names(draw: st.DrawFn) -> tuple[str, bool]:
    """(file name with placeholders, whether the root is given through its link)."""
    prefix = draw(st.sampled_from(PREFIXES))
    parts = draw(st.lists(component, min_size=1, max_size=4))
    trailing = draw(st.sampled_from(["", "", "", "", "", "/", "/."]))
    return prefix + "/".join(parts) + trailing, draw(st.booleans())


def fill(template: str, site: Site) -> str:
    for key, value in (
        ("{root}", site.root),
        ("{alias}", site.alias),
        ("{outside}", site.outside),
        ("{top}", site.top),
    ):
        template = template.replace(key, str(value))
    return template


def no_link_between(root: Path, path: Path) -> bool:
    """No component from the root down to ``path`` is a symbolic link."""
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            return False
    return True


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(names())
@example(("victim.h5", False))
@example(("dangling.h5", False))
@example(("file.h5", True))
@example(("sub/old.h5", False))
@example(("link-out/scan.h5", False))
@example(("link-in/scan.h5", True))
@example(("{root}/link-out/scan.h5", True))
@example(("{alias}/sub/new/scan.h5", False))
@example(("{outside}/scan.h5", False))
@example(("{root}/../outside/scan.h5", False))
@example(("new/link-out/scan.h5", False))
def test_any_name_lands_inside_the_root_or_is_refused_touching_nothing(
    case: tuple[str, bool],
) -> None:
    template, through_alias = case
    with fresh_site() as site:
        name = fill(template, site)
        given_root = site.alias if through_alias else site.root
        before = tree(site.top)
        try:
            created = create_destination(given_root, name)
        except PathRefusedError as exc:
            assert str(exc), "a refusal says why"
            assert tree(site.top) == before, f"refused {name!r} but changed the tree"
            return
        with created:
            opened = os.fstat(created.fd)
        real_root = site.root.resolve()
        assert created.path.is_relative_to(real_root), f"{name!r} -> {created.path}"
        made = str(created.path.relative_to(site.top.resolve()))
        assert made not in before, f"{name!r} opened the existing {made}"
        assert created.path != real_root
        assert os.path.samestat(opened, created.path.stat())
        assert no_link_between(real_root, created.path)
        after = tree(site.top)
        assert {k: v for k, v in after.items() if k in before} == before, "nothing existing changed"
        new = set(after) - set(before)
        assert all((site.top / k).resolve().is_relative_to(real_root) for k in new)
        assert tree(site.outside) == {"victim.h5": ("file", 8)}


# The race: a link swapped in and out of the data root while series start


def _renameat2() -> Callable[[Path, Path], None] | None:
    """An atomic exchange of two names (renameat2 RENAME_EXCHANGE), or None without it."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if not hasattr(libc, "renameat2"):
        return None
    renameat2 = libc.renameat2
    at_fdcwd, rename_exchange = -100, 2

    def exchange(first: Path, second: Path) -> None:
        if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange):
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(first))

    return exchange


EXCHANGE = _renameat2()


@dataclass
class RaceResult:
    created: int = 0
    refused: int = 0
    outside: int = 0


def race(tmp_path: Path, start_series: Callable[[Path, str], None], attempts: int) -> RaceResult:
    """``attempts`` series started in ``data/sub/...`` while ``sub`` swaps with a link out.

    The swapper exchanges ``sub`` (a real directory) and ``swap`` (a link to
    ``outside``) atomically, as fast as it can, so at every instant ``sub``
    is one or the other; deeper names go through ``sub`` too. The GIL is
    handed over often, so the threads interleave between system calls.
    """
    assert EXCHANGE is not None
    exchange = EXCHANGE
    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "deeper").mkdir(parents=True)
    (outside / "deeper").mkdir()
    (root / "swap").symlink_to(outside, target_is_directory=True)
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            exchange(root / "sub", root / "swap")

    thread = threading.Thread(target=swapper, name="swapper", daemon=True)
    result = RaceResult()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    thread.start()
    try:
        for attempt in range(attempts):
            name = f"sub/series_{attempt}.h5" if attempt % 2 else f"sub/deeper/s_{attempt}.h5"
            try:
                start_series(root, name)
                result.created += 1
            except PathRefusedError:
                result.refused += 1
            except OSError:
                result.refused += 1  # the old check's own race (realpath of a swapped name)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    result.outside = sum(len(files) for _, _, files in os.walk(outside))
    return result


def start_with_create_destination(root: Path, name: str) -> None:
    with create_destination(root, name) as created:
        os.write(created.fd, b"series")


def start_with_check_then_create(root: Path, name: str) -> None:
    """What the writer did before: check the name, then create the file by that name."""
    path = naive_check(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)


needs_exchange = pytest.mark.skipif(EXCHANGE is None, reason="needs renameat2 (glibc >= 2.28)")


@needs_exchange
def test_a_racing_link_never_lets_a_file_out(tmp_path: Path) -> None:
    """Rounds of 400 series until both outcomes were seen (created, and refused at the link).

    How the threads interleave depends on the machine's load, so one round
    may see only one outcome; no round may ever let a file out.
    """
    created = refused = 0
    for attempt in range(10):
        here = tmp_path / f"round-{attempt}"
        result = race(here, start_with_create_destination, attempts=400)
        assert result.outside == 0
        assert result.created + result.refused == 400
        assert sum(len(files) for _, _, files in os.walk(here / "data")) == result.created
        created, refused = created + result.created, refused + result.refused
        if created and refused:
            break

    assert created > 0, "series whose directory was real at the time are created"
    assert refused > 0, "the swap was seen: series met the link and were refused"


@needs_exchange
def test_the_same_race_lets_files_out_of_a_check_then_create(tmp_path: Path) -> None:
    """The harness catches an escape: the old way loses files to the same swap.

    Rounds of 200 series until one escapes (usually the first round; at most 20).
    """
    escaped = 0
    for attempt in range(20):
        escaped = race(tmp_path / f"round-{attempt}", start_with_check_then_create, 200).outside
        if escaped:
            break

    assert escaped > 0

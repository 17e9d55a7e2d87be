"""A file name from the stream lands inside the data root, never elsewhere, never over a file."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from receiver.paths import (
    NAME_MAX,
    PATH_MAX,
    CreatedFile,
    PathRefusedError,
    create_destination,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data_root = tmp_path / "data"
    data_root.mkdir()
    return data_root


def refused(root: Path, filename: str) -> str:
    """The refusal of ``filename``; nothing may appear in the root's parent meanwhile."""
    before = sorted(root.parent.rglob("*"))
    with pytest.raises(PathRefusedError) as info:
        create_destination(root, filename)
    assert sorted(root.parent.rglob("*")) == before, "a refusal creates nothing"
    return str(info.value)


def created_at(root: Path, filename: str) -> Path:
    with create_destination(root, filename) as created:
        return created.path


def test_relative_name_is_created_inside_the_root(root: Path) -> None:
    assert created_at(root, "scan_001.h5") == root.resolve() / "scan_001.h5"


def test_nested_directories_are_made_as_needed(root: Path) -> None:
    target = created_at(root, "2024/visit-7/scan_001.h5")

    assert target == root.resolve() / "2024" / "visit-7" / "scan_001.h5"
    assert target.is_file()


def test_absolute_name_inside_the_root_is_accepted(root: Path) -> None:
    name = str(root / "sub" / "scan.h5")

    assert created_at(root, name) == root.resolve() / "sub" / "scan.h5"


def test_root_given_through_a_symlink_still_accepts_its_own_absolute_paths(
    tmp_path: Path, root: Path
) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)

    assert created_at(alias, str(alias / "scan.h5")).resolve() == root.resolve() / "scan.h5"


@pytest.mark.parametrize("name", ["../escape.h5", "sub/../../escape.h5", "../data-other/x.h5"])
def test_dotdot_escaping_the_root_is_refused(root: Path, name: str) -> None:
    message = refused(root, name)

    assert repr(name) in message
    assert "outside the data root" in message
    assert "relative to the data root" in message


def test_absolute_name_outside_the_root_is_refused(tmp_path: Path, root: Path) -> None:
    elsewhere = str(tmp_path / "elsewhere" / "scan.h5")

    message = refused(root, elsewhere)

    assert "outside the data root" in message
    assert str(root.resolve()) in message


def test_sibling_directory_sharing_the_root_prefix_is_refused(tmp_path: Path, root: Path) -> None:
    """/x/data-old is not inside /x/data, although the strings start alike."""
    (tmp_path / "data-old").mkdir()

    refused(root, str(tmp_path / "data-old" / "scan.h5"))


def test_directory_symlink_pointing_outside_is_refused(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)

    message = refused(root, "link/scan.h5")

    assert "is a symbolic link" in message
    assert not (outside / "scan.h5").exists()


def test_dangling_file_symlink_pointing_outside_is_refused(tmp_path: Path, root: Path) -> None:
    (root / "scan.h5").symlink_to(tmp_path / "victim.h5")

    refused(root, "scan.h5")


@pytest.mark.parametrize("name", ["", ".", "sub/..", "./"])
def test_the_root_itself_is_refused(root: Path, name: str) -> None:
    message = refused(root, name)

    assert "data root" in message


def test_root_given_as_absolute_name_is_refused(root: Path) -> None:
    refused(root, str(root))


def test_existing_file_is_never_overwritten(root: Path) -> None:
    existing = root / "sub" / "scan.h5"
    existing.parent.mkdir()
    existing.write_bytes(b"precious")

    message = refused(root, "sub/scan.h5")

    assert "already exists" in message
    assert "choose a new file name" in message
    assert str(existing.resolve()) in message
    assert existing.read_bytes() == b"precious"


def test_existing_directory_is_refused_as_destination(root: Path) -> None:
    (root / "scan.h5").mkdir()

    assert "already exists" in refused(root, "scan.h5")


def test_nul_byte_is_refused_by_the_check_too(root: Path) -> None:
    """Not a ValueError of os.stat that the writer reports as an internal error."""
    message = refused(root, "scan\x00.h5")

    assert "NUL byte" in message


# create_destination: the check and the creation in one step


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def fds() -> Iterator[None]:
    """The test leaves no descriptor open behind it (every path through the walk closes)."""
    before = open_fds()
    yield
    assert open_fds() == before


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the root that nothing may ever be written to."""
    elsewhere = tmp_path / "outside"
    elsewhere.mkdir()
    (elsewhere / "victim.h5").write_bytes(b"precious")
    return elsewhere


def tree(top: Path) -> dict[str, tuple[str, int | str]]:
    """Everything under ``top``, links not followed: (kind, size or link target) by path."""
    found: dict[str, tuple[str, int | str]] = {}
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


def create(root: Path, filename: str) -> CreatedFile:
    created = create_destination(root, filename)
    created.close()
    return created


def refused_creation(top: Path, root: Path, filename: str) -> str:
    """The refusal of ``filename``, checked to have changed nothing under ``top``."""
    before = tree(top)
    with pytest.raises(PathRefusedError) as info:
        create_destination(root, filename)
    assert tree(top) == before, "a refused name must leave everything as it was"
    return str(info.value)


@pytest.mark.usefixtures("fds")
def test_creates_the_file_empty_and_returns_it_open(root: Path) -> None:
    with create_destination(root, "scan_001.h5") as created:
        assert created.path == root.resolve() / "scan_001.h5"
        assert created.proc_path == f"/proc/self/fd/{created.fd}"
        assert os.path.samestat(os.fstat(created.fd), created.path.stat())
        os.write(created.fd, b"written through the descriptor")

    assert created.path.read_bytes() == b"written through the descriptor"


@pytest.mark.usefixtures("fds")
def test_missing_directories_are_made_as_before(root: Path) -> None:
    created = create(root, "2024/visit-7/scan_001.h5")

    assert created.path == root.resolve() / "2024" / "visit-7" / "scan_001.h5"
    assert created.path.is_file()


def test_absolute_name_inside_the_root_is_created_there(root: Path) -> None:
    created = create(root, str(root / "sub" / "scan.h5"))

    assert created.path == root.resolve() / "sub" / "scan.h5"
    assert created.path.is_file()


def test_root_given_through_a_symlink_takes_both_spellings(tmp_path: Path, root: Path) -> None:
    """The data root is configuration and may be a link; it is only inside it that none is."""
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)

    by_alias = create(alias, str(alias / "a.h5"))
    by_real = create(alias, str(root / "b.h5"))

    assert by_alias.path == root.resolve() / "a.h5"
    assert by_real.path == root.resolve() / "b.h5"
    assert sorted(p.name for p in root.iterdir()) == ["a.h5", "b.h5"]


def test_dot_and_repeated_slashes_are_harmless(root: Path) -> None:
    assert create(root, "./sub//./scan.h5").path == root.resolve() / "sub" / "scan.h5"


@pytest.mark.parametrize(
    "name", ["../escape.h5", "sub/../../escape.h5", "a/../b/scan.h5", "/x/../etc/passwd"]
)
def test_any_dotdot_is_refused(tmp_path: Path, root: Path, name: str) -> None:
    message = refused_creation(tmp_path, root, name)

    assert "'..'" in message
    assert "without '..'" in message


def test_absolute_name_outside_the_root_is_refused_at_creation(
    tmp_path: Path, root: Path, outside: Path
) -> None:
    (tmp_path / "data-old").mkdir()

    for name in (str(outside / "new.h5"), str(tmp_path / "data-old" / "x.h5"), "/etc/x.h5"):
        message = refused_creation(tmp_path, root, name)
        assert "outside the data root" in message
        assert "relative to the data root" in message


@pytest.mark.parametrize("name", ["", ".", "./", "{root}", "{root}/", "{root}/.", "sub/.."])
def test_the_root_itself_is_refused_at_creation(tmp_path: Path, root: Path, name: str) -> None:
    message = refused_creation(tmp_path, root, name.format(root=root))

    assert "data root" in message


@pytest.mark.usefixtures("fds")
def test_directory_symlink_pointing_outside_is_refused_at_creation(
    tmp_path: Path, root: Path, outside: Path
) -> None:
    (root / "link").symlink_to(outside, target_is_directory=True)

    message = refused_creation(tmp_path, root, "link/scan.h5")

    assert "link" in message
    assert "symbolic link" in message
    assert "send the real path" in message


def test_symlink_inside_the_root_is_refused_too(tmp_path: Path, root: Path) -> None:
    """Following only links that stay inside is a second check that a swap can outrun."""
    (root / "real").mkdir()
    (root / "link").symlink_to(root / "real", target_is_directory=True)

    assert "symbolic link" in refused_creation(tmp_path, root, "link/scan.h5")
    assert "symbolic link" in refused_creation(tmp_path, root, str(root / "link" / "x.h5"))


@pytest.mark.usefixtures("fds")
def test_symlink_deeper_down_is_refused(tmp_path: Path, root: Path, outside: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "c").symlink_to(outside, target_is_directory=True)

    message = refused_creation(tmp_path, root, "a/b/c/d/scan.h5")

    assert str(root.resolve() / "a" / "b" / "c") in message
    assert not (outside / "d").exists()


@pytest.mark.parametrize("target", ["victim.h5", "new.h5"])
def test_file_symlink_is_never_written_through(
    tmp_path: Path, root: Path, outside: Path, target: str
) -> None:
    """A link at the file's own name, dangling or to an existing file: O_EXCL refuses both."""
    (root / "scan.h5").symlink_to(outside / target)

    message = refused_creation(tmp_path, root, "scan.h5")

    assert "symbolic link" in message
    assert (outside / "victim.h5").read_bytes() == b"precious"
    assert not (outside / "new.h5").exists()


def test_existing_file_is_never_overwritten_at_creation(tmp_path: Path, root: Path) -> None:
    existing = root / "sub" / "scan.h5"
    existing.parent.mkdir()
    existing.write_bytes(b"precious")

    message = refused_creation(tmp_path, root, "sub/scan.h5")

    assert "already exists" in message
    assert "choose a new file name" in message
    assert str(existing.resolve()) in message
    assert existing.read_bytes() == b"precious"


def test_existing_directory_is_not_a_destination(tmp_path: Path, root: Path) -> None:
    (root / "scan.h5").mkdir()

    assert "already exists" in refused_creation(tmp_path, root, "scan.h5")


@pytest.mark.parametrize("name", ["sub/", "sub/.", "scan.h5/"])
def test_a_name_ending_in_a_slash_names_no_file(tmp_path: Path, root: Path, name: str) -> None:
    message = refused_creation(tmp_path, root, name)

    assert "names a directory, not a file" in message


def test_a_file_on_the_way_is_not_a_directory(tmp_path: Path, root: Path) -> None:
    (root / "plain").write_bytes(b"")

    message = refused_creation(tmp_path, root, "plain/scan.h5")

    assert "is a file, not a directory" in message


def test_nul_byte_is_refused_with_the_reason(tmp_path: Path, root: Path) -> None:
    message = refused_creation(tmp_path, root, "scan\x00.h5")

    assert "NUL byte" in message
    assert "send the name without it" in message


def test_component_over_name_max_is_refused(tmp_path: Path, root: Path) -> None:
    assert create(root, "a" * NAME_MAX).path.name == "a" * NAME_MAX

    message = refused_creation(tmp_path, root, "sub/" + "b" * (NAME_MAX + 1))

    assert f"{NAME_MAX + 1} bytes" in message
    assert "choose a shorter name" in message


def test_name_max_counts_bytes_not_characters(tmp_path: Path, root: Path) -> None:
    """128 x 'é' is 128 characters but 256 bytes of UTF-8."""
    message = refused_creation(tmp_path, root, "é" * 128)

    assert "256 bytes" in message


def test_path_over_path_max_is_refused(tmp_path: Path, root: Path) -> None:
    deep = "/".join(["d" * 200] * 25)

    message = refused_creation(tmp_path, root, deep + "/scan.h5")

    assert f"{PATH_MAX - 1}" in message
    assert "choose a shorter name" in message


def test_huge_name_is_refused_and_quoted_short(tmp_path: Path, root: Path) -> None:
    message = refused_creation(tmp_path, root, "x" * 10_000_000)

    assert len(message) < 500
    assert "10000000 characters" in message


def test_name_that_is_no_valid_text_is_refused(tmp_path: Path, root: Path) -> None:
    """JSON can carry a lone surrogate (\\ud800), which no file name can be."""
    message = refused_creation(tmp_path, root, "scan\ud800.h5")

    assert "cannot be encoded" in message


@pytest.mark.usefixtures("fds")
def test_a_deep_name_needs_no_more_than_a_few_descriptors(root: Path) -> None:
    """300 directories deep with 8 descriptors to spare: the walk closes each one behind it."""
    name = "/".join(["d"] * 300) + "/scan.h5"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds() + 8, hard))
    try:
        created = create(root, name)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    assert created.path.is_file()


def test_missing_data_root_is_an_os_error_not_a_refusal(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        create_destination(tmp_path / "no-such-root", "scan.h5")


def test_a_failed_open_removes_the_empty_file(root: Path) -> None:
    with pytest.raises(RuntimeError), create_destination(root, "sub/scan.h5") as created:
        raise RuntimeError("HDF5 could not open it")

    assert not created.path.exists()
    assert (root / "sub").is_dir(), "directories stay, as mkdir -p leaves them"


def test_removing_never_takes_a_file_swapped_in_at_the_name(root: Path) -> None:
    with pytest.raises(RuntimeError), create_destination(root, "scan.h5") as created:
        created.path.rename(root / "moved.h5")
        created.path.write_bytes(b"someone else's")
        raise RuntimeError("HDF5 could not open it")

    assert created.path.read_bytes() == b"someone else's"


# HDF5 through the descriptor: the file written is the file created


def swap_in_a_link(created: CreatedFile, outside: Path) -> Path:
    """Move the created file away and put a link to ``outside`` at its name; the new place."""
    moved = created.path.with_name("moved-away.h5")
    created.path.rename(moved)
    created.path.symlink_to(outside / "redirected.h5")
    return moved


def test_hdf5_writes_into_the_created_file_whatever_its_name_points_to(
    root: Path, outside: Path
) -> None:
    """/proc/self/fd/N is the kernel's reference to the opened inode, not a name to look up.

    Mode "w" truncates that very inode (new and empty); "x" would refuse it,
    as it exists. libver="latest" and SWMR work on it, and writes after the
    descriptor is closed still go to it: h5py holds its own.
    """
    with create_destination(root, "scan.h5") as created:
        moved = swap_in_a_link(created, outside)
        h5 = h5py.File(created.proc_path, "w", libver="latest")
    try:
        assert h5.libver[0] != "earliest"
        data = h5.create_dataset(
            "data", shape=(0, 4), maxshape=(None, 4), chunks=(1, 4), dtype="u2"
        )
        h5.swmr_mode = True
        data.resize((2, 4))
        data.id.write_direct_chunk((0, 0), np.full(4, 7, "u2").tobytes())
        data.id.write_direct_chunk((1, 0), np.full(4, 9, "u2").tobytes())
        h5.flush()
        with h5py.File(moved, "r", swmr=True) as reader:
            np.testing.assert_array_equal(reader["data"][:], [[7] * 4, [9] * 4])
    finally:
        h5.close()

    assert not (outside / "redirected.h5").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["victim.h5"]
    with h5py.File(moved, "r") as written:
        np.testing.assert_array_equal(written["data"][:], [[7] * 4, [9] * 4])


def test_hdf5_ignores_a_directory_swapped_in_after_creation(
    tmp_path: Path, root: Path, outside: Path
) -> None:
    with create_destination(root, "sub/scan.h5") as created:
        (root / "sub").rename(tmp_path / "sub-moved")
        (root / "sub").symlink_to(outside, target_is_directory=True)
        with h5py.File(created.proc_path, "w", libver="latest") as h5:
            h5["value"] = 42

    assert sorted(p.name for p in outside.iterdir()) == ["victim.h5"]
    with h5py.File(tmp_path / "sub-moved" / "scan.h5", "r") as written:
        assert written["value"][()] == 42


def test_check_then_create_is_what_a_swap_defeats(tmp_path: Path, root: Path) -> None:
    """Why the check alone is not enough: after it, the same swap redirects a create by name."""
    (root / "sub").mkdir()
    path = naive_check(root, "sub/scan.h5")
    (root / "sub").rename(tmp_path / "sub-moved")
    (root / "sub").symlink_to(tmp_path / "escaped", target_is_directory=True)
    (tmp_path / "escaped").mkdir()

    with h5py.File(path, "x") as h5:
        h5["value"] = 1

    assert (tmp_path / "escaped" / "scan.h5").exists()


def test_hdf5_mode_w_truncates_only_the_created_inode(root: Path, outside: Path) -> None:
    """A file moved in at the name before HDF5 opens is neither truncated nor written."""
    with create_destination(root, "scan.h5") as created:
        created.path.rename(root / "moved-away.h5")
        (outside / "victim.h5").rename(created.path)
        with h5py.File(created.proc_path, "w", libver="latest") as h5:
            h5["value"] = 3

    assert created.path.read_bytes() == b"precious"
    with h5py.File(root / "moved-away.h5", "r") as written:
        assert written["value"][()] == 3


def naive_check(root: Path, filename: str) -> Path:
    """Check a name by resolving it as a string (what the receiver did before): no creation."""
    path = Path(os.path.realpath(root / filename))
    if not path.is_relative_to(root.resolve()):
        raise PathRefusedError(f"{filename!r} lies outside the data root")
    if path.exists():
        raise PathRefusedError(f"{filename!r} exists")
    return path

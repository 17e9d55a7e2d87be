"""A file name from the stream lands inside the data root, never elsewhere, never over a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.paths import PathRefusedError, resolve_destination


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data_root = tmp_path / "data"
    data_root.mkdir()
    return data_root


def refused(root: Path, filename: str) -> str:
    with pytest.raises(PathRefusedError) as info:
        resolve_destination(root, filename)
    return str(info.value)


def test_relative_name_is_resolved_inside_the_root(root: Path) -> None:
    assert resolve_destination(root, "scan_001.h5") == root.resolve() / "scan_001.h5"


def test_nested_directories_are_allowed_even_before_they_exist(root: Path) -> None:
    target = resolve_destination(root, "2024/visit-7/scan_001.h5")

    assert target == root.resolve() / "2024" / "visit-7" / "scan_001.h5"
    assert not target.parent.exists(), "resolving must not create anything"


def test_absolute_name_inside_the_root_is_accepted(root: Path) -> None:
    name = str(root / "sub" / "scan.h5")

    assert resolve_destination(root, name) == root.resolve() / "sub" / "scan.h5"


def test_dotdot_that_stays_inside_the_root_is_accepted(root: Path) -> None:
    assert resolve_destination(root, "a/../b/scan.h5") == root.resolve() / "b" / "scan.h5"


def test_root_given_through_a_symlink_still_accepts_its_own_absolute_paths(
    tmp_path: Path, root: Path
) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)

    target = resolve_destination(alias, str(alias / "scan.h5"))

    assert target == root.resolve() / "scan.h5"


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

    assert "outside the data root" in message
    assert not (outside / "scan.h5").exists()


def test_dangling_file_symlink_pointing_outside_is_refused(tmp_path: Path, root: Path) -> None:
    (root / "scan.h5").symlink_to(tmp_path / "victim.h5")

    refused(root, "scan.h5")


def test_symlink_that_stays_inside_the_root_is_followed(root: Path) -> None:
    (root / "real").mkdir()
    (root / "link").symlink_to(root / "real", target_is_directory=True)

    assert resolve_destination(root, "link/scan.h5") == root.resolve() / "real" / "scan.h5"


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

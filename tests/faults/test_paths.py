"""File names that escape the data root, in every form: refused, nothing touched outside.

The bulk is tests/test_paths_properties.py's property (hypothesis: ``..``,
links in and out, NUL bytes, over-long components, absolute paths, lone
surrogates, any text), run here as a matrix row with its names counted; on
top of it, the same forms as series headers through a ``stream-receiver``
process: each refused with the reason, its frames counted as rejected, no
file outside the root, and the next series written normally.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import zmq

from receiver.paths import NAME_MAX, PathRefusedError
from tests import test_paths_properties as paths_properties
from tests.faults.support import FaultRow, StinsSender, check_file, start_receiver
from tests.helpers import Processes

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

SHAPE = (4, 6)


def test_the_path_property_never_lets_a_name_out_of_the_root(
    monkeypatch: pytest.MonkeyPatch, fault_row: FaultRow
) -> None:
    fault_row.case = "paths escaping the data root: the create_destination property"
    counts: Counter[str] = Counter()
    create = paths_properties.create_destination

    def counted(root: Path, name: str) -> object:
        counts["names"] += 1
        try:
            created = create(root, name)
        except PathRefusedError:
            counts["refused"] += 1
            raise
        counts["created inside"] += 1
        return created

    monkeypatch.setattr(paths_properties, "create_destination", counted)
    try:
        paths_properties.test_any_name_lands_inside_the_root_or_is_refused_touching_nothing()
    finally:
        fault_row.acknowledged = f"{counts['names']} names"
        fault_row.written = f"{counts['created inside']} inside the root"
        fault_row.readable = "-"
        fault_row.user_saw = f"{counts['refused']} refused with a reason, 0 outside the root"


@pytest.mark.e2e
def test_headers_naming_files_outside_the_root_are_refused_by_the_receiver(
    processes: Processes, context: zmq.Context, tmp_path: Path, fault_row: FaultRow
) -> None:
    fault_row.case = "paths escaping the data root: headers through a receiver"
    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim.h5").write_bytes(b"precious")
    (root / "existing.h5").write_bytes(b"kept")
    (root / "link-out").symlink_to(outside, target_is_directory=True)
    (root / "victim.h5").symlink_to(outside / "victim.h5")
    escaping = [
        "../escape.h5",
        "sub/../../escape.h5",
        f"{outside}/absolute.h5",
        f"{root}/../outside/absolute.h5",
        "link-out/escape.h5",
        "victim.h5",
        "existing.h5",
        "a\x00b.h5",
        "/",
        ".",
        "sub/",
        "x" * (NAME_MAX + 1) + ".h5",
    ]
    inside = ["sub/deeper/ok.h5", "%2e%2e/literal.h5", f"{root}/absolute-inside.h5"]
    sender = StinsSender(context)
    receiver = start_receiver(processes, root, connect=sender.endpoint)
    sender.connected()
    refused: list[str] = []
    rejected = 0
    number = 0
    names = escaping + inside + ["good.h5"]  # lone surrogates: the property above
    for count, name in enumerate(names, start=1):
        number = sender.series(name, 2, SHAPE, first=number)
        status = receiver.series_closed(count)
        last = status["last_series"]
        if name in escaping:
            rejected += last["frames_rejected"]
            assert last["ok"] is False and "refused" in last["error"], (name, last["error"])
            refused.append(last["error"])
        else:
            assert last["ok"], (name, last["error"])
    sender.close()
    outside_now = sorted(str(p.relative_to(outside)) for p in outside.rglob("*"))
    good = check_file(root / "good.h5")
    made_inside = [p for p in root.rglob("*.h5") if p.is_file() and not p.is_symlink()]
    code = receiver.terminate()

    fault_row.acknowledged = f"{len(refused)} escaping names (+{len(inside) + 1} inside)"
    fault_row.written = f"0 outside; {len(made_inside)} files inside"
    fault_row.readable = f"good.h5: {good.right} frames"
    fault_row.user_saw = f"error each time, e.g. {refused[0].replace(str(root), '<data root>')}"[
        :240
    ]
    fault_row.figures = {"frames rejected": rejected, "exit on SIGTERM": code}

    assert outside_now == ["victim.h5"], outside_now
    assert (outside / "victim.h5").read_bytes() == b"precious"
    assert (root / "existing.h5").read_bytes() == b"kept"
    assert rejected == 2 * len(refused)
    assert good.right == 2
    assert all(p.resolve().is_relative_to(root.resolve()) for p in made_inside)
    assert os.path.isfile(root / "sub" / "deeper" / "ok.h5")

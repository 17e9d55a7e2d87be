"""The fault matrix (issue 23): each case a test marked ``faults`` that records its figures.

A case asks for ``fault_row`` and fills in what the matrix reports: frames
acknowledged (sent and accepted by the receiver's side), written, readable
afterwards, and what a user saw (state and message). Rows are recorded as
soon as they are asked for, so a case that fails still reports what it
measured. At the end of the session the rows go to ``$FAULTS_REPORT`` when
it is set (``tests/faults/render.py`` turns them into the table of
docs/reliability.md), and always to ``faults.json`` in pytest's base
temporary directory.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.faults.support import FaultRow

REPORT_ENV = "FAULTS_REPORT"
_ROWS: list[FaultRow] = []
_OUTCOMES = pytest.StashKey[str]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" or report.outcome != "passed":
        previous = item.stash.get(_OUTCOMES, "passed")
        if previous == "passed":
            item.stash[_OUTCOMES] = report.outcome
    return report


@pytest.fixture
def fault_row(request: pytest.FixtureRequest) -> Iterator[FaultRow]:
    """This case's row of the matrix; fill it in before asserting."""
    row = FaultRow(case=request.node.name, test=request.node.nodeid)
    _ROWS.append(row)
    started = time.monotonic()
    yield row
    row.seconds = round(time.monotonic() - started, 1)
    row.outcome = request.node.stash.get(_OUTCOMES, "passed")


@pytest.fixture(scope="session", autouse=True)
def _fault_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    started = time.monotonic()
    yield
    if not _ROWS:
        return
    for row in _ROWS:
        if row.outcome == "":
            row.outcome = "error"
    document = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}",
        "seconds": round(time.monotonic() - started, 1),
        "rows": [row.as_json() for row in _ROWS],
    }
    text = json.dumps(document, indent=2) + "\n"
    (tmp_path_factory.getbasetemp() / "faults.json").write_text(text)
    target = os.environ.get(REPORT_ENV)
    if target:
        Path(target).write_text(text)

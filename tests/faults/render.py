"""Render the fault matrix's figures (``FAULTS_REPORT=...json``) as the table of docs/reliability.md.

    FAULTS_REPORT=/tmp/faults.json .venv/bin/pytest -m faults
    .venv/bin/python -m tests.faults.render /tmp/faults.json              # prints the table
    .venv/bin/python -m tests.faults.render /tmp/faults.json --doc docs/reliability.md

With ``--doc`` the table replaces what stands between the ``fault-matrix``
markers of that file (everything else is kept).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

BEGIN = "<!-- fault-matrix:begin -->"
END = "<!-- fault-matrix:end -->"
OUTCOME = {"passed": "ok", "failed": "**FAILS**", "skipped": "skipped", "error": "**ERROR**"}
ORDER = [
    "test_overload.py",
    "test_crashes.py",
    "test_full_disk.py",
    "test_forwarding.py",
    "test_malformed.py",
    "test_paths.py",
    "test_absurd_numbers.py",
]
"""The matrix in the order of issue 23's list; a case of another module comes last."""


def place(row: dict[str, Any]) -> int:
    module = row["test"].split("::")[0].rsplit("/", 1)[-1]
    return ORDER.index(module) if module in ORDER else len(ORDER)


def cell(value: Any) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text or "-"


def figures(values: dict[str, Any]) -> str:
    return "; ".join(f"{key} {value}" for key, value in values.items())


def table(document: dict[str, Any]) -> str:
    lines = [
        f"Last run: {document['generated']}, {document['host']}, "
        f"{len(document['rows'])} cases in {document['seconds']} s.",
        "",
        "| case | acknowledged | written | readable | what the user saw | guarantee | figures |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sorted(document["rows"], key=place):
        lines.append(
            "| "
            + " | ".join(
                cell(x)
                for x in (
                    row["case"],
                    row["acknowledged"],
                    row["written"],
                    row["readable"],
                    row["user_saw"],
                    OUTCOME.get(row["outcome"], row["outcome"]),
                    figures(row["figures"]),
                )
            )
            + " |"
        )
    return "\n".join(lines)


def update(doc: Path, rendered: str) -> None:
    text = doc.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{doc}: no {BEGIN} ... {END} block to replace")
    doc.write_text(pattern.sub(lambda _: f"{BEGIN}\n{rendered}\n{END}", text, count=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.render", description=__doc__)
    parser.add_argument("report", type=Path, help="the JSON that FAULTS_REPORT named")
    parser.add_argument("--doc", type=Path, help="replace the table in this Markdown file")
    args = parser.parse_args(argv)
    rendered = table(json.loads(args.report.read_text()))
    if args.doc:
        update(args.doc, rendered)
    else:
        print(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())

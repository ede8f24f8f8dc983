"""Run the failure suite and print the reliability table of docs/reliability.md from what
the runs measured.

    .venv/bin/python -m tests.failure.report              # the whole suite
    .venv/bin/python -m tests.failure.report -k arxiv     # extra arguments go to pytest

pytest's own output goes to stderr; the markdown table goes to stdout. Each fault
test appends its row to the file named by RELIABILITY_REPORT (see conftest.py);
nothing in the table is typed by hand. The exit status is pytest's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITE = Path(__file__).resolve().parent
# The table's order: the process, then Redis, then the upstreams, then input.
FIRST = (
    "test_worker_loss.py",
    "test_delivery_limit.py",
    "test_redis_faults.py",
    "test_arxiv_faults.py",
    "test_llm_faults.py",
    "test_usage_and_budgets.py",
    "test_memory_faults.py",
    "test_time_limits.py",
    "test_bad_input.py",
    "test_poison_messages.py",
)
COLUMNS = (
    "Fault",
    "Jobs",
    "Succeeded",
    "Failed, clear error",
    "Lost",
    "Duplicated",
    "Re-runs",
    "Recovery",
    "Measured too",
    "Test",
)


def run_suite(pytest_args: Sequence[str]) -> tuple[int, list[dict[str, Any]]]:
    """Run tests/failure with pytest; return its exit status and the recorded rows."""
    files = [name for name in FIRST if (SUITE / name).exists()]
    files += sorted(p.name for p in SUITE.glob("test_*.py") if p.name not in FIRST)
    with tempfile.TemporaryDirectory() as directory:
        report = Path(directory) / "reliability.jsonl"
        status = subprocess.call(
            [
                sys.executable,
                "-m",
                "pytest",
                *(f"tests/failure/{name}" for name in files),
                "-q",
                *pytest_args,
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "RELIABILITY_REPORT": str(report)},
            stdout=sys.stderr,
        )
        lines = report.read_text(encoding="utf-8").splitlines() if report.exists() else []
    return status, [json.loads(line) for line in lines]


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table, in the order the tests ran."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        seconds = row["recovery_seconds"]
        recovery = "—" if seconds is None else f"{seconds:.1f} s: {row['recovery']}"
        cells = [
            row["fault"],
            row["submitted"],
            row["succeeded"],
            row["failed_clearly"],
            row["lost"],
            row["duplicated"],
            row["reruns"],
            recovery,
            row["note"] or "—",
            f"`{row['test'].removeprefix('tests/failure/')}`",
        ]
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    status, rows = run_suite(sys.argv[1:] if argv is None else argv)
    print(render_table(rows))
    return status


if __name__ == "__main__":
    sys.exit(main())

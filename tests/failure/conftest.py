"""The failure suite's stack: a private Redis per module, the local arXiv and OpenAI servers,
workers started per test and stopped at its end, and the figures each fault records.

Timeouts are short so that faults show in seconds: a 6 s visibility timeout (kombu
sweeps for abandoned messages every second), 4 s/5 s soft/hard time limits, 2 s
upstream timeouts, backoffs of 50 ms up to 0.5 s.

Set RELIABILITY_REPORT to a file path and every fault test appends its row of the
reliability table of docs/reliability.md there (`python -m tests.failure.report` does this).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.failure.tally import FaultRow
from tests.support.stack import QUICK_RETRIES, LocalStack, WorkerFactory

VISIBILITY_TIMEOUT = 6
SOFT_TIME_LIMIT = 4

# A worker of this suite, unless a test says otherwise.
FAULT_SETTINGS: Mapping[str, str] = {
    **QUICK_RETRIES,
    "BROKER_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT),
    "TASK_SOFT_TIME_LIMIT_SECONDS": str(SOFT_TIME_LIMIT),
    "TASK_TIME_LIMIT_SECONDS": str(SOFT_TIME_LIMIT + 1),
    "WORKER_SOFT_SHUTDOWN_TIMEOUT_SECONDS": "1",
    "LOG_FORMAT": "json",
    # These tests time faults against a 4 s soft limit and seconds-long
    # waits; the embedding model's ~1 s of CPU per fresh job on two shared
    # cores would make them race the clock. The faults do not depend on what
    # the vectors mean, and the integration suite runs the real model.
    "EMBEDDINGS": "hashing",
}


@pytest.fixture(scope="module")
def worker_settings() -> Mapping[str, str]:
    return FAULT_SETTINGS


@pytest.fixture
def fresh_stack(stack: LocalStack) -> LocalStack:
    """The module's stack with an empty Redis and cleared fakes."""
    stack.reset()
    return stack


@pytest.fixture
def start_worker(fresh_stack: LocalStack) -> Iterator[WorkerFactory]:
    """Start a worker on the module's stack: `start_worker("name", pool=..., KEY=value)`.

    Four slots unless the test says otherwise; every worker is stopped at the test's end.
    """
    yield functools.partial(fresh_stack.start_worker, concurrency=4)
    fresh_stack.stop_workers(timeout=10)


# --- The reliability table ------------------------------------------------------------


@pytest.fixture
def record_fault(request: pytest.FixtureRequest) -> Callable[[FaultRow], None]:
    """Append a fault's figures to $RELIABILITY_REPORT (a JSON-lines file), when it is set."""

    def record(row: FaultRow) -> None:
        target = os.environ.get("RELIABILITY_REPORT")
        if not target:
            return
        entry = {**row.as_dict(), "test": request.node.nodeid}
        with Path(target).open("a", encoding="utf-8") as report:
            report.write(json.dumps(entry) + "\n")

    return record

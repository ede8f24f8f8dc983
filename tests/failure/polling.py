"""Waiting, with a bound, for something a worker does."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from worker.client import ResearchClient


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `condition` until it holds; return the seconds it took. TimeoutError names `what`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def wait_for_stage(
    client: ResearchClient, job_ids: Sequence[str], stage: str, timeout: float = 20.0
) -> None:
    """Wait until every job reports PROGRESS in `stage`."""
    wait_until(
        lambda: all(client.status(job_id).stage == stage for job_id in job_ids),
        timeout,
        f"{len(job_ids)} jobs in stage {stage}",
    )


def child_pids(pid: int) -> list[int]:
    """The children of process `pid` (Linux /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    return [int(child) for child in children.split()]

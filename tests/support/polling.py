"""Waiting, for at most a bounded time, for something a real process will do."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from worker.client import ResearchClient

T = TypeVar("T")


@dataclass(frozen=True)
class Awaited(Generic[T]):
    """What `eventually` waited for, and how long it took."""

    value: T
    """The first truthy value the check returned."""
    seconds: float
    """From the call to `eventually` until the check first held."""


def eventually(
    check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05
) -> Awaited[T]:
    """Call `check` every `interval` s until it returns something truthy, for at most `timeout` s.

    `what` names the awaited thing in the AssertionError raised when time runs out.
    """
    started = time.monotonic()
    while True:
        result = check()
        elapsed = time.monotonic() - started
        if result:
            return Awaited(result, elapsed)
        if elapsed > timeout:
            last = "" if result in (None, False) else f" (the last check returned {result!r})"
            raise AssertionError(f"not within {timeout} s: {what}{last}")
        time.sleep(interval)


def wait_for_stage(
    client: ResearchClient, job_ids: Sequence[str], stage: str, timeout: float = 20.0
) -> None:
    """Wait until every job reports PROGRESS in `stage`."""
    eventually(
        lambda: all(client.status(job_id).stage == stage for job_id in job_ids),
        timeout=timeout,
        what=f"{len(job_ids)} jobs in stage {stage}",
    )

"""Backoff with jitter, and Retry-After honoured."""

from __future__ import annotations

import random

from tasks.retry import retry_countdown


def test_backoff_grows_with_each_retry_and_stays_under_the_cap() -> None:
    rng = random.Random(7)
    ceilings = [
        max(retry_countdown(n, base_seconds=1, max_seconds=30, rng=rng) for _ in range(200))
        for n in range(6)
    ]

    assert ceilings == sorted(ceilings)
    assert all(0.5 <= c <= 30 for c in ceilings)


def test_jitter_spreads_workers_that_failed_together() -> None:
    rng = random.Random(1)

    waits = {
        round(retry_countdown(3, base_seconds=1, max_seconds=30, rng=rng), 3) for _ in range(20)
    }

    assert len(waits) > 10


def test_retry_after_is_honoured_and_capped() -> None:
    assert 5 <= retry_countdown(0, base_seconds=1, max_seconds=60, retry_after=5) <= 5.5
    assert retry_countdown(0, base_seconds=1, max_seconds=10, retry_after=3600) == 10

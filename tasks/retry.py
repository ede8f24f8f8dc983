"""Backoff for upstream retries: exponential with full jitter, honouring Retry-After."""

from __future__ import annotations

import random


def retry_countdown(
    retries_so_far: int,
    *,
    base_seconds: float,
    max_seconds: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the next attempt.

    With a server's Retry-After, wait that long (capped at `max_seconds`) plus
    a little jitter so retrying workers do not arrive together; without one,
    a uniformly random wait up to base·2^retries (full jitter), at least
    `base_seconds / 2`.
    """
    rng = rng or random.Random()
    if retry_after is not None:
        return min(max_seconds, max(0.0, retry_after) + rng.uniform(0, base_seconds / 2))
    ceiling = min(max_seconds, base_seconds * 2**retries_so_far)
    return max(base_seconds / 2, rng.uniform(0, ceiling))

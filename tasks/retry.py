"""Backoff for upstream retries: exponential with full jitter, honouring Retry-After."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The wait a server asked for, in seconds, read from a response's headers.

    OpenAI's `retry-after-ms` (milliseconds) comes first, being the more
    precise; then the standard `Retry-After`, as delta-seconds or as an
    HTTP-date. A number may have a fraction (OpenAI's SDK accepts one too).

    Args:
        headers: the response's headers; look-ups must ignore case, as
            `httpx.Headers` does.
        now: the current time, injectable for tests; defaults to the clock.

    Returns:
        Seconds (never negative; a date already past is 0), or None when
        neither header is present or readable.
    """
    milliseconds = _non_negative_number(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative_number(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": the date is in UTC, the source zone unknown
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _non_negative_number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


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

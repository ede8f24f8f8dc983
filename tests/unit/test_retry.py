"""Backoff with jitter, and Retry-After read and honoured."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tasks.retry import retry_after_seconds, retry_countdown


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


# --- Reading the server's wait from the response headers ----------------------------------

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": " 30 "}, 30.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "Mon, 02 Mar 2026 12:01:30 GMT"}, 90.0),
        # A date already past means "now", not a negative wait.
        ({"Retry-After": "Mon, 02 Mar 2026 11:00:00 GMT"}, 0.0),
        # "-0000": a date in UTC whose source zone is unknown.
        ({"Retry-After": "Mon, 02 Mar 2026 12:00:10 -0000"}, 10.0),
        ({"retry-after-ms": "1500"}, 1.5),
        # OpenAI's milliseconds are the more precise of the two.
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),
        # An unreadable retry-after-ms leaves the standard header to speak.
        ({"retry-after-ms": "soon", "Retry-After": "2"}, 2.0),
    ],
    ids=[
        "delta-seconds",
        "fraction",
        "http-date",
        "http-date-past",
        "http-date-utc",
        "milliseconds",
        "milliseconds-first",
        "bad-milliseconds",
    ],
)
def test_the_servers_wait_is_read_in_seconds(headers: dict[str, str], seconds: float) -> None:
    assert retry_after_seconds(httpx.Headers(headers), NOW) == seconds


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Retry-After": "soon"},
        {"Retry-After": "-5"},
        {"Retry-After": "inf"},
        {"retry-after-ms": "nan"},
    ],
    ids=["absent", "words", "negative", "infinite", "not-a-number"],
)
def test_an_absent_or_unreadable_wait_is_none(headers: dict[str, str]) -> None:
    assert retry_after_seconds(httpx.Headers(headers), NOW) is None


def test_an_http_date_is_measured_from_the_clock_by_default() -> None:
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)

    seconds = retry_after_seconds(httpx.Headers({"Retry-After": in_a_minute}))

    assert seconds is not None and 55 <= seconds <= 60

"""Waiting for something a real process will do, for at most a bounded time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Call `check` until it returns something truthy and return that, for at most `timeout` s.

    `what` names the awaited thing in the AssertionError raised when time runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)

"""Cooperative cancellation of the task running on this thread.

Python cannot stop a thread from outside. The worker's thread pool gives
each task a cancel event (`cancellable`) and sets it when Celery asks the
task to stop; the stages poll `current_task_cancelled()` where they wait and
hand their message back to the queue. Off that pool (prefork, `task.apply()`)
no event is set and the answer is always False.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_cancel_event: ContextVar[threading.Event | None] = ContextVar("cancel_event", default=None)


def current_task_cancelled() -> bool:
    """Whether the worker asked the task on this thread to stop."""
    event = _cancel_event.get()
    return event is not None and event.is_set()


@contextmanager
def cancellable(event: threading.Event) -> Iterator[None]:
    """Run the block as a task that `event` cancels."""
    token = _cancel_event.set(event)
    try:
        yield
    finally:
        _cancel_event.reset(token)

"""The thread pool research-arm workers run by default: Celery's own, plus cancellation.

Celery's thread pool cannot cancel a running task (celery/celery#10490). On a
cold shutdown (SIGQUIT, or SIGTERM when REMAP_SIGTERM=SIGQUIT, which is how
Kubernetes scales a worker in) Celery asks the pool to cancel each running
task; the stock pool raises NotImplementedError inside the signal handler, the
worker waits for every task to finish, and if Kubernetes kills it first the
messages come back only after the visibility timeout.

Python cannot stop a thread from outside, so cancellation here is cooperative:
Celery's cancel sets the task's event, and the task, polling
`current_task_cancelled()` where it waits, hands its message back to the
queue (a requeueing reject) and ends. A task that never polls simply runs to
its end, as before.

Selected by `worker_pool` in `worker.celery_config` when WORKER_POOL=threads.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from celery.concurrency.base import apply_target
from celery.concurrency.thread import ApplyResult, TaskPool

# The cancel event of the task the current pool thread runs (unset between tasks).
_running = threading.local()


def current_task_cancelled() -> bool:
    """Whether the worker asked the task on this thread to stop (always False off the pool)."""
    event: threading.Event | None = getattr(_running, "cancelled", None)
    return event is not None and event.is_set()


class CancellableApplyResult(ApplyResult):  # type: ignore[misc]  # Celery is untyped
    """A running task's handle; `terminate` is what Celery calls to cancel or revoke it."""

    def __init__(self, future: Future[Any], cancelled: threading.Event) -> None:
        super().__init__(future)
        self.cancelled = cancelled

    def terminate(self, signal: object = None) -> None:
        self.cancelled.set()


class CancellableThreadPool(TaskPool):  # type: ignore[misc]  # Celery is untyped
    """Celery's thread pool whose running tasks can be asked to stop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Celery keeps only a weak reference to each task's result handle:
        # the pool holds it until the task ends, so a cancel can reach it.
        self._unfinished: set[CancellableApplyResult] = set()
        self._unfinished_lock = threading.Lock()

    def on_apply(
        self,
        target: Any,
        args: Any = None,
        kwargs: Any = None,
        callback: Any = None,
        accept_callback: Any = None,
        **_: Any,
    ) -> CancellableApplyResult:
        cancelled = threading.Event()
        future = self.executor.submit(
            _run_task, cancelled, target, args, kwargs, callback, accept_callback
        )
        result = CancellableApplyResult(future, cancelled)
        with self._unfinished_lock:
            self._unfinished.add(result)
        future.add_done_callback(lambda _: self._forget(result))
        return result

    def _forget(self, result: CancellableApplyResult) -> None:
        with self._unfinished_lock:
            self._unfinished.discard(result)

    def terminate_job(self, pid: int, signal: object = None) -> None:
        # Every task shares the process id, so there is nothing to signal here:
        # Celery goes on to call the task's CancellableApplyResult.terminate.
        return None


def _run_task(cancelled: threading.Event, *apply_args: Any) -> None:
    _running.cancelled = cancelled
    try:
        apply_target(*apply_args)
    finally:
        _running.cancelled = None

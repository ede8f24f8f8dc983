"""The thread pool research-arm workers run by default: Celery's own, plus cancellation.

Celery's thread pool cannot cancel a running task (celery/celery#10490). Celery
asks the pool to on a cold shutdown (SIGQUIT, or SIGTERM when
REMAP_SIGTERM=SIGQUIT, which is how Kubernetes scales a worker in) and when the
broker connection drops (the message of a running task can no longer be
acknowledged). The stock pool raises NotImplementedError: in the shutdown
signal handler it aborts the shutdown, the worker waits for every task, and if
Kubernetes kills it first the messages come back only after the visibility
timeout; after a lost connection the tasks run on and their stages run twice.

Python cannot stop a thread from outside, so cancellation here is cooperative
(`tasks.cancellation`). Each task reports its thread's id as its "process id";
Celery's cancel names that id, which sets the task's event; the task, polling
`current_task_cancelled()` where it waits, hands its message back to the queue
(a requeueing reject) and ends. A task that never polls runs to its end.

Selected by `worker_pool` in `worker.celery_config` when WORKER_POOL=threads.
"""

from __future__ import annotations

import threading
from typing import Any

from celery.concurrency.base import apply_target
from celery.concurrency.thread import ApplyResult, TaskPool

from tasks.cancellation import cancellable


class CancellableThreadPool(TaskPool):  # type: ignore[misc]  # Celery is untyped
    """Celery's thread pool whose running tasks can be asked to stop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cancel_events: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    def on_apply(
        self,
        target: Any,
        args: Any = None,
        kwargs: Any = None,
        callback: Any = None,
        accept_callback: Any = None,
        **_: Any,
    ) -> ApplyResult:
        future = self.executor.submit(
            self._run_cancellable, target, args, kwargs, callback, accept_callback
        )
        return ApplyResult(future)

    def _run_cancellable(self, target: Any, *apply_args: Any) -> None:
        thread = threading.get_ident()
        cancelled = threading.Event()
        with self._lock:
            self._cancel_events[thread] = cancelled
        try:
            with cancellable(cancelled):
                # The thread id stands in for the process id Celery records for
                # the task, and later passes to terminate_job.
                apply_target(target, *apply_args, getpid=threading.get_ident)
        finally:
            with self._lock:
                del self._cancel_events[thread]

    def terminate_job(self, pid: int, signal: object = None) -> None:
        """Ask the task running on thread `pid` to stop (Celery's cancel and revoke)."""
        with self._lock:
            cancelled = self._cancel_events.get(pid)
        if cancelled is not None:
            cancelled.set()

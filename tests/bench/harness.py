"""What every benchmark case measures with: job submission and completion times.

A job's latency is measured from just before `send_task` to the moment its
final result reaches us. Celery's Redis result backend publishes every stored
result on a channel named after the result key; `CompletionWatcher` listens
to all of them on one connection in a thread of its own, so a job's finish is
timestamped when it happens, not when we get round to asking.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery

from tasks.constants import QUEUE, TASK_EXECUTE
from tests.bench.noop_tasks import NOOP_EXECUTE
from worker.client import celery_client

RESULT_CHANNELS = "celery-task-meta-*"
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


@dataclass(frozen=True)
class JobOutcome:
    """One job as the client saw it."""

    job_id: str
    submitted: float
    finished: float
    state: str
    result: Any

    @property
    def latency(self) -> float:
        return self.finished - self.submitted

    def summary_methods(self) -> list[str]:
        papers = self.result.get("papers", []) if isinstance(self.result, dict) else []
        return [str(paper.get("summary_method")) for paper in papers]

    def stage_durations_ms(self) -> dict[str, float]:
        if not isinstance(self.result, dict) or "provenance" not in self.result:
            return {}
        return {s["name"]: s["duration_ms"] for s in self.result["provenance"]["stages"]}


class CompletionWatcher:
    """Timestamps every task result Celery's Redis backend publishes, in a thread of its own."""

    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(redis_url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.psubscribe(RESULT_CHANNELS)
        self._finished: dict[str, tuple[float, str, Any]] = {}
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="completion-watcher", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message is None:
                continue
            arrived = time.perf_counter()
            meta = json.loads(message["data"])
            if meta.get("status") not in FINAL_STATES:
                continue
            with self._changed:
                self._finished[meta["task_id"]] = (arrived, meta["status"], meta.get("result"))
                self._changed.notify_all()

    def wait(self, job_ids: Iterable[str], timeout: float) -> dict[str, tuple[float, str, Any]]:
        """Finish time, state and result of each of `job_ids`; TimeoutError after `timeout` s."""
        wanted = set(job_ids)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not wanted <= self._finished.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = len(wanted - self._finished.keys())
                    raise TimeoutError(
                        f"{missing} of {len(wanted)} jobs unfinished after {timeout}s"
                    )
                self._changed.wait(left)
            return {job_id: self._finished.pop(job_id) for job_id in wanted}

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._pubsub.close()
        self._client.close()


class JobRunner:
    """Sends research jobs (or the no-op chain) and waits for them to finish."""

    def __init__(self, redis_url: str) -> None:
        self._app: Celery = celery_client(redis_url)
        self._watcher = CompletionWatcher(redis_url)

    def close(self) -> None:
        self._watcher.close()
        self._app.close()

    def run(
        self, requests: Sequence[dict[str, Any]], *, timeout: float, noop: bool = False
    ) -> list[JobOutcome]:
        """Submit every request at once and wait for all; FAILUREs are returned, not raised."""
        task_name = NOOP_EXECUTE if noop else TASK_EXECUTE
        return self.run_tasks(task_name, [{"request": r} for r in requests], timeout=timeout)

    def run_tasks(
        self, task_name: str, kwargs_list: Sequence[dict[str, Any]], *, timeout: float
    ) -> list[JobOutcome]:
        """Send `task_name` once per kwargs, all at once, and wait for every result."""
        submitted: dict[str, float] = {}
        for kwargs in kwargs_list:
            job_id = str(uuid.uuid4())
            submitted[job_id] = time.perf_counter()
            self._app.send_task(task_name, kwargs=kwargs, queue=QUEUE, task_id=job_id)
        finished = self._watcher.wait(submitted, timeout)
        return [JobOutcome(job_id, start, *finished[job_id]) for job_id, start in submitted.items()]


@dataclass(frozen=True)
class LoadFigures:
    """What a batch of jobs measured."""

    jobs: int
    failed: int
    wall_seconds: float
    median_seconds: float
    p95_seconds: float

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @classmethod
    def of(cls, outcomes: Sequence[JobOutcome]) -> LoadFigures:
        latencies = [outcome.latency for outcome in outcomes]
        wall = max(o.finished for o in outcomes) - min(o.submitted for o in outcomes)
        return cls(
            jobs=len(outcomes),
            failed=sum(1 for o in outcomes if o.state != "SUCCESS"),
            wall_seconds=wall,
            median_seconds=statistics.median(latencies),
            p95_seconds=percentile(latencies, 95),
        )


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct`th percentile by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * pct / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

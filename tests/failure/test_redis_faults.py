"""Redis goes away: restarted under running jobs (AOF on), or absent when a worker starts.

Redis is broker, result backend, rate gate and caches at once. After a restart the
worker reconnects and consumes again; the stage that was running when the
connection dropped cannot be acknowledged any more, so it runs again once, after
the visibility timeout, harmlessly (every write is idempotent).
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from tests.failure.conftest import VISIBILITY_TIMEOUT
from tests.failure.tally import FaultRow, log_events, stage_runs, wait_for_jobs
from tests.support.polling import eventually, wait_for_stage
from tests.support.stack import LocalStack, WorkerFactory
from worker.client import ResearchClient
from worker.local_redis import RedisServer, free_port

pytestmark = pytest.mark.integration

CONSUMES_AGAIN_WITHIN = 30
REDIS_DOWN_SECONDS = 2.0


@pytest.fixture(scope="module")
def redis_options() -> dict[str, object]:
    return {"appendonly": True}


def test_a_redis_restart_under_running_jobs_loses_none(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack, record_fault
) -> None:
    worker = start_worker()
    fresh_stack.llm.latency_seconds = 1.5
    in_flight = [
        client.submit({"query": query, "max_papers": 2})
        for query in ("graph neural networks", "quantum error correction")
    ]
    wait_for_stage(client, in_flight, "summarize")

    # Down for a while, as a real restart is: connections are refused, not just reset.
    fresh_stack.redis.stop()
    time.sleep(REDIS_DOWN_SECONDS)
    fresh_stack.redis.start()
    restarted_at = time.monotonic()
    fresh_stack.llm.latency_seconds = 0.0
    after = client.submit({"query": "protein structure prediction", "max_papers": 2})
    consumed_again = wait_for_jobs(fresh_stack.redis_url, [after], timeout=CONSUMES_AGAIN_WITHIN)
    consumes_again_seconds = time.monotonic() - restarted_at
    jobs = [*in_flight, after]
    outcomes = wait_for_jobs(fresh_stack.redis_url, jobs, timeout=VISIBILITY_TIMEOUT + 20)
    recovery = time.monotonic() - restarted_at
    # A message whose acknowledgement was lost comes back after the visibility
    # timeout: wait for the queue to drain, so any re-run is counted.
    broker = redis.Redis.from_url(fresh_stack.redis_url)
    eventually(
        lambda: broker.llen("research") == 0 and broker.hlen("unacked") == 0,
        timeout=VISIBILITY_TIMEOUT + 10,
        what="an empty queue and no unacknowledged message",
    )
    broker.close()
    worker.stop()

    runs = stage_runs(log_events([worker.log_path]), jobs)
    record_fault(
        FaultRow.of(
            "Redis restart under running jobs (AOF on)",
            outcomes,
            reruns=sum(count - 1 for count in runs.values()),
            recovery_seconds=recovery,
            recovery="restart → every job done",
        )
    )
    assert consumed_again.succeeded == [after]
    assert consumes_again_seconds < CONSUMES_AGAIN_WITHIN
    assert outcomes.succeeded == jobs, outcomes.metas
    assert worker.process is not None and worker.process.returncode == 0
    # A stage in flight at the restart runs again at most once.
    assert max(runs.values()) <= 2, runs


def test_a_worker_started_before_redis_waits_and_then_consumes(
    fresh_stack: LocalStack, client: ResearchClient, tmp_path, record_fault
) -> None:
    late_redis = RedisServer(data_dir=tmp_path / "late-redis", port=free_port())
    worker = fresh_stack.worker("early", REDIS_URL=late_redis.url)
    # start() returns once the worker is ready, which it cannot be before Redis is.
    starting = threading.Thread(target=worker.start, kwargs={"ready_timeout": 60})
    starting.start()
    try:
        eventually(
            lambda: "Cannot connect to" in worker.log_text(), timeout=30, what="a connection error"
        )
        assert worker.process is not None and worker.process.poll() is None
        late_redis.start()
        redis_up_at = time.monotonic()
        starting.join(timeout=60)
        ready_seconds = time.monotonic() - redis_up_at
        late_client = ResearchClient.from_url(late_redis.url)
        try:
            job = late_client.submit({"query": "reinforcement learning exploration"})
            outcomes = wait_for_jobs(late_redis.url, [job], timeout=30)
        finally:
            late_client.close()
    finally:
        worker.stop()
        starting.join(timeout=30)
        late_redis.stop()

    record_fault(
        FaultRow.of(
            "Redis unreachable when the worker starts",
            outcomes,
            recovery_seconds=ready_seconds,
            recovery="Redis up → worker consuming",
        )
    )
    assert outcomes.succeeded == [job]
    # Celery retries the broker every 2 s at first.
    assert ready_seconds < 15

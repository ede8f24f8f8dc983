"""A message that kills its worker at every delivery ends its job instead of coming back forever.

The job's summarize stage hangs (the LLM answers after a minute) and the worker
running it is killed with kill -9, again and again. Redis counts the message's
deliveries: the MAX_DELIVERIES-th (3) fails the job at once with
DeliveryLimitExceeded naming the stage and the count, and the next job
succeeds. A job whose worker died once still completes.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.failure.tally import FaultRow, JobOutcomes, wait_for_jobs
from tests.support.polling import eventually
from tests.support.stack import LocalStack, WorkerFactory
from tests.support.worker_process import WorkerProcess
from worker.client import ResearchClient

pytestmark = pytest.mark.integration

VISIBILITY_TIMEOUT = 8
# The summarize stage waits for the hanging LLM until its deadline (the soft
# limit less half a second): the kill must come within those 5.5 s, and no LLM
# timeout may end the stage first (that would be a Celery retry, a new message).
HANGING_STAGE_ENV = {
    "TASK_SOFT_TIME_LIMIT_SECONDS": "6",
    "TASK_TIME_LIMIT_SECONDS": "7",
    "BROKER_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT),
    "LLM_TIMEOUT_SECONDS": "60",
}
HANG_SECONDS = 60.0
REQUEST = {"query": "graph neural networks for molecules", "max_papers": 2}


def summaries_received(worker: WorkerProcess) -> int:
    """How many summarize messages `worker` received (Celery's "Task ...[id] received")."""
    return sum(
        1
        for line in worker.log_text().splitlines()
        if "Task research.summarize[" in line and "] received" in line
    )


def chat_requests(stack: LocalStack) -> int:
    return sum(1 for r in stack.llm.requests if r.path.endswith("/chat/completions"))


def kill_when_summarizing(worker: WorkerProcess, stack: LocalStack) -> float:
    """Wait until `worker` runs summarize and its LLM calls hang, then kill -9 it."""
    calls_before = chat_requests(stack)
    eventually(
        lambda: summaries_received(worker) >= 1 and chat_requests(stack) > calls_before,
        timeout=VISIBILITY_TIMEOUT + 20,
        what=f"summarize calling the LLM on {worker.hostname}",
    )
    os.kill(worker.pid, signal.SIGKILL)
    assert worker.process is not None
    worker.process.wait(timeout=10)
    return time.monotonic()


def delivery_limit_failures(worker: WorkerProcess) -> float:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(Path(worker.env["DATA_DIR"]) / "metrics"))  # type: ignore[no-untyped-call]
    value = registry.get_sample_value(
        "research_arm_delivery_limit_exceeded_total", {"task": "research.summarize"}
    )
    return value or 0.0


def test_a_job_whose_worker_dies_at_every_delivery_fails_at_the_limit(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack, record_fault
) -> None:
    fresh_stack.llm.latency_seconds = HANG_SECONDS
    first = start_worker("first", **HANGING_STAGE_ENV)
    job = client.submit(REQUEST)

    kill_when_summarizing(first, fresh_stack)
    second = start_worker("second", **HANGING_STAGE_ENV)
    killed_at = kill_when_summarizing(second, fresh_stack)
    calls_of_dead_deliveries = chat_requests(fresh_stack)
    third = start_worker("third", **HANGING_STAGE_ENV)
    outcomes = wait_for_jobs(fresh_stack.redis_url, [job], timeout=VISIBILITY_TIMEOUT + 20)
    stopped_after = time.monotonic() - killed_at
    third_deliveries = summaries_received(third)
    llm_calls = chat_requests(fresh_stack)

    fresh_stack.llm.latency_seconds = 0.0
    following = client.submit({**REQUEST, "query": "quantum error correction"})
    after = wait_for_jobs(fresh_stack.redis_url, [following], timeout=30)

    record_fault(
        FaultRow.of(
            "a message that kills its worker at every delivery (kill -9 twice, MAX_DELIVERIES=3)",
            JobOutcomes({**outcomes.metas, **after.metas}),
            recovery_seconds=stopped_after,
            recovery="second kill → job FAILURE DeliveryLimitExceeded",
            note="the next job succeeds",
        )
    )
    assert outcomes.status(job) == "FAILURE", outcomes.metas
    exc_type, message = outcomes.error(job)
    assert exc_type == "DeliveryLimitExceeded"
    assert "research.summarize was delivered 3 times" in message
    # The third delivery failed at once: it never called the LLM.
    assert third_deliveries == 1
    assert llm_calls == calls_of_dead_deliveries
    assert '"delivery_limit_exceeded"' in third.log_text()
    assert delivery_limit_failures(third) == 1
    assert after.succeeded == [following], after.metas


def test_a_job_whose_worker_died_once_still_completes(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack
) -> None:
    fresh_stack.llm.latency_seconds = HANG_SECONDS
    first = start_worker("first", **HANGING_STAGE_ENV)
    job = client.submit(REQUEST)

    kill_when_summarizing(first, fresh_stack)
    fresh_stack.llm.latency_seconds = 0.0
    second = start_worker("second", **HANGING_STAGE_ENV)
    outcomes = wait_for_jobs(fresh_stack.redis_url, [job], timeout=VISIBILITY_TIMEOUT + 20)

    assert outcomes.succeeded == [job], outcomes.metas
    assert '"stage_redelivered"' in second.log_text()
    papers = outcomes.response(job)["papers"]
    assert [paper["summary_method"] for paper in papers] == ["llm"] * len(papers)


def test_a_prefork_child_killed_at_every_delivery_fails_its_job_at_the_limit(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack
) -> None:
    # The parent requeues a lost child's message at once (reject on worker lost),
    # so the count, not the visibility timeout, is all that stops it. Two
    # children cannot share an embedded Qdrant: memory is skipped here.
    worker = start_worker(
        "prefork",
        pool="prefork",
        concurrency=1,
        QDRANT_URL="http://127.0.0.1:9",
        **HANGING_STAGE_ENV,
    )
    fresh_stack.llm.latency_seconds = HANG_SECONDS
    job = client.submit(REQUEST)

    for delivery in (1, 2):
        calls_before = chat_requests(fresh_stack)
        # The child runs the stage once its LLM calls are out (received is the parent's word).
        eventually(
            lambda d=delivery, n=calls_before: (
                summaries_received(worker) >= d and chat_requests(fresh_stack) > n
            ),
            timeout=30,
            what=f"summarize delivery {delivery} calling the LLM",
        )
        [child] = worker.pool_pids()
        os.kill(child, signal.SIGKILL)
    outcomes = wait_for_jobs(fresh_stack.redis_url, [job], timeout=30)

    assert outcomes.status(job) == "FAILURE", outcomes.metas
    exc_type, message = outcomes.error(job)
    assert exc_type == "DeliveryLimitExceeded" and "3 times" in message
    assert worker.process is not None and worker.process.poll() is None

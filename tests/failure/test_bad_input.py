"""500 generated invalid requests, sent by task name in bulk: each fails at once, clearly.

Each ends FAILURE with InvalidRequest naming the offending field, is never retried,
and never takes the worker down; the next valid job succeeds.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from celery import Celery
from hypothesis import HealthCheck, Phase, given, settings

from tasks.constants import QUEUE, TASK_EXECUTE
from tests.failure.invalid_requests import InvalidJob, invalid_jobs
from tests.failure.tally import FaultRow, JobOutcomes, log_events, wait_for_jobs
from tests.support.stack import LocalStack, WorkerFactory
from worker.client import ResearchClient

pytestmark = pytest.mark.integration

EXAMPLES = 500


@pytest.fixture
def sender(fresh_stack: LocalStack) -> Iterator[Celery]:
    """Sends messages only: results are read from the backend's keys, in bulk."""
    app = Celery(
        "bad-input-sender",
        broker=fresh_stack.redis_url,
        set_as_current=False,
        config_source={"task_serializer": "json", "accept_content": ["json"]},
    )
    yield app
    app.close()


def names_the_field(outcomes: JobOutcomes, job_id: str, field: str) -> bool:
    message, *rest = outcomes.error_arguments(job_id)
    errors = rest[0] if rest and isinstance(rest[0], list) else []
    return field in str(message) or any(error.get("field") == field for error in errors)


def test_generated_invalid_requests_fail_at_once_naming_the_field(
    start_worker: WorkerFactory,
    client: ResearchClient,
    sender: Celery,
    fresh_stack: LocalStack,
    record_fault,
) -> None:
    worker = start_worker(concurrency=8)
    sent: list[tuple[str, InvalidJob, float]] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(invalid_jobs())
    def send(job: InvalidJob) -> None:
        result = sender.send_task(TASK_EXECUTE, args=job.args, kwargs=job.kwargs, queue=QUEUE)
        sent.append((result.id, job, time.time()))

    started = time.monotonic()
    send()
    job_ids = [job_id for job_id, _, _ in sent]
    outcomes = wait_for_jobs(fresh_stack.redis_url, job_ids, timeout=60)
    elapsed = time.monotonic() - started
    valid = client.submit({"query": "graph neural networks", "max_papers": 2})
    after = wait_for_jobs(fresh_stack.redis_url, [valid], timeout=30)

    latencies = [
        datetime.fromisoformat(outcomes.metas[job_id]["date_done"]).replace(tzinfo=UTC).timestamp()
        - sent_at
        for job_id, _, sent_at in sent
        if outcomes.metas[job_id] is not None
    ]
    kinds = Counter(job.kind for _, job, _ in sent)
    record_fault(
        FaultRow.of(
            f"{len(sent)} generated invalid requests, sent in bulk",
            JobOutcomes({**outcomes.metas, **after.metas}),
            recovery_seconds=elapsed,
            recovery="all failed",
            note=f"slowest {max(latencies):.2f} s from send to FAILURE; "
            + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())),
        )
    )
    assert len(sent) >= EXAMPLES
    assert outcomes.failed_clearly == job_ids, [
        (job, outcomes.metas[job_id])
        for job_id, job, _ in sent
        if job_id not in outcomes.failed_clearly
    ][:5]
    wrong = [
        (job, outcomes.error(job_id))
        for job_id, job, _ in sent
        if outcomes.error(job_id)[0] != "InvalidRequest"
        or not names_the_field(outcomes, job_id, job.field)
    ]
    assert not wrong, wrong[:5]
    # Never retried: each message was received once, and nothing waited for an upstream.
    events = log_events([worker.log_path])
    received = Counter(
        event["event"].split("[", 1)[1].split("]", 1)[0]
        for event in events
        if event["event"].startswith(f"Task {TASK_EXECUTE}[")
        and event["event"].endswith("received")
    )
    assert all(received[job_id] == 1 for job_id in job_ids)
    assert not [event for event in events if event["event"] == "upstream_retry"]
    assert worker.process is not None and worker.process.poll() is None
    assert after.succeeded == [valid]

"""A stage that hangs runs into the soft time limit and ends cleanly, freeing its slot.

The LLM hanging longer than TASK_SOFT_TIME_LIMIT_SECONDS (with a much larger
LLM_TIMEOUT_SECONDS) degrades the job to flagged extractive summaries; arXiv
hanging that long fails the job with UpstreamUnavailable. Celery enforces no time
limit under the thread pool, so there the stages keep their own deadline; under
prefork the same deadline comes just before Celery's soft limit. Each worker has
one slot: the next job running to its end shows the slot was freed.
"""

from __future__ import annotations

import time

import pytest

from tests.failure.tally import FaultRow, JobOutcomes, wait_for_jobs
from tests.support import Fault
from tests.support.stack import LocalStack, WorkerFactory
from worker.client import ResearchClient

pytestmark = pytest.mark.integration

SOFT_LIMIT = 2
LIMITED = {
    "TASK_SOFT_TIME_LIMIT_SECONDS": str(SOFT_LIMIT),
    "TASK_TIME_LIMIT_SECONDS": str(SOFT_LIMIT + 1),
    "LLM_TIMEOUT_SECONDS": "60",
    "ARXIV_TIMEOUT_SECONDS": "60",
}
# Longer than the soft limit; short enough that the hung calls end before teardown.
HANG = 5.0


def run_one(
    client: ResearchClient, stack: LocalStack, query: str
) -> tuple[str, JobOutcomes, float]:
    started = time.monotonic()
    job = client.submit({"query": query, "max_papers": 2})
    outcomes = wait_for_jobs(stack.redis_url, [job], timeout=30)
    return job, outcomes, time.monotonic() - started


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_an_llm_hanging_past_the_soft_limit_degrades_to_extractive_summaries(
    pool: str,
    start_worker: WorkerFactory,
    client: ResearchClient,
    fresh_stack: LocalStack,
    record_fault,
) -> None:
    start_worker(pool, pool=pool, concurrency=1, **LIMITED)
    fresh_stack.llm.inject(*[Fault.hang(HANG, endpoint="chat/completions")] * 2)

    hung, outcomes, seconds = run_one(client, fresh_stack, "graph neural networks for molecules")
    after, next_outcome, _ = run_one(client, fresh_stack, "quantum error correction codes")

    record_fault(
        FaultRow.of(
            f"LLM hangs past the soft time limit ({SOFT_LIMIT} s, {pool} pool)",
            JobOutcomes({**outcomes.metas, **next_outcome.metas}),
            recovery_seconds=seconds,
            recovery="job done (extractive)",
        )
    )
    assert outcomes.succeeded == [hung], outcomes.metas
    response = outcomes.response(hung)
    assert {paper["summary_method"] for paper in response["papers"]} == {"extractive"}
    timed_out = [w for w in response["provenance"]["warnings"] if "time limit" in w]
    assert len(timed_out) == len(response["papers"]), response["provenance"]["warnings"]
    assert seconds < SOFT_LIMIT + 3
    # The slot is free again: the next job gets LLM summaries.
    assert next_outcome.succeeded == [after]
    assert {p["summary_method"] for p in next_outcome.response(after)["papers"]} == {"llm"}


def test_arxiv_hanging_past_the_soft_limit_fails_the_job_clearly(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack, record_fault
) -> None:
    start_worker(concurrency=1, **LIMITED)
    fresh_stack.arxiv.inject(Fault.hang(HANG))

    hung, outcomes, seconds = run_one(client, fresh_stack, "reinforcement learning policy")
    after, next_outcome, _ = run_one(client, fresh_stack, "protein structure prediction")

    record_fault(
        FaultRow.of(
            f"arXiv hangs past the soft time limit ({SOFT_LIMIT} s)",
            JobOutcomes({**outcomes.metas, **next_outcome.metas}),
            recovery_seconds=seconds,
            recovery="job failed clearly",
        )
    )
    assert outcomes.failed_clearly == [hung], outcomes.metas
    exc_type, message = outcomes.error(hung)
    assert exc_type == "UpstreamUnavailable"
    assert f"no answer within the soft time limit ({SOFT_LIMIT} s)" in message
    assert seconds < SOFT_LIMIT + 3
    assert next_outcome.succeeded == [after]

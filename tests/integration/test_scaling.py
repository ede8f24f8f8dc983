"""Horizontal scaling as Kubernetes does it: more workers on one Redis, scale-in by SIGTERM.

Workers run as the image runs them (prefork, REMAP_SIGTERM=SIGQUIT, a soft
shutdown) with a concurrency of one, against a slow fake LLM, so that the
number of workers is what sets the capacity. Timings are printed (the
figures in docs/deployment.md come from `python -m tests.deploy.scale_out`), not
asserted; what is asserted is behaviour: the jobs are shared, all succeed,
and a SIGTERM mid-job hands the job to another worker at once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator, Mapping

import pytest
import redis

from tasks.constants import QUEUE
from tests.deploy.scale_out import (
    SCALE_OUT_SETTINGS,
    ScaleOutRun,
    WorkerFleet,
    format_table,
    job_requests,
    run_jobs,
    scale_corpus,
)
from tests.support.arxiv_corpus import CorpusPaper
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.polling import wait_for_stage
from tests.support.stack import LocalStack
from worker.client import ResearchClient

pytestmark = pytest.mark.integration

JOBS_PER_RUN = 8
MAX_PAPERS = 2
# Longer than any wait below: a job finishing well inside it was not
# redelivered by the visibility timeout but handed back at once.
VISIBILITY_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def arxiv_corpus() -> tuple[CorpusPaper, ...]:
    return scale_corpus()


@pytest.fixture(scope="module")
def worker_settings() -> Mapping[str, str]:
    return {
        **SCALE_OUT_SETTINGS,
        "BROKER_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT_SECONDS),
        "TASK_SOFT_TIME_LIMIT_SECONDS": "100",
        "TASK_TIME_LIMIT_SECONDS": "120",
        "RETRY_BACKOFF_SECONDS": "0.05",
        "RETRY_BACKOFF_MAX_SECONDS": "0.5",
        "LLM_TIMEOUT_SECONDS": "10",
    }


@pytest.fixture
def fleet(stack: LocalStack) -> Iterator[WorkerFleet]:
    workers = WorkerFleet(stack)
    yield workers
    workers.stop()


def test_one_two_and_four_workers_share_the_jobs_and_all_succeed(
    fleet: WorkerFleet, client: ResearchClient, llm_server: FakeOpenAIServer
) -> None:
    llm_server.latency_seconds = 0.5
    runs: list[ScaleOutRun] = []

    for index, count in enumerate((1, 2, 4)):
        fleet.grow_to(count)
        requests = job_requests(index * JOBS_PER_RUN, JOBS_PER_RUN, MAX_PAPERS)
        runs.append(run_jobs(fleet, client, requests, llm_server, timeout=90))

    print("\n" + format_table(runs))
    for run in runs:
        assert run.jobs == JOBS_PER_RUN
        # Every worker of the fleet ran part of the jobs.
        assert all(stages > 0 for stages in run.stages_by_worker.values()), run
        assert len(run.stages_by_worker) == run.workers
        # Every job waited on the LLM: no memory or cache shortcut between jobs.
        assert run.llm_calls == JOBS_PER_RUN * MAX_PAPERS


def test_sigterm_mid_job_hands_the_job_to_another_worker_without_waiting_for_the_timeout(
    fleet: WorkerFleet,
    client: ResearchClient,
    llm_server: FakeOpenAIServer,
    stack: LocalStack,
) -> None:
    # Given two workers, and a job whose summaries take 3 s each.
    llm_server.latency_seconds = 3.0
    first, second = fleet.grow_to(2)
    (request,) = job_requests(3 * JOBS_PER_RUN, 1, MAX_PAPERS)
    job_id = client.submit(request)
    wait_for_stage(client, [job_id], "summarize", timeout=30)
    time.sleep(0.5)  # the LLM calls are under way
    busy, idle = (first, second) if "research.summarize[" in first.log_text() else (second, first)
    assert "research.summarize[" in busy.log_text()

    # When Kubernetes scales in the busy worker.
    terminated_at = time.monotonic()
    busy.send_signal(signal.SIGTERM)
    assert busy.process is not None
    busy.process.wait(timeout=30)
    exited_after = time.monotonic() - terminated_at
    response = client.result(job_id, timeout=30)
    finished_after = time.monotonic() - terminated_at

    # Then the job succeeds, its summaries made by the other worker, long
    # before the visibility timeout could have brought the message back.
    print(
        f"\nSIGTERM mid-summarize: busy worker exited after {exited_after:.1f} s, "
        f"job finished on the other worker {finished_after:.1f} s after the signal "
        f"(visibility timeout {VISIBILITY_TIMEOUT_SECONDS} s)"
    )
    (summarize,) = [s for s in response.provenance.stages if s.name == "summarize"]
    assert summarize.worker.startswith(fleet.node(idle))
    assert all(paper.summary_method == "llm" for paper in response.papers)
    assert finished_after < VISIBILITY_TIMEOUT_SECONDS / 5
    assert "Restoring 1 unacknowledged message(s)" in busy.log_text()
    # Nothing is left behind: no message waiting, none held by a dead worker.
    with redis.Redis.from_url(stack.redis_url) as broker:
        assert broker.llen(QUEUE) == 0
        assert broker.hlen("unacked") == 0

"""A worker dies or is told to stop in the middle of jobs: every job still ends SUCCESS.

- kill -9 of a whole worker: its messages come back after the visibility timeout
  (plus kombu's one-second sweep) and the second worker finishes them.
- kill -9 of one prefork pool child: the parent sees the child lost and returns the
  message to the queue at once (reject on worker lost).
- SIGTERM, as Kubernetes scales in (the image sets REMAP_SIGTERM=SIGQUIT): after the
  soft-shutdown window the running stage gives its message back at once, not after
  the visibility timeout.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from tests.failure.conftest import VISIBILITY_TIMEOUT
from tests.failure.tally import FaultRow, log_events, reruns, stored_duplicates, wait_for_jobs
from tests.support.polling import eventually, wait_for_stage
from tests.support.stack import LocalStack, WorkerFactory
from tests.support.worker_process import WorkerProcess
from worker.client import ResearchClient

pytestmark = pytest.mark.integration

QUERIES = (
    "graph neural networks",
    "quantum error correction",
    "protein structure prediction",
    "reinforcement learning exploration",
    "retrieval augmented generation",
    "message passing on molecular graphs",
)
# Kombu sweeps for abandoned messages every second; the rest is the job itself.
RECOVERY_MARGIN = 5.0
# Where a message must come back at once, a visibility timeout far longer than
# that, so that the timing cannot be mistaken for kombu's sweep.
LONG_VISIBILITY_TIMEOUT = 30


def submit(client: ResearchClient, count: int) -> list[str]:
    return [client.submit({"query": q, "max_papers": 2}) for q in QUERIES[:count]]


def qdrant_path(worker: WorkerProcess) -> Path:
    return Path(worker.env["DATA_DIR"]) / "qdrant"


def summaries_received(worker: WorkerProcess) -> int:
    return worker.log_text().count("Task research.summarize[")


def test_kill_9_of_a_worker_mid_job_loses_nothing(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack, record_fault
) -> None:
    victim = start_worker("victim", concurrency=3)
    survivor = start_worker("survivor", concurrency=3)
    fresh_stack.llm.latency_seconds = 1.5
    jobs = submit(client, 6)
    wait_for_stage(client, jobs, "summarize")
    assert summaries_received(victim) > 0, "the victim holds none of the jobs"

    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    outcomes = wait_for_jobs(fresh_stack.redis_url, jobs, timeout=VISIBILITY_TIMEOUT + 20)
    recovery = time.monotonic() - killed_at
    survivor.stop()

    duplicated = stored_duplicates(qdrant_path(victim)) + stored_duplicates(qdrant_path(survivor))
    rerun = reruns(log_events([victim.log_path, survivor.log_path]), jobs)
    record_fault(
        FaultRow.of(
            "kill -9 of a worker mid-job (second worker running)",
            outcomes,
            duplicated=duplicated,
            reruns=rerun,
            recovery_seconds=recovery,
            recovery="kill → every job done",
        )
    )
    assert outcomes.succeeded == jobs, outcomes.metas
    assert duplicated == 0
    assert recovery <= VISIBILITY_TIMEOUT + RECOVERY_MARGIN
    # The killed worker's summaries never finished, so none ran twice to its end.
    assert rerun == 0


def test_kill_9_of_a_prefork_pool_child_requeues_its_job_at_once(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack, record_fault
) -> None:
    # Two children cannot share one embedded Qdrant: memory is a server's job
    # under prefork, and here there is none (jobs degrade, they are not lost).
    worker = start_worker(
        "prefork",
        pool="prefork",
        concurrency=2,
        QDRANT_URL="http://127.0.0.1:9",
        BROKER_VISIBILITY_TIMEOUT_SECONDS=str(LONG_VISIBILITY_TIMEOUT),
    )
    fresh_stack.llm.latency_seconds = 1.5
    jobs = submit(client, 2)
    wait_for_stage(client, jobs, "summarize")
    children = worker.pool_pids()
    assert len(children) == 2, children

    os.kill(children[0], signal.SIGKILL)
    killed_at = time.monotonic()
    fresh_stack.llm.latency_seconds = 0.0
    outcomes = wait_for_jobs(fresh_stack.redis_url, jobs, timeout=30)
    recovery = time.monotonic() - killed_at
    worker.stop()

    record_fault(
        FaultRow.of(
            "kill -9 of one prefork pool child mid-job",
            outcomes,
            reruns=reruns(log_events([worker.log_path]), jobs),
            recovery_seconds=recovery,
            recovery="kill → every job done",
        )
    )
    assert outcomes.succeeded == jobs, outcomes.metas
    assert worker.process is not None and worker.process.poll() is not None
    # Back at once (worker_lost_wait is 2 s), not after the visibility timeout.
    assert recovery < LONG_VISIBILITY_TIMEOUT / 2
    assert "WorkerLostError" in worker.log_text()


def test_sigterm_mid_job_gives_the_message_back_at_once(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack, record_fault
) -> None:
    # As in the image: SIGTERM starts a cold shutdown after the soft-shutdown window (1 s).
    leaving = start_worker(
        "leaving",
        REMAP_SIGTERM="SIGQUIT",
        LLM_TIMEOUT_SECONDS="10",
        BROKER_VISIBILITY_TIMEOUT_SECONDS=str(LONG_VISIBILITY_TIMEOUT),
    )
    fresh_stack.llm.latency_seconds = 3.0
    jobs = submit(client, 2)
    wait_for_stage(client, jobs, "summarize")

    broker = redis.Redis.from_url(fresh_stack.redis_url)
    leaving.send_signal(signal.SIGTERM)
    requeue_seconds = eventually(
        lambda: broker.llen("research") == len(jobs) and broker.hlen("unacked") == 0,
        timeout=LONG_VISIBILITY_TIMEOUT / 2,
        what="the interrupted stages back in the queue",
    ).seconds
    fresh_stack.llm.latency_seconds = 0.0
    assert leaving.process is not None
    leaving.process.wait(timeout=15)
    taking_over = start_worker("taking-over")
    outcomes = wait_for_jobs(fresh_stack.redis_url, jobs, timeout=20)
    broker.close()

    rerun = reruns(log_events([leaving.log_path, taking_over.log_path]), jobs)
    record_fault(
        FaultRow.of(
            "SIGTERM mid-job (scale-in, REMAP_SIGTERM=SIGQUIT, 1 s soft shutdown)",
            outcomes,
            reruns=rerun,
            recovery_seconds=requeue_seconds,
            recovery="SIGTERM → message back in the queue",
        )
    )
    assert outcomes.succeeded == jobs, outcomes.metas
    # The soft-shutdown window (1 s) plus a poll, not the visibility timeout.
    assert requeue_seconds < 1 + 4
    assert leaving.log_text().count('"stage_requeued"') == len(jobs)
    assert rerun == 0

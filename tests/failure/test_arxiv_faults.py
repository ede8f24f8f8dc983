"""arXiv misbehaves: transient faults are retried to SUCCESS, permanent ones fail clearly.

Two workers share the global rate gate (ARXIV_MIN_INTERVAL_SECONDS=0.5 here), and
through every fault the fake records its requests at least that far apart. Each
job asks a different question, so the response cache hides no request.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import pytest

from tests.failure.tally import FaultRow, JobOutcomes, wait_for_jobs
from tests.support import Fault, RecordedRequest
from tests.support.stack import LocalStack, WorkerFactory
from worker.client import ResearchClient

pytestmark = pytest.mark.integration

MIN_INTERVAL = 0.5
# The gate spaces the requests' slots on Redis's clock; a request then leaves a
# busy worker a little after its slot (up to ~0.2 s measured on a loaded
# two-core machine), so single gaps seen by the fake shrink by that much. Without
# the gate, requests from eight threads arrive milliseconds apart.
GAP_TOLERANCE = 0.25
ARXIV_ENV = {"ARXIV_MIN_INTERVAL_SECONDS": str(MIN_INTERVAL), "ARXIV_TIMEOUT_SECONDS": "1"}
QUERIES = (
    "graph neural networks for molecules",
    "reinforcement learning policy",
    "quantum error correction codes",
    "protein structure prediction",
    "retrieval augmented generation benchmarks",
    "graph neural network message passing",
    "reinforcement learning exploration bonus",
    "surface code decoder threshold",
    "protein folding language models",
    "dense passage retrieval",
)
# Served one per request, in this order: the first seven requests are the seven
# jobs' first attempts, and each job has five attempts (ARXIV_MAX_RETRIES=4).
TRANSIENT = (
    Fault.status(503),
    Fault.rate_limited(retry_after=1),
    Fault.hang(3),  # longer than ARXIV_TIMEOUT_SECONDS
    Fault.reset(),
    Fault.truncated(),
    Fault.malformed(),
    Fault.status(503),
    # The rest of the bursts: whichever retries come first take them.
    Fault.status(503),
    Fault.status(502),
    Fault.rate_limited(retry_after=1),
)
JOBS = 7


def smallest_gap(requests: Sequence[RecordedRequest]) -> float:
    times = sorted(request.time for request in requests)
    return min((b - a for a, b in pairwise(times)), default=float("inf"))


def assert_spaced_by_the_gate(requests: Sequence[RecordedRequest]) -> None:
    times = sorted(request.time for request in requests)
    assert smallest_gap(requests) >= MIN_INTERVAL - GAP_TOLERANCE
    # Jitter shifts single requests; over the whole run the interval holds.
    assert times[-1] - times[0] >= (len(times) - 1) * MIN_INTERVAL - GAP_TOLERANCE


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size (VmHWM), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


def test_transient_arxiv_faults_are_retried_to_success_keeping_the_rate_gap(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack, record_fault
) -> None:
    start_worker("first", **ARXIV_ENV)
    start_worker("second", **ARXIV_ENV)
    fresh_stack.arxiv.inject(*TRANSIENT)
    started = time.monotonic()

    jobs = [client.submit({"query": q, "max_papers": 2}) for q in QUERIES[:JOBS]]
    outcomes = wait_for_jobs(fresh_stack.redis_url, jobs, timeout=60)
    elapsed = time.monotonic() - started

    requests = fresh_stack.arxiv.requests
    record_fault(
        FaultRow.of(
            "arXiv: bursts of 503/502 and 429 + Retry-After, timeout, reset, truncated and "
            "malformed XML",
            outcomes,
            recovery_seconds=elapsed,
            recovery="all jobs done (two workers, 0.5 s gate)",
            note=f"{len(requests)} arXiv requests, smallest gap {smallest_gap(requests):.3f} s",
        )
    )
    assert outcomes.succeeded == jobs, outcomes.metas
    assert not fresh_stack.arxiv.pending_faults
    assert len(requests) >= len(jobs) + len(TRANSIENT)
    assert_spaced_by_the_gate(requests)
    # Requests take faults in arrival order: the one that got the 429 waited its Retry-After.
    limited = requests[TRANSIENT.index(Fault.rate_limited(retry_after=1))]
    query = limited.params["search_query"]
    retried = next(
        r for r in requests if r.time > limited.time and r.params["search_query"] == query
    )
    assert retried.time - limited.time >= 1.0


def test_permanent_arxiv_faults_fail_clearly_and_the_entity_bomb_leaves_memory_flat(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack, record_fault
) -> None:
    first = start_worker("first", **ARXIV_ENV)
    start_worker("second", **ARXIV_ENV)
    # One job at a time, so each takes exactly its faults.
    cases = [
        ([Fault.error_feed("syntax error in search_query")], "PermanentUpstreamError"),
        ([Fault.entity_bomb()], "PermanentUpstreamError"),
        ([Fault.status(503)] * 5, "UpstreamUnavailable"),  # ARXIV_MAX_RETRIES=4: 5 attempts
        ([Fault.hang(3)] * 5, "UpstreamUnavailable"),
    ]
    peak_before = peak_rss_bytes(first.pid)
    jobs, metas = [], {}
    for index, (faults, _) in enumerate(cases):
        fresh_stack.arxiv.inject(*faults)
        job = client.submit({"query": QUERIES[-1 - index], "max_papers": 2})
        jobs.append(job)
        metas.update(wait_for_jobs(fresh_stack.redis_url, [job], timeout=30).metas)
        assert not fresh_stack.arxiv.pending_faults
    peak_growth = peak_rss_bytes(first.pid) - peak_before
    outcomes = JobOutcomes(metas)

    requests = fresh_stack.arxiv.requests
    record_fault(
        FaultRow.of(
            "arXiv: error feed, entity-expansion bomb, 503 and timeouts past the retries",
            outcomes,
            note=(
                f"bomb: worker peak RSS +{peak_growth / 2**20:.1f} MiB; "
                f"smallest gap {smallest_gap(requests):.3f} s"
            ),
        )
    )
    assert outcomes.failed_clearly == jobs, outcomes.metas
    for job, (_, expected_type) in zip(jobs, cases, strict=True):
        assert outcomes.error(job)[0] == expected_type
    assert "arXiv rejected the query: syntax error in search_query" in outcomes.error(jobs[0])[1]
    assert "refused a feed with a DTD" in outcomes.error(jobs[1])[1]
    assert "HTTP 503" in outcomes.error(jobs[2])[1] and "5 attempts" in outcomes.error(jobs[2])[1]
    assert "no answer within 1 s" in outcomes.error(jobs[3])[1]
    # A billion laughs expanded would be gigabytes; refused, it costs nothing.
    assert peak_growth < 50 * 2**20, f"peak RSS grew by {peak_growth / 2**20:.0f} MiB"
    assert_spaced_by_the_gate(requests)

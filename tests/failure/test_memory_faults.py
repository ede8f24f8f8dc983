"""Qdrant is away: jobs succeed with a warning, and their papers are written when it returns.

The store stage parks a batch it cannot write in Redis (research-arm:memory:pending);
the next store that reaches Qdrant writes the parked batches first. Here Qdrant is
away twice, two ways: a server URL that refuses connections, then an embedded
store locked by another process; once the lock is released, the next job writes
all three jobs' papers, and none twice.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from qdrant_client import QdrantClient

from tasks.constants import PENDING_STORE_KEY
from tests.failure.tally import FaultRow, JobOutcomes, stored_duplicates, wait_for_jobs
from tests.support.stack import LocalStack, WorkerFactory
from worker.client import ResearchClient
from worker.local_redis import free_port

pytestmark = pytest.mark.integration


def stored_ids(path: Path) -> set[str]:
    qdrant = QdrantClient(path=str(path))
    try:
        records, _ = qdrant.scroll("research_papers", limit=1000, with_payload=True)
    finally:
        qdrant.close()
    return {str(record.payload["arxiv_id"]) for record in records if record.payload}


def paper_ids(outcomes: JobOutcomes, job: str) -> set[str]:
    return {paper["arxiv_id"] for paper in outcomes.response(job)["papers"]}


def test_papers_stored_while_qdrant_is_away_are_written_when_it_returns(
    start_worker: WorkerFactory,
    client: ResearchClient,
    fresh_stack: LocalStack,
    tmp_path: Path,
    record_fault,
) -> None:
    parked = redis.Redis.from_url(fresh_stack.redis_url)
    refused = start_worker("qdrant-refused", QDRANT_URL=f"http://127.0.0.1:{free_port()}")
    first = client.submit({"query": "graph neural networks for molecules", "max_papers": 3})
    metas = dict(wait_for_jobs(fresh_stack.redis_url, [first], timeout=30).metas)
    refused.stop()
    assert parked.llen(PENDING_STORE_KEY) == 1

    store = tmp_path / "qdrant"
    holder = QdrantClient(path=str(store))  # holds the embedded store's lock
    try:
        locked = start_worker("qdrant-locked", QDRANT_PATH=str(store))
        second = client.submit({"query": "quantum error correction codes", "max_papers": 3})
        metas.update(wait_for_jobs(fresh_stack.redis_url, [second], timeout=30).metas)
        assert parked.llen(PENDING_STORE_KEY) == 2
    finally:
        holder.close()  # Qdrant is back

    back_at = time.monotonic()
    third = client.submit({"query": "protein structure prediction", "max_papers": 3})
    metas.update(wait_for_jobs(fresh_stack.redis_url, [third], timeout=30).metas)
    written_seconds = time.monotonic() - back_at
    locked.stop()
    still_parked = parked.llen(PENDING_STORE_KEY)
    parked.close()

    outcomes = JobOutcomes(metas)
    duplicated = stored_duplicates(store)
    record_fault(
        FaultRow.of(
            "Qdrant away (refused URL, then a locked embedded store), then back",
            outcomes,
            duplicated=duplicated,
            recovery_seconds=written_seconds,
            recovery="Qdrant back → parked papers written",
        )
    )
    jobs = [first, second, third]
    assert outcomes.succeeded == jobs, outcomes.metas
    for job in (first, second):
        warnings = outcomes.response(job)["provenance"]["warnings"]
        assert any(w.startswith("memory recall skipped") for w in warnings), warnings
        assert any(w.startswith("memory store deferred") for w in warnings), warnings
        assert outcomes.response(job)["provenance"]["memory"]["stored"] == 0
    assert outcomes.response(third)["provenance"]["warnings"] == []
    assert still_parked == 0
    assert stored_ids(store) == set().union(*(paper_ids(outcomes, job) for job in jobs))
    assert duplicated == 0

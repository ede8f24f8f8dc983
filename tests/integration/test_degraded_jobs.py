"""Jobs that degrade instead of failing: LLM down, no LLM, memory kept free of duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from tasks.paper_index import point_id
from tests.support.fake_openai import FakeOpenAIServer, Fault
from tests.support.stack import WorkerFactory
from worker.client import ResearchClient

pytestmark = pytest.mark.integration

JOB_TIMEOUT = 60


def test_llm_failures_fall_back_to_flagged_extractive_summaries(
    start_worker: WorkerFactory, client: ResearchClient, llm_server: FakeOpenAIServer
) -> None:
    worker = start_worker()
    llm_server.inject(*[Fault.status(500) for _ in range(50)])

    response = client.result(
        client.submit({"query": "reinforcement learning exploration bonus", "max_papers": 2}),
        timeout=JOB_TIMEOUT,
    )

    chat_calls = [r for r in llm_server.requests if r.path.endswith("/chat/completions")]
    llm_server.clear()
    worker.stop()
    assert response.papers
    for paper in response.papers:
        assert paper.summary_method == "extractive"
        assert paper.summary and paper.summary[:30] in paper.abstract
    assert any("extractive" in warning for warning in response.provenance.warnings)
    # Three attempts per paper (LLM_MAX_RETRIES=2), then the fallback.
    assert len(chat_calls) == 3 * len(response.papers)


def test_a_repeated_job_stores_no_paper_twice(
    start_worker: WorkerFactory,
    client: ResearchClient,
    worker_env: dict[str, str],
    tmp_path: Path,
) -> None:
    qdrant_path = tmp_path / "qdrant"
    own = start_worker(QDRANT_PATH=str(qdrant_path), LLM_MODEL="", WORKER_CONCURRENCY="2")
    request = {"query": "graph neural network message passing", "max_papers": 5}
    ids = set()
    for _ in range(2):
        response = client.result(client.submit(request), timeout=JOB_TIMEOUT)
        ids.update(p.arxiv_id for p in response.papers)
        assert {p.summary_method for p in response.papers} == {"extractive"}
        assert any("no LLM" in w for w in response.provenance.warnings)
    own.stop()

    qdrant = QdrantClient(path=str(qdrant_path))
    try:
        assert qdrant.count("research_papers", exact=True).count == len(ids)
        stored = qdrant.retrieve("research_papers", ids=[point_id(i) for i in ids])
        assert {record.payload["arxiv_id"] for record in stored} == ids  # type: ignore[index]
        assert all(len(record.payload["job_ids"]) == 2 for record in stored)  # type: ignore[index]
    finally:
        qdrant.close()

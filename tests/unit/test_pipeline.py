"""The Celery shells around the stages, run in this process through `task.apply()`.

The clients are real: the arXiv client against the local fake arXiv, the
index in an in-memory Qdrant, Redis as fakeredis, the worker's Prometheus
instruments on a registry of the test's own. A mistake in `run_stage`, the
retry decision or the chain fails here in seconds, not only in a worker process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import fakeredis
import httpx
import pytest
from celery import Celery
from celery._state import get_current_app
from prometheus_client import CollectorRegistry
from qdrant_client import QdrantClient

from schemas.research import STAGE_NAMES, ResearchResponse
from tasks import pipeline
from tasks.arxiv_client import ArxivClient
from tasks.cache import RedisJsonCache
from tasks.constants import ARXIV_CACHE_PREFIX, SUMMARY_CACHE_PREFIX
from tasks.deliveries import delivery_key
from tasks.embeddings import HashingEmbedder
from tasks.errors import DeliveryLimitExceeded, InvalidRequest, UpstreamUnavailable
from tasks.job import accept_job
from tasks.paper_index import PaperIndex, PendingWrites
from tasks.paper_vectors import PaperVectorLookup
from tasks.rate_gate import ArxivRateGate
from tasks.resources import StageResources, process_resources
from tests.support.fake_arxiv import FakeArxivServer, Fault
from tests.unit.factories import make_stage_settings
from worker.metrics import WorkerMetrics

QUERY = "graph neural networks"


@pytest.fixture
def eager_app() -> Iterator[Celery]:
    """An app whose backend is in memory: progress and results stay in this process."""
    previous = get_current_app()
    app = Celery("pipeline-test", broker="memory://", backend="cache+memory://")
    app.set_current()
    try:
        yield app
    finally:
        previous.set_current()


@pytest.fixture
def redis_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def resources(
    eager_app: Celery,
    fake_arxiv: FakeArxivServer,
    redis_server: fakeredis.FakeServer,
    registry: CollectorRegistry,
) -> Iterator[StageResources]:
    redis_client = fakeredis.FakeRedis(server=redis_server)
    embedder = HashingEmbedder()
    index = PaperIndex(lambda: QdrantClient(":memory:"), "papers", embedder, summary_model=None)
    http = httpx.Client()
    built = StageResources(
        settings=make_stage_settings(
            arxiv_max_retries=2, retry_backoff_seconds=0.0, arxiv_timeout_seconds=5.0
        ),
        redis=redis_client,
        arxiv=ArxivClient(
            http,
            fake_arxiv.url,
            ArxivRateGate(redis_client, 0),
            RedisJsonCache(redis_client, ARXIV_CACHE_PREFIX, 3600),
            5.0,
        ),
        summarizer=None,
        summary_cache=RedisJsonCache(redis_client, SUMMARY_CACHE_PREFIX, 3600),
        embedder=embedder,
        paper_vectors=PaperVectorLookup(embedder, None, store=index),
        fresh_embeddings=50,
        index=index,
        pending_writes=PendingWrites(redis_client),
        metrics=WorkerMetrics(registry),
        close=lambda: (index.close(), http.close()),
    )
    process_resources.provide(lambda: built)
    try:
        yield built
    finally:
        process_resources.close()


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value in the test's registry (0 when never recorded)."""
    return registry.get_sample_value(name, labels) or 0.0


def job_state(resources: StageResources, **request: Any) -> dict[str, Any]:
    job = accept_job(
        "job-1",
        (),
        {"request": {"query": QUERY, "max_papers": 2, **request}},
        embedding_model=resources.embedder.name,
        llm_model=None,
    )
    return job.model_dump(mode="json")


def test_execute_runs_the_whole_chain_into_the_response(
    resources: StageResources, registry: CollectorRegistry
) -> None:
    result = pipeline.execute.apply(kwargs={"request": {"query": QUERY, "max_papers": 2}})

    response = ResearchResponse.model_validate(result.get())
    assert [stage.name for stage in response.provenance.stages] == list(STAGE_NAMES)
    assert 0 < len(response.papers) <= 2
    assert response.provenance.memory.stored == len(response.papers)
    # No LLM is configured: the summaries are extractive, and the job says so.
    assert response.provenance.stages[3].outcome == "degraded"
    assert metric(registry, "research_arm_jobs_total", outcome="degraded") == 1
    for name in STAGE_NAMES:
        recorded = [s.outcome for s in response.provenance.stages if s.name == name]
        assert (
            metric(
                registry,
                "research_arm_stage_duration_seconds_count",
                stage=name,
                outcome=recorded[0],
            )
            == 1
        )


def test_a_bad_request_fails_at_execute_with_what_to_fix(resources: StageResources) -> None:
    result = pipeline.execute.apply(kwargs={"request": {"query": QUERY, "max_papers": 0}})

    assert result.state == "FAILURE"
    assert isinstance(result.result, InvalidRequest)
    assert "max_papers" in str(result.result)


def test_a_stage_records_its_outcome_in_provenance_and_metrics(
    resources: StageResources, fake_arxiv: FakeArxivServer, registry: CollectorRegistry
) -> None:
    state = job_state(resources, sources=["arxiv"])

    recalled = pipeline.recall.apply(args=(state,)).get()
    searched = pipeline.search.apply(args=(recalled,)).get()

    assert [(s["name"], s["outcome"]) for s in searched["stages"]] == [
        ("recall", "skipped"),
        ("search", "ok"),
    ]
    requests = len(fake_arxiv.requests)
    assert requests >= 1
    assert metric(registry, "research_arm_arxiv_requests_total") == requests
    assert metric(registry, "research_arm_qdrant_failures_total", operation="recall") == 0


def test_a_transient_arxiv_error_is_retried_and_the_job_goes_on(
    resources: StageResources, fake_arxiv: FakeArxivServer, registry: CollectorRegistry
) -> None:
    fake_arxiv.inject(Fault.status(503), Fault.status(503))

    searched = pipeline.search.apply(args=(job_state(resources, sources=["arxiv"]),))

    assert searched.state == "SUCCESS"
    assert searched.get()["stages"][-1]["name"] == "search"
    assert not fake_arxiv.pending_faults
    assert len(fake_arxiv.requests) == 3
    # The metrics count the search that answered; the failures show as retries.
    assert metric(registry, "research_arm_arxiv_requests_total") == 1


def test_the_search_gives_up_after_its_retries_with_upstream_unavailable(
    resources: StageResources, fake_arxiv: FakeArxivServer
) -> None:
    fake_arxiv.inject(*[Fault.status(503)] * 3)

    searched = pipeline.search.apply(args=(job_state(resources, sources=["arxiv"]),))

    assert searched.state == "FAILURE"
    assert isinstance(searched.result, UpstreamUnavailable)
    assert "gave up after 3 attempts" in str(searched.result)


def test_the_delivery_limit_fails_the_stage_and_is_counted(
    resources: StageResources, redis_server: fakeredis.FakeServer, registry: CollectorRegistry
) -> None:
    limit = resources.settings.max_deliveries
    # Earlier deliveries of this message died with their worker.
    fakeredis.FakeRedis(server=redis_server).set(delivery_key("recall-1", 0), limit - 1)

    recalled = pipeline.recall.apply(args=(job_state(resources),), task_id="recall-1")

    assert recalled.state == "FAILURE"
    assert isinstance(recalled.result, DeliveryLimitExceeded)
    assert metric(registry, "research_arm_delivery_limit_exceeded_total", task="research.recall")


def test_redis_away_hands_the_message_back_to_the_queue(
    resources: StageResources, redis_server: fakeredis.FakeServer
) -> None:
    redis_server.connected = False

    recalled = pipeline.recall.apply(args=(job_state(resources),))

    assert recalled.state == "REJECTED"


def test_a_stage_past_its_deadline_names_the_service_it_waited_on(
    resources: StageResources, fake_arxiv: FakeArxivServer
) -> None:
    # No time at all: the first request's timeout is cut to nothing, and no retry fits.
    process_resources.provide(
        lambda: replace(
            resources, settings=replace(resources.settings, task_soft_time_limit_seconds=1)
        )
    )
    fake_arxiv.inject(Fault.hang(3))

    searched = pipeline.search.apply(args=(job_state(resources, sources=["arxiv"]),))

    assert searched.state == "FAILURE"
    assert isinstance(searched.result, UpstreamUnavailable)
    assert "no answer within the soft time limit (1 s)" in str(searched.result)

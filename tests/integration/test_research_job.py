"""research.execute end to end as an orchestrator uses it: real Redis, worker and upstreams."""

from __future__ import annotations

import time
from datetime import date

import pytest

from tasks.query_planner import QUERY_SEPARATOR
from tests.support.fake_arxiv import FakeArxivServer
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.stack import LLM_MODEL, WorkerFactory
from tests.support.worker_process import WorkerProcess
from worker.client import JobFailed, ResearchClient

pytestmark = pytest.mark.integration

JOB_TIMEOUT = 60


@pytest.fixture(scope="module")
def worker(start_worker: WorkerFactory) -> WorkerProcess:
    return start_worker()


def chat_requests(llm: FakeOpenAIServer) -> list[object]:
    return [r for r in llm.requests if r.path.endswith("/chat/completions")]


def test_a_job_returns_ranked_summarised_cited_papers_with_provenance(
    worker: WorkerProcess,
    client: ResearchClient,
    arxiv_server: FakeArxivServer,
    llm_server: FakeOpenAIServer,
) -> None:
    job_id = client.submit({"query": "graph neural networks for molecules", "max_papers": 4})

    response = client.result(job_id, timeout=JOB_TIMEOUT)

    assert 1 <= len(response.papers) <= 4
    scores = [paper.relevance_score for paper in response.papers]
    assert scores == sorted(scores, reverse=True)
    for paper in response.papers:
        assert paper.summary_method == "llm"
        # The local LLM answers with the abstract's opening: the summary is about this paper.
        assert paper.summary and paper.summary.removeprefix("Summary: ")[:40] in paper.abstract
        assert paper.citation and f"arXiv:{paper.arxiv_id}" in paper.citation
        assert paper.bibtex.startswith("@misc{")
    provenance = response.provenance
    assert provenance.job_id == job_id
    assert [stage.name for stage in provenance.stages] == [
        "recall",
        "search",
        "rank",
        "summarize",
        "store",
    ]
    assert provenance.models.llm == LLM_MODEL
    # The default embedder is the sentence-embedding model, not the hashing fallback.
    assert provenance.models.embedding == "all-MiniLM-L6-v2"
    assert provenance.sources and provenance.sources[0].startswith(arxiv_server.url)
    assert provenance.memory.stored == len(response.papers)
    assert response.query_used.count("all:") >= 3
    assert response.total_found >= len(response.papers)
    assert 0 < response.confidence <= 1
    assert len(chat_requests(llm_server)) == len(response.papers)


def test_the_query_sent_to_arxiv_honours_dates_and_categories(
    worker: WorkerProcess, client: ResearchClient, arxiv_server: FakeArxivServer
) -> None:
    request = {
        "query": "reinforcement learning policy",
        "start_date": "2019-01-01",
        "end_date": "2022-12-31",
        "categories": ["cs.LG"],
        "max_papers": 5,
    }

    response = client.result(client.submit(request), timeout=JOB_TIMEOUT)

    sent = arxiv_server.requests[-1].params["search_query"]
    assert "submittedDate:[201901010000 TO 202212312359]" in sent
    assert "cat:cs.LG" in sent
    assert response.papers, "the corpus has reinforcement-learning papers in cs.LG for 2019-2022"
    for paper in response.papers:
        assert date(2019, 1, 1) <= paper.published_date <= date(2022, 12, 31)
        assert "cs.LG" in paper.categories


def test_progress_is_reported_on_the_job_id_while_it_runs(
    worker: WorkerProcess, client: ResearchClient, llm_server: FakeOpenAIServer
) -> None:
    llm_server.latency_seconds = 1.0
    job_id = client.submit({"query": "quantum error correction codes", "max_papers": 3})

    seen_stages = set()
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        status = client.status(job_id)
        if status.finished:
            break
        if status.state == "PROGRESS":
            seen_stages.add(status.stage)
            assert status.total is not None and status.done is not None
            assert 0 <= status.done <= status.total
        time.sleep(0.05)

    assert client.status(job_id).state == "SUCCESS"
    assert "summarize" in seen_stages


def test_a_repeated_job_calls_neither_arxiv_nor_the_llm_again(
    worker: WorkerProcess,
    client: ResearchClient,
    arxiv_server: FakeArxivServer,
    llm_server: FakeOpenAIServer,
) -> None:
    request = {"query": "protein structure prediction", "max_papers": 3}
    first = client.result(client.submit(request), timeout=JOB_TIMEOUT)
    arxiv_calls, llm_calls = len(arxiv_server.requests), len(chat_requests(llm_server))

    second = client.result(client.submit(request), timeout=JOB_TIMEOUT)

    assert len(arxiv_server.requests) == arxiv_calls
    assert len(chat_requests(llm_server)) == llm_calls
    assert [p.arxiv_id for p in second.papers] == [p.arxiv_id for p in first.papers]
    assert [p.summary for p in second.papers] == [p.summary for p in first.papers]
    assert {p.summary_method for p in second.papers} == {"cached"}
    # The papers still came from somewhere: arXiv's answer, served from the cache,
    # and the index that recalled them.
    assert second.provenance.sources == [
        *("cache:" + source for source in first.provenance.sources if source.startswith("http")),
        "corpus:research_papers",
    ]
    assert second.provenance.usage.llm.calls == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"query": "ab"}, "query"),
        ({"query": "valid query", "max_papers": 0}, "max_papers"),
        ({"query": "valid query", "max_papers": "5"}, "max_papers"),
        ({"query": "valid query", "start_date": "2024-02-30"}, "start_date"),
        (
            {"query": "valid query", "start_date": "2024-05-01", "end_date": "2024-01-01"},
            "end_date",
        ),
        ({"query": "valid query", "colour": "blue"}, "colour"),
        ({"query": "valid query", "categories": ["not a category"]}, "categories.0"),
        ("graph neural networks", "request"),
    ],
)
def test_an_invalid_request_fails_at_once_naming_the_field(
    worker: WorkerProcess, client: ResearchClient, payload: object, field: str
) -> None:
    started = time.monotonic()
    job_id = client.submit(payload)  # type: ignore[arg-type]

    with pytest.raises(JobFailed) as failure:
        client.result(job_id, timeout=JOB_TIMEOUT)

    assert time.monotonic() - started < 10
    assert failure.value.error_type == "InvalidRequest"
    assert field in failure.value.message
    assert client.status(job_id).error_type == "InvalidRequest"


def test_a_message_without_request_fails_as_invalid_and_the_next_job_succeeds(
    worker: WorkerProcess, client: ResearchClient
) -> None:
    bad = client.app.send_task("research.execute", kwargs={"query": "x"}, queue="research")
    with pytest.raises(JobFailed) as failure:
        client.result(bad.id, timeout=JOB_TIMEOUT)
    assert failure.value.error_type == "InvalidRequest"
    assert "request" in failure.value.message

    good = client.result(client.submit({"query": "graph neural networks"}), timeout=JOB_TIMEOUT)
    assert good.papers
    assert "upstream_retry" not in worker.log_text()


def test_transient_arxiv_errors_are_retried_and_the_job_succeeds(
    worker: WorkerProcess, client: ResearchClient, arxiv_server: FakeArxivServer
) -> None:
    from tests.support.fake_arxiv import Fault

    arxiv_server.inject(Fault.status(503), Fault.status(429, retry_after=0.2))

    response = client.result(
        client.submit({"query": "retrieval augmented generation benchmarks"}), timeout=JOB_TIMEOUT
    )

    assert response.papers
    # The two faulted attempts repeat the first (precise) query; then one request per
    # query of the plan (the broad one follows when the precise one finds too few).
    queries = response.query_used.split(QUERY_SEPARATOR)
    sent = [request.params["search_query"] for request in arxiv_server.requests]
    assert sent == [queries[0]] * 3 + queries[1:]


def test_an_arxiv_error_feed_fails_the_job_with_arxivs_message(
    worker: WorkerProcess, client: ResearchClient, arxiv_server: FakeArxivServer
) -> None:
    from tests.support.fake_arxiv import Fault

    arxiv_server.inject(Fault.error_feed())
    job_id = client.submit({"query": "retrieval augmented generation errors"})

    with pytest.raises(JobFailed) as failure:
        client.result(job_id, timeout=JOB_TIMEOUT)

    assert failure.value.error_type == "PermanentUpstreamError"
    assert "arXiv rejected the query" in failure.value.message
    assert len(arxiv_server.requests) == 1

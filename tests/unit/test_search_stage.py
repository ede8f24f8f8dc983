"""The search stage: the precise query first, the broad one only when it finds too few.

arXiv is the local fake (tests/support/fake_arxiv.py) over a handful of papers
written here, so each test knows which papers each query matches; the client,
its rate gate (off) and its response cache are the real ones, on fakeredis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import fakeredis
import httpx
import pytest

from schemas.research import ResearchRequest
from tasks.arxiv_client import ArxivClient
from tasks.cache import RedisJsonCache
from tasks.constants import ARXIV_CACHE_PREFIX, ARXIV_GATE_KEY
from tasks.errors import UpstreamUnavailable
from tasks.job import JobState
from tasks.query_planner import QUERY_SEPARATOR, plan_search
from tasks.rate_gate import ArxivRateGate
from tasks.stage import Attempt, StageResult
from tasks.stages.search import search
from tests.support.fake_arxiv import CorpusPaper, FakeArxivServer
from tests.unit.factories import make_paper, make_stage_settings

POOL = 4
# Jobs here ask for 2 papers: twice that is the pool.
SETTINGS = make_stage_settings(arxiv_candidate_factor=2, arxiv_timeout_seconds=5.0)


def paper(
    arxiv_id: str, title: str, day: int = 1, categories: tuple[str, ...] = ("cs.CL",)
) -> CorpusPaper:
    return CorpusPaper(
        arxiv_id=arxiv_id,
        title=title,
        abstract=f"{title}. Experiments on three benchmarks.",
        authors=("Ada Lovelace",),
        categories=categories,
        published=datetime(2024, 1, day, tzinfo=UTC),
    )


# Three papers on "sparse retrieval"; five more on retrieval alone; one on parsing.
CORPUS = [
    paper("2401.00001", "Sparse retrieval with learned term weights", 1),
    paper("2401.00002", "Sparse retrieval for long documents", 2),
    paper("2401.00003", "Efficient sparse retrieval on a budget", 3, ("cs.IR",)),
    *(paper(f"2401.0001{i}", f"Dense retrieval study number {i}", 10 + i) for i in range(5)),
    paper("2401.00020", "Dependency parsing of tweets", 20),
]


@pytest.fixture(scope="module")
def arxiv_server() -> Iterator[FakeArxivServer]:
    with FakeArxivServer(CORPUS) as server:
        yield server


@pytest.fixture
def arxiv(arxiv_server: FakeArxivServer) -> Iterator[ArxivClient]:
    arxiv_server.clear()
    redis_client = fakeredis.FakeRedis()
    with httpx.Client() as http:
        yield ArxivClient(
            http,
            arxiv_server.url,
            ArxivRateGate(redis_client, 0, key=ARXIV_GATE_KEY),
            RedisJsonCache(redis_client, ARXIV_CACHE_PREFIX, 3600),
            timeout_seconds=5.0,
        )


def new_job(query: str, **request: object) -> JobState:
    return JobState(
        job_id="job-1",
        request=ResearchRequest.model_validate({"query": query, "max_papers": 2, **request}),
        accepted_at=datetime(2026, 1, 1, tzinfo=UTC),
        embedding_model="local-hashing-v1-384",
        llm_model=None,
    )


def run_search(job: JobState, arxiv: ArxivClient, *, seconds_left: float = 60.0) -> StageResult:
    attempt = Attempt(retries=0, max_retries=4, deadline=time.monotonic() + seconds_left)
    return search(job, arxiv, SETTINGS, attempt)


def sent_queries(server: FakeArxivServer) -> list[str]:
    return [request.params["search_query"] for request in server.requests]


def test_enough_precise_results_mean_a_single_request(
    arxiv: ArxivClient, arxiv_server: FakeArxivServer
) -> None:
    # Given a query whose precise form matches more papers than the pool holds
    job = new_job("retrieval study")
    plan = plan_search("retrieval study", pool_size=POOL)

    # When the stage searches
    result = run_search(job, arxiv)

    # Then only the precise query went to arXiv, and the response names it alone
    assert sent_queries(arxiv_server) == [plan.precise] == ['all:"retrieval" AND all:"study"']
    assert job.search_query == plan.precise
    [source] = job.sources
    assert source.startswith(arxiv_server.url + "?search_query=")
    assert len(job.candidates) == POOL
    assert job.arxiv_total == 5
    assert result.outcome == "ok"


def test_too_few_precise_results_send_the_broad_query_and_merge_both(
    arxiv: ArxivClient, arxiv_server: FakeArxivServer
) -> None:
    # Given a query whose precise form matches 3 papers, fewer than the pool of 4
    job = new_job("efficient sparse retrieval")

    # When the stage searches
    run_search(job, arxiv)

    # Then the broad query followed, without the generic word "efficient"
    precise, broad = sent_queries(arxiv_server)
    assert precise == 'all:"efficient" AND all:"sparse" AND all:"retrieval"'
    assert broad == '(all:"sparse" OR all:"retrieval")'
    # And the response shows both, in order, and every URL called
    assert job.search_query == f"{precise}{QUERY_SEPARATOR}{broad}"
    assert len(job.sources) == 2
    assert all("search_query=" in source for source in job.sources)
    # And the pool holds the precise paper first, then new broad ones, once each, up to its size
    ids = [candidate.arxiv_id for candidate in job.candidates]
    assert ids[0] == "2401.00003"
    assert len(ids) == len(set(ids)) == POOL
    assert {"2401.00001", "2401.00002"} <= set(ids)
    # And arXiv's total is the broad query's, which holds the precise one's
    assert job.arxiv_total == 8


def test_the_broad_query_keeps_categories_and_dates(
    arxiv: ArxivClient, arxiv_server: FakeArxivServer
) -> None:
    job = new_job(
        "efficient sparse retrieval",
        categories=["cs.CL"],
        start_date="2024-01-01",
        end_date="2024-01-31",
    )

    run_search(job, arxiv)

    queries = sent_queries(arxiv_server)
    assert len(queries) == 2
    for query in queries:
        assert query.endswith(" AND cat:cs.CL AND submittedDate:[202401010000 TO 202401312359]")
    # The only precise match is in cs.IR: the pool comes from the broad query, in cs.CL
    assert job.candidates
    assert all("cs.CL" in candidate.categories for candidate in job.candidates)


def test_a_one_word_query_that_finds_few_sends_no_second_request(
    arxiv: ArxivClient, arxiv_server: FakeArxivServer
) -> None:
    job = new_job("parsing")

    run_search(job, arxiv)

    assert sent_queries(arxiv_server) == ['all:"parsing"']
    assert job.search_query == 'all:"parsing"'
    assert [candidate.arxiv_id for candidate in job.candidates] == ["2401.00020"]


def test_a_quoted_phrase_is_sent_as_a_phrase(
    arxiv: ArxivClient, arxiv_server: FakeArxivServer
) -> None:
    job = new_job('"sparse retrieval" for long documents')

    run_search(job, arxiv)

    assert sent_queries(arxiv_server)[0] == (
        'all:"sparse retrieval" AND all:"long" AND all:"documents"'
    )
    assert job.candidates[0].arxiv_id == "2401.00002"


def test_a_repeated_search_is_served_from_the_cache_both_queries_included(
    arxiv: ArxivClient, arxiv_server: FakeArxivServer
) -> None:
    # Given a job that needed both queries
    run_search(new_job("efficient sparse retrieval"), arxiv)
    assert len(arxiv_server.requests) == 2

    # When the same request comes again
    job = new_job("efficient sparse retrieval")
    result = run_search(job, arxiv)

    # Then arXiv is not asked again, and both URLs are named as answered by the cache
    assert len(arxiv_server.requests) == 2
    assert result.outcome == "cached"
    assert len(job.sources) == 2
    assert all(source.startswith("cache:http") for source in job.sources)
    assert len(job.candidates) == POOL


def test_arxivs_record_wins_over_a_recalled_paper_and_the_rest_counts_beyond(
    arxiv: ArxivClient,
) -> None:
    # Given a job that recalled one paper arXiv returns and one it does not
    job = new_job("retrieval study")
    recalled = [make_paper("2401.00014", title="Old title"), make_paper("2301.99999")]
    job.candidates = recalled
    job.recalled_ids = [p.arxiv_id for p in recalled]

    run_search(job, arxiv)

    by_id = {candidate.arxiv_id: candidate for candidate in job.candidates}
    assert by_id["2401.00014"].title == "Dense retrieval study number 4"
    assert "2301.99999" in by_id
    assert job.recalled_beyond_search == 1


def test_each_request_gets_only_the_time_left_before_the_deadline(
    arxiv: ArxivClient, arxiv_server: FakeArxivServer
) -> None:
    # Given arXiv answering slower than the time left to the stage
    arxiv_server.latency_seconds = 1.0
    try:
        job = new_job("efficient sparse retrieval")

        # When the stage runs with a deadline 0.3 s away
        # Then the request's timeout was the time left, not the client's 5 s,
        # and with no time left for a retry the stage gives up
        with pytest.raises(UpstreamUnavailable, match=r"no answer within 0\.[0-3]\d* s"):
            run_search(job, arxiv, seconds_left=0.3)
    finally:
        arxiv_server.latency_seconds = 0.0

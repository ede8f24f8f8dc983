"""What a job spent, and budgets, with a real worker and the local OpenAI-compatible server.

- `provenance.usage` holds the sums of the `usage` fields the LLM returned, and
  the arXiv requests and cache hits; a job retried after a 429 counts each call
  once; a fully cached repeat spends nothing and still names its sources.
- A budget (the request's, or the operator's LLM_MAX_TOKENS_PER_JOB) gives the
  best papers LLM summaries and the rest extractive ones, flagged; it is
  overshot by at most the calls in flight.
"""

from __future__ import annotations

import pytest

from schemas.research import ResearchResponse
from tests.failure.tally import FaultRow, wait_for_jobs
from tests.support import Fault, RecordedRequest
from tests.support.stack import LocalStack, WorkerFactory
from worker.client import ResearchClient

pytestmark = pytest.mark.integration

JOB_TIMEOUT = 60
CHAT = "chat/completions"
QUERY = "graph neural networks for molecules"


def chat_requests(stack: LocalStack) -> list[RecordedRequest]:
    return [r for r in stack.llm.requests if r.path.endswith("/chat/completions")]


def reported_tokens(stack: LocalStack) -> tuple[int, int]:
    usage = stack.llm.reported_usage
    return (
        sum(u["prompt_tokens"] for u in usage),
        sum(u["completion_tokens"] for u in usage),
    )


def methods(response: ResearchResponse) -> list[str]:
    return [paper.summary_method for paper in response.papers]


def test_the_ledger_holds_what_the_apis_reported_and_a_cached_repeat_spends_nothing(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack
) -> None:
    start_worker()
    request = {"query": QUERY, "max_papers": 4}

    first = client.result(client.submit(request), timeout=JOB_TIMEOUT)
    repeat = client.result(client.submit(request), timeout=JOB_TIMEOUT)

    usage = first.provenance.usage
    assert methods(first) == ["llm"] * 4
    assert usage.llm.calls == len(chat_requests(fresh_stack)) == 4
    assert (usage.llm.prompt_tokens, usage.llm.completion_tokens) == reported_tokens(fresh_stack)
    assert usage.llm.prompt_tokens > 0 and usage.llm.completion_tokens > 0
    assert (usage.arxiv.requests, usage.arxiv.cache_hits) == (len(fresh_stack.arxiv.requests), 0)
    # arXiv answered the first job: the index held nothing yet.
    arxiv_sources = first.provenance.sources
    assert arxiv_sources and all(s.startswith(fresh_stack.arxiv.url) for s in arxiv_sources)

    # The repeat: arXiv's answer and every summary come from the caches.
    again = repeat.provenance.usage
    assert len(chat_requests(fresh_stack)) == 4
    assert again.llm.calls == again.llm.prompt_tokens == again.llm.completion_tokens == 0
    assert (again.arxiv.requests, again.arxiv.cache_hits) == (0, len(arxiv_sources))
    # Each arXiv answer is named as served from the cache; the index recalled the papers.
    assert repeat.provenance.sources == [
        *("cache:" + source for source in arxiv_sources),
        "corpus:research_papers",
    ]
    assert methods(repeat) == ["cached"] * 4


def test_a_job_retried_after_a_429_counts_each_call_once(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack, record_fault
) -> None:
    start_worker()
    fresh_stack.llm.inject(Fault.rate_limited(retry_after=0.2, endpoint=CHAT))

    job = client.submit({"query": QUERY, "max_papers": 5})
    outcomes = wait_for_jobs(fresh_stack.redis_url, [job], timeout=JOB_TIMEOUT)
    response = ResearchResponse.model_validate(outcomes.response(job))

    usage = response.provenance.usage.llm
    record_fault(
        FaultRow.of(
            "LLM 429 during a 5-paper job (summarize retried)",
            outcomes,
            note=f"{len(chat_requests(fresh_stack))} chat requests sent, "
            f"{usage.calls} in provenance.usage",
        )
    )
    # Five papers: four answered in the first attempt, one 429, its retry answered.
    assert len(chat_requests(fresh_stack)) == 6
    assert usage.calls == 6
    assert (usage.prompt_tokens, usage.completion_tokens) == reported_tokens(fresh_stack)
    # Summaries the first attempt made are this job's own, not an earlier job's.
    assert methods(response) == ["llm"] * 5
    assert not response.provenance.warnings


def test_a_call_budget_of_two_gives_the_two_best_papers_llm_summaries(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack
) -> None:
    start_worker()

    job = client.submit({"query": QUERY, "max_papers": 5, "budget": {"max_llm_calls": 2}})
    response = client.result(job, timeout=JOB_TIMEOUT)

    assert methods(response) == ["llm", "llm", "extractive", "extractive", "extractive"]
    assert response.provenance.usage.llm.calls == len(chat_requests(fresh_stack)) == 2
    scores = [paper.relevance_score for paper in response.papers]
    assert scores == sorted(scores, reverse=True)
    assert response.provenance.warnings == [
        f"summary of {paper.arxiv_id} is extractive: the job's LLM budget ran out "
        "(budget.max_llm_calls (2) used up)"
        for paper in response.papers[2:]
    ]
    summarize = next(s for s in response.provenance.stages if s.name == "summarize")
    assert summarize.outcome == "degraded"


def test_a_token_budget_stops_further_calls_once_spent(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack
) -> None:
    start_worker(SUMMARY_CONCURRENCY="1")

    job = client.submit({"query": QUERY, "max_papers": 4, "budget": {"max_llm_tokens": 1}})
    response = client.result(job, timeout=JOB_TIMEOUT)

    # One call in flight at a time: the first spends the budget, no other is sent.
    assert methods(response) == ["llm"] + ["extractive"] * 3
    assert response.provenance.usage.llm.calls == len(chat_requests(fresh_stack)) == 1
    spent = sum(reported_tokens(fresh_stack))
    assert all(
        f"(budget.max_llm_tokens (1) spent: {spent} tokens used)" in warning
        for warning in response.provenance.warnings
    )


def test_the_operators_ceiling_is_overshot_by_at_most_the_calls_in_flight(
    start_worker: WorkerFactory, client: ResearchClient, fresh_stack: LocalStack
) -> None:
    # Two calls in flight at once, a ceiling of one token: both are sent before
    # either answers, and none after.
    start_worker(SUMMARY_CONCURRENCY="2", LLM_MAX_TOKENS_PER_JOB="1")
    fresh_stack.llm.latency_seconds = 0.5

    job = client.submit({"query": QUERY, "max_papers": 4, "budget": {"max_llm_tokens": 10_000}})
    response = client.result(job, timeout=JOB_TIMEOUT)

    usage = response.provenance.usage.llm
    assert methods(response) == ["llm", "llm", "extractive", "extractive"]
    assert usage.calls == len(chat_requests(fresh_stack)) == 2
    # The overshoot is the tokens of the calls that were in flight, no more.
    assert usage.prompt_tokens + usage.completion_tokens == sum(reported_tokens(fresh_stack))
    assert all("LLM_MAX_TOKENS_PER_JOB (1) spent" in w for w in response.provenance.warnings)

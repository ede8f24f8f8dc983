"""What summaries spend: tokens from the usage fields, budgets, and who made a cached summary."""

from __future__ import annotations

import json
import threading

import fakeredis
import httpx
import pytest

from schemas.research import Budget, LlmUsage
from tasks.cache import RedisJsonCache
from tasks.summarizer import (
    LlmBudget,
    cache_entry,
    summarize_papers,
    summary_cache_key,
)
from tests.unit.factories import make_paper
from tests.unit.test_summarizer import MODEL, ChatEndpoint, completion

# What the test endpoint's `completion()` reports for every call.
PROMPT_TOKENS, COMPLETION_TOKENS = 10, 5
PAPERS = [make_paper(f"2401.{i:05d}", title=f"Paper {i}") for i in range(1, 6)]


@pytest.fixture
def cache() -> RedisJsonCache:
    return RedisJsonCache(fakeredis.FakeRedis(), "summary:", 3600)


def sent_titles(endpoint: ChatEndpoint) -> list[str]:
    return [json.loads(body["messages"][-1]["content"])["title"] for body in endpoint.bodies]


def test_tokens_are_the_sums_of_the_responses_usage_fields(cache: RedisJsonCache) -> None:
    endpoint = ChatEndpoint()
    ledger = LlmUsage()

    batch = summarize_papers(
        PAPERS[:3], endpoint.summarizer(), cache, concurrency=3, final_attempt=True, ledger=ledger
    )

    assert ledger == LlmUsage(calls=3, prompt_tokens=3 * PROMPT_TOKENS, completion_tokens=15)
    assert batch.usage == ledger


def test_a_response_without_usage_counts_no_tokens_rather_than_an_estimate(
    cache: RedisJsonCache,
) -> None:
    def no_usage(body: dict[str, object]) -> httpx.Response:
        answer = completion("About it.")
        del answer["usage"]
        return httpx.Response(200, json=answer)

    ledger = LlmUsage()
    summarize_papers(
        PAPERS[:1],
        ChatEndpoint(no_usage).summarizer(),
        cache,
        concurrency=1,
        final_attempt=True,
        ledger=ledger,
    )

    assert ledger == LlmUsage(calls=1, prompt_tokens=0, completion_tokens=0)


def test_a_failed_call_counts_as_a_call(cache: RedisJsonCache) -> None:
    def overloaded(_: dict[str, object]) -> httpx.Response:
        error = {"message": "overloaded", "type": "server_error", "param": None, "code": None}
        return httpx.Response(503, json={"error": error})

    ledger = LlmUsage()
    batch = summarize_papers(
        PAPERS[:2],
        ChatEndpoint(overloaded).summarizer(),
        cache,
        concurrency=2,
        final_attempt=False,
        ledger=ledger,
    )

    assert ledger == LlmUsage(calls=2)
    assert batch.llm_failures == 2 and len(batch.retryable) == 2


def test_a_call_budget_of_two_summarises_the_two_best_papers_and_flags_the_rest(
    cache: RedisJsonCache,
) -> None:
    endpoint = ChatEndpoint()
    ledger = LlmUsage()

    batch = summarize_papers(
        PAPERS,  # best first, as the rank stage leaves them
        endpoint.summarizer(),
        cache,
        concurrency=5,
        final_attempt=True,
        ledger=ledger,
        budget=LlmBudget(max_calls=2),
    )

    assert [p.summary_method for p in batch.papers] == ["llm"] * 2 + ["extractive"] * 3
    assert sorted(sent_titles(endpoint)) == ["Paper 1", "Paper 2"]  # sent together
    assert ledger.calls == 2 and batch.over_budget == 3
    assert batch.warnings == [
        f"summary of {p.arxiv_id} is extractive: the job's LLM budget ran out "
        "(budget.max_llm_calls (2) used up)"
        for p in PAPERS[2:]
    ]


def test_a_token_budget_stops_further_calls_once_spent(cache: RedisJsonCache) -> None:
    endpoint = ChatEndpoint()
    ledger = LlmUsage()
    per_call = PROMPT_TOKENS + COMPLETION_TOKENS

    batch = summarize_papers(
        PAPERS,
        endpoint.summarizer(),
        cache,
        concurrency=1,
        final_attempt=True,
        ledger=ledger,
        budget=LlmBudget(max_tokens=2 * per_call),
    )

    # Two calls spend the budget exactly; with one call in flight at a time there is no overshoot.
    assert ledger.calls == 2 == len(endpoint.bodies)
    assert [p.summary_method for p in batch.papers] == ["llm"] * 2 + ["extractive"] * 3
    assert "budget.max_llm_tokens (30) spent: 30 tokens used" in batch.warnings[0]


def test_a_token_budget_is_overshot_by_at_most_the_calls_in_flight(
    cache: RedisJsonCache,
) -> None:
    # Every call waits until three are in flight, so all three are sent before
    # any answer says the budget is spent.
    concurrency = 3
    all_in_flight = threading.Barrier(concurrency, timeout=10)

    def together(body: dict[str, object]) -> httpx.Response:
        all_in_flight.wait()
        return ChatEndpoint.summary_of_abstract(body)

    endpoint = ChatEndpoint(together)
    ledger = LlmUsage()
    budget = LlmBudget(max_tokens=1)

    summarize_papers(
        PAPERS,
        endpoint.summarizer(),
        cache,
        concurrency=concurrency,
        final_attempt=True,
        ledger=ledger,
        budget=budget,
    )

    spent = ledger.prompt_tokens + ledger.completion_tokens
    per_call = PROMPT_TOKENS + COMPLETION_TOKENS
    assert ledger.calls == concurrency  # the calls in flight finished; no further one was sent
    assert spent - 1 < concurrency * per_call  # the bound: the in-flight calls' tokens


def test_what_earlier_attempts_spent_counts_against_the_budget(cache: RedisJsonCache) -> None:
    endpoint = ChatEndpoint()
    earlier = LlmUsage(calls=2, prompt_tokens=20, completion_tokens=10)

    batch = summarize_papers(
        PAPERS[:2],
        endpoint.summarizer(),
        cache,
        concurrency=2,
        final_attempt=True,
        ledger=earlier,
        budget=LlmBudget(max_calls=2),
    )

    assert endpoint.bodies == []
    assert [p.summary_method for p in batch.papers] == ["extractive", "extractive"]


def test_a_summary_cached_by_this_job_is_llm_and_by_another_job_cached(
    cache: RedisJsonCache,
) -> None:
    endpoint = ChatEndpoint()
    mine, theirs, legacy = PAPERS[:3]
    cache.set(summary_cache_key(mine, MODEL), cache_entry("Made by my first attempt.", "job-1"))
    cache.set(summary_cache_key(theirs, MODEL), cache_entry("Made by another job.", "job-0"))
    cache.set(summary_cache_key(legacy, MODEL), "Cached before entries named their job.")

    batch = summarize_papers(
        [mine, theirs, legacy],
        endpoint.summarizer(),
        cache,
        concurrency=2,
        final_attempt=True,
        job_id="job-1",
    )

    assert [p.summary_method for p in batch.papers] == ["llm", "cached", "cached"]
    assert batch.papers[0].summary == "Made by my first attempt."
    assert endpoint.bodies == [] and batch.llm_calls == 0


def test_a_fresh_summary_is_cached_with_the_job_that_made_it(cache: RedisJsonCache) -> None:
    summarize_papers(
        PAPERS[:1],
        ChatEndpoint().summarizer(),
        cache,
        concurrency=1,
        final_attempt=True,
        job_id="job-7",
    )

    assert cache.get(summary_cache_key(PAPERS[0], MODEL)) == {
        "summary": f"About: {PAPERS[0].title}",
        "job_id": "job-7",
    }


@pytest.mark.parametrize(
    ("requested", "ceiling", "expected"),
    [
        (None, None, None),
        (Budget(max_llm_calls=2), None, LlmBudget(max_calls=2)),
        (Budget(max_llm_tokens=500), 1000, LlmBudget(max_tokens=500)),
        (
            Budget(max_llm_tokens=5000),
            1000,
            LlmBudget(max_tokens=1000, token_limit_name="LLM_MAX_TOKENS_PER_JOB"),
        ),
        (None, 1000, LlmBudget(max_tokens=1000, token_limit_name="LLM_MAX_TOKENS_PER_JOB")),
    ],
)
def test_the_smaller_of_the_requests_budget_and_the_operators_ceiling_applies(
    requested: Budget | None, ceiling: int | None, expected: LlmBudget | None
) -> None:
    assert LlmBudget.for_job(requested, ceiling) == expected

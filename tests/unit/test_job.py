"""The job's own logic: reading the message, merging candidates, building the response."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from schemas.research import LlmUsage, ResearchRequest, StageRecord
from tasks.errors import InvalidRequest
from tasks.job import JobState, accept_job, build_response, parse_job_payload
from tasks.stages.search import merge_candidates
from tests.unit.factories import make_paper, make_stage_settings


def job(**overrides: Any) -> JobState:
    fields: dict[str, Any] = {
        "job_id": "job-1",
        "request": ResearchRequest(query="graph neural networks", max_papers=2),
        "accepted_at": datetime(2026, 1, 1, tzinfo=UTC),
        "embedding_model": "local-hashing-v1-384",
        "llm_model": "model-a",
    }
    fields.update(overrides)
    return JobState(**fields)


def test_a_valid_message_gives_the_request() -> None:
    request = parse_job_payload((), {"request": {"query": "graph neural networks"}})

    assert request == ResearchRequest(query="graph neural networks")


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((), {}, "request"),
        ((), {"request": "graph neural networks"}, "request"),
        ((), {"request": ["query"]}, "request"),
        ((), {"request": None}, "request"),
        (({"query": "abc"},), {}, "args"),
        ((), {"request": {"query": "abc"}, "extra": 1}, "extra"),
        ((), {"request": {"query": "abc", "max_papers": 21}}, "max_papers"),
        ((), {"request": {"query": "x" * 1_000_000}}, "query"),
        ((), {"request": {"query": "abc", "end_date": "2020-13-01"}}, "end_date"),
        ((), {"request": {"query": "abc", "budget": {"max_llm_calls": 0}}}, "budget.max_llm_calls"),
        (
            (),
            {"request": {"query": "abc", "budget": {"max_llm_tokens": -5}}},
            "budget.max_llm_tokens",
        ),
        (
            (),
            {"request": {"query": "abc", "budget": {"max_llm_calls": "2"}}},
            "budget.max_llm_calls",
        ),
        (
            (),
            {"request": {"query": "abc", "budget": {"max_llm_calls": 2.0}}},
            "budget.max_llm_calls",
        ),
        ((), {"request": {"query": "abc", "budget": {"max_calls": 2}}}, "budget.max_calls"),
        ((), {"request": {"query": "abc", "budget": 100}}, "budget"),
    ],
)
def test_a_bad_message_is_invalid_request_naming_the_field(
    args: tuple[object, ...], kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidRequest) as error:
        parse_job_payload(args, kwargs)

    assert field in [entry["field"] for entry in error.value.errors]
    assert field in str(error.value)
    # The offending value is never echoed back (it may be a megabyte long).
    assert len(str(error.value)) < 500


def test_an_accepted_job_names_the_llm_only_when_it_asks_for_summaries() -> None:
    with_summaries = accept_job(
        "job-1",
        (),
        {"request": {"query": "graph neural networks"}},
        embedding_model="all-MiniLM-L6-v2",
        llm_model="model-a",
    )
    without = accept_job(
        "job-2",
        (),
        {"request": {"query": "graph neural networks", "include_summaries": False}},
        embedding_model="all-MiniLM-L6-v2",
        llm_model="model-a",
    )

    assert with_summaries.job_id == "job-1"
    assert with_summaries.llm_model == "model-a"
    assert with_summaries.embedding_model == "all-MiniLM-L6-v2"
    assert without.llm_model is None


def test_candidate_count_asks_for_more_than_needed_within_the_cap() -> None:
    assert make_stage_settings().candidate_count(5) == 15
    assert make_stage_settings().candidate_count(20) == 50
    assert make_stage_settings(arxiv_max_candidates=10).candidate_count(20) == 20


def test_arxivs_record_wins_but_a_reused_summary_of_the_same_version_stays() -> None:
    recalled = [
        make_paper("2401.00001", summary="Stored.", summary_method="cached"),
        make_paper("2401.00002", summary="Stored.", summary_method="cached"),
        make_paper("2401.00003"),
    ]
    searched = [
        make_paper("2401.00001", title="Fresh title"),
        make_paper("2401.00002", version=2),
    ]

    merged = {paper.arxiv_id: paper for paper in merge_candidates(recalled, searched)}

    assert len(merged) == 3
    assert merged["2401.00001"].title == "Fresh title"
    assert merged["2401.00001"].summary_method == "cached"
    assert merged["2401.00002"].version == 2 and merged["2401.00002"].summary is None


def test_the_response_carries_provenance_of_every_stage() -> None:
    state = job(
        search_query='(all:"graph")',
        papers=[make_paper(relevance_score=0.8), make_paper("2401.00002", relevance_score=0.6)],
        arxiv_total=120,
        recalled_beyond_search=2,
        sources=["http://arxiv.test/api/query?search_query=x"],
    )
    state.stages.append(
        StageRecord(
            name="recall",
            worker="worker-a",
            started_at=state.accepted_at,
            duration_ms=3.0,
            outcome="degraded",
        )
    )
    state.add_warning("memory recall skipped: down")

    response = build_response(state, now=lambda: state.accepted_at + timedelta(seconds=1.5))

    assert response.total_found == 122
    assert response.search_time_ms == 1500.0
    assert response.query_used == '(all:"graph")'
    assert response.provenance.stages[0].name == "recall"
    assert response.provenance.stages[0].outcome == "degraded"
    assert response.provenance.stages[0].worker == "worker-a"
    assert response.provenance.warnings == ["memory recall skipped: down"]
    assert response.provenance.models.llm == "model-a"
    assert response.provenance.confidence == response.confidence
    assert 0.0 < response.confidence <= 1.0


def test_the_response_carries_the_jobs_usage_ledger() -> None:
    state = job(papers=[make_paper()], sources=["cache:http://arxiv.test/api/query?x"])
    state.usage.llm = LlmUsage(calls=3, prompt_tokens=300, completion_tokens=90)
    state.usage.arxiv.cache_hits = 1

    provenance = build_response(state).provenance

    assert provenance.usage.llm == LlmUsage(calls=3, prompt_tokens=300, completion_tokens=90)
    assert provenance.usage.arxiv.cache_hits == 1
    assert provenance.sources == ["cache:http://arxiv.test/api/query?x"]


def test_a_request_survives_the_trip_through_json() -> None:
    state = job(request=ResearchRequest(query="q test", start_date=date(2020, 1, 1)))

    again = JobState.model_validate(state.model_dump(mode="json"))

    assert again == state

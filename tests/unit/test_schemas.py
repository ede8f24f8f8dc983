"""The public contracts: request validation, and committed JSON Schemas that match the models."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.export import SCHEMA_DIR, render_schema_files
from schemas.research import ResearchRequest


def test_committed_json_schemas_match_the_models() -> None:
    rendered = render_schema_files()

    committed = {path.name: path.read_text(encoding="utf-8") for path in SCHEMA_DIR.glob("*.json")}

    assert committed == rendered, "run `research-arm schemas` and commit schemas/json/"


def test_defaults_match_the_contract() -> None:
    request = ResearchRequest(query="graph neural networks")

    assert (request.max_papers, request.include_summaries, request.min_relevance) == (5, True, 0.0)
    assert request.categories == [] and request.start_date is None
    assert request.sources == ["corpus", "arxiv"] and request.budget is None


def test_budget_takes_either_cap_or_both() -> None:
    calls_only = ResearchRequest.model_validate({"query": "abc", "budget": {"max_llm_calls": 2}})
    both = ResearchRequest.model_validate(
        {"query": "abc", "budget": {"max_llm_calls": 2, "max_llm_tokens": 900}}
    )

    assert calls_only.budget is not None and calls_only.budget.max_llm_tokens is None
    assert both.budget is not None and (both.budget.max_llm_calls, both.budget.max_llm_tokens) == (
        2,
        900,
    )


def test_query_whitespace_is_collapsed() -> None:
    assert ResearchRequest(query="  graph \n neural\tnets ").query == "graph neural nets"


def test_dates_are_parsed_from_iso_strings() -> None:
    request = ResearchRequest.model_validate(
        {"query": "abc", "start_date": "2024-02-29", "end_date": "2024-03-01"}
    )

    assert (request.start_date, request.end_date) == (date(2024, 2, 29), date(2024, 3, 1))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"query": "ab"}, "query"),
        ({"query": "a" * 501}, "query"),
        ({"query": "---"}, "query"),
        ({"query": "abc\x07def"}, "query"),
        ({"query": 123}, "query"),
        ({"query": "abc", "max_papers": 21}, "max_papers"),
        ({"query": "abc", "max_papers": 2.5}, "max_papers"),
        ({"query": "abc", "max_papers": True}, "max_papers"),
        ({"query": "abc", "include_summaries": "yes"}, "include_summaries"),
        ({"query": "abc", "start_date": "2023-02-29"}, "start_date"),
        ({"query": "abc", "start_date": "01/02/2024"}, "start_date"),
        ({"query": "abc", "start_date": 1700000000}, "start_date"),
        ({"query": "abc", "start_date": "2024-06-01", "end_date": "2024-05-31"}, "end_date"),
        ({"query": "abc", "categories": "cs.CL"}, "categories"),
        ({"query": "abc", "categories": ["cs.CL) OR (all:x"]}, "categories.0"),
        ({"query": "abc", "min_relevance": -0.1}, "min_relevance"),
        ({"query": "abc", "unknown": 1}, "unknown"),
        ({}, "query"),
        ({"query": "abc", "sources": []}, "sources"),
        ({"query": "abc", "sources": ["web"]}, "sources.0"),
        ({"query": "abc", "sources": ["arxiv", "arxiv"]}, "sources"),
        ({"query": "abc", "budget": {"max_llm_calls": 0}}, "budget.max_llm_calls"),
        ({"query": "abc", "budget": {"max_llm_tokens": -5}}, "budget.max_llm_tokens"),
        ({"query": "abc", "budget": {"max_llm_calls": "2"}}, "budget.max_llm_calls"),
        ({"query": "abc", "budget": {"max_llm_calls": 2.0}}, "budget.max_llm_calls"),
        ({"query": "abc", "budget": {"max_dollars": 1}}, "budget.max_dollars"),
        ({"query": "abc", "budget": 100}, "budget"),
    ],
)
def test_bad_requests_name_the_offending_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        ResearchRequest.model_validate(payload)

    fields = {".".join(str(p) for p in e["loc"]) for e in error.value.errors()}
    assert field in fields

"""What a job asks arXiv for, given what the corpus covers; BM25 term weights."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from schemas.research import ResearchRequest
from tasks.bm25_terms import document_terms, query_terms, term_index
from tasks.corpus_coverage import CoverageEntry, plan_arxiv_search

WATERMARK = date(2025, 6, 30)
ALL_OF_ARXIV = [CoverageEntry(watermark=WATERMARK)]
CS_SINCE_2020 = [CoverageEntry(categories=["cs.*"], since=date(2020, 1, 1), watermark=WATERMARK)]


def request(**fields: Any) -> ResearchRequest:
    return ResearchRequest.model_validate({"query": "graph neural networks", **fields})


def test_a_job_inside_the_coverage_that_ends_before_the_watermark_does_not_ask_arxiv() -> None:
    window = plan_arxiv_search(
        request(start_date="2024-01-01", end_date="2025-06-29"), ALL_OF_ARXIV, corpus_answered=True
    )

    assert not window.call


def test_a_job_spanning_the_watermark_asks_arxiv_from_the_watermark_on() -> None:
    window = plan_arxiv_search(request(start_date="2024-01-01"), ALL_OF_ARXIV, corpus_answered=True)

    assert (window.call, window.start_date, window.end_date) == (True, WATERMARK, None)


def test_a_job_starting_after_the_watermark_keeps_its_own_start() -> None:
    window = plan_arxiv_search(
        request(start_date="2025-08-01", end_date="2025-09-01"), ALL_OF_ARXIV, corpus_answered=True
    )

    assert (window.start_date, window.end_date) == (date(2025, 8, 1), date(2025, 9, 1))


@pytest.mark.parametrize(
    "fields",
    [
        {"categories": ["math.CO"], "start_date": "2021-01-01", "end_date": "2022-01-01"},
        {"categories": ["cs.CL", "math.CO"], "start_date": "2021-01-01", "end_date": "2022-01-01"},
        {"start_date": "2021-01-01", "end_date": "2022-01-01"},  # all categories
        {"categories": ["cs.CL"], "start_date": "2019-01-01", "end_date": "2022-01-01"},
        {"categories": ["cs.CL"], "end_date": "2022-01-01"},  # from the beginning
    ],
)
def test_what_a_filtered_ingest_left_out_goes_to_arxiv_whole(fields: dict[str, Any]) -> None:
    job = request(**fields)

    window = plan_arxiv_search(job, CS_SINCE_2020, corpus_answered=True)

    assert (window.call, window.start_date, window.end_date) == (
        True,
        job.start_date,
        job.end_date,
    )


def test_a_filtered_ingest_answers_a_job_inside_it() -> None:
    job = request(categories=["cs.CL", "cs.LG"], start_date="2021-01-01", end_date="2022-01-01")

    assert not plan_arxiv_search(job, CS_SINCE_2020, corpus_answered=True).call


def test_without_a_corpus_or_with_arxiv_alone_everything_goes_to_arxiv() -> None:
    job = request(end_date="2020-01-01", sources=["arxiv"])

    assert plan_arxiv_search(job, [], corpus_answered=True).call
    assert plan_arxiv_search(job, ALL_OF_ARXIV, corpus_answered=False).call


def test_a_job_asking_the_corpus_alone_never_asks_arxiv() -> None:
    assert not plan_arxiv_search(request(sources=["corpus"]), [], corpus_answered=False).call


def test_term_indices_are_stable_32_bit_hashes() -> None:
    # The same in every process: a changed value would orphan every stored sparse vector.
    assert term_index("graph") == 0xF622B783
    assert 0 <= term_index("neural") < 2**32
    assert query_terms("Graphs graph GRAPH").indices == [term_index("graph")]


def test_document_weights_saturate_with_repetition() -> None:
    once = document_terms("Graph", "networks")
    often = document_terms("Graph", "graph graph graph graph networks")

    weight = dict(zip(often.indices, often.values, strict=True))[term_index("graph")]
    single = dict(zip(once.indices, once.values, strict=True))[term_index("graph")]
    assert single < weight < 2.5  # k1 + 1 bounds a saturated term

"""The committed relevance set holds what docs/evaluation.md promises of it."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tasks.text_terms import content_words
from tests.eval.records import EvalDataMissing, EvalRecord, load_records
from tests.eval.relevance_set import GROUPS, SPLITS, RelevanceSet, load_relevance_set


@pytest.fixture(scope="module")
def relevance_set() -> RelevanceSet:
    return load_relevance_set()


@pytest.fixture(scope="module")
def records() -> dict[str, EvalRecord]:
    """The shared arXiv records by id; the test is skipped where they are absent."""
    try:
        return {record.arxiv_id: record for record in load_records()}
    except EvalDataMissing as exc:
        pytest.skip(f"the shared arXiv records are not on this machine: {exc}")


def test_the_set_has_enough_queries_of_each_group(relevance_set: RelevanceSet) -> None:
    groups = Counter(query.group for query in relevance_set.queries)
    assert len(relevance_set.queries) >= 36
    assert groups["paraphrase"] >= 8
    assert groups["keyword"] >= 18


def test_the_halves_are_stratified_by_group(relevance_set: RelevanceSet) -> None:
    counts = Counter((query.group, query.split) for query in relevance_set.queries)
    for group in GROUPS:
        assert counts[(group, SPLITS[0])] == counts[(group, SPLITS[1])], group
    assert len(relevance_set.select("tune")) == len(relevance_set.select("report")) >= 18
    assert len(relevance_set.select("all")) == len(relevance_set.queries)


def test_every_query_has_a_relevant_paper_and_searchable_patterns(
    relevance_set: RelevanceSet,
) -> None:
    for query in relevance_set.queries:
        assert query.relevant(2), f"{query.query_id} has no paper graded 2 or 3"
        assert query.patterns, f"{query.query_id} records no search patterns"
        for pattern in query.patterns:
            re.compile(pattern)


def test_every_graded_id_is_a_shared_record(
    relevance_set: RelevanceSet, records: dict[str, EvalRecord]
) -> None:
    for query in relevance_set.queries:
        unknown = sorted(set(query.grades) - records.keys())
        assert not unknown, f"{query.query_id} grades ids not in the shared data: {unknown}"


def test_paraphrases_share_no_content_word_with_their_papers_titles(
    relevance_set: RelevanceSet, records: dict[str, EvalRecord]
) -> None:
    for query in relevance_set.queries:
        if query.group != "paraphrase":
            continue
        words = set(content_words(query.query))
        for arxiv_id in query.grades:  # every graded paper, marginal ones included
            shared = words & set(content_words(records[arxiv_id].title))
            assert not shared, f"{query.query_id} shares {shared} with the title of {arxiv_id}"

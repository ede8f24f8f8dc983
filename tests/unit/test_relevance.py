"""Relevance: BM25 coverage scores, the blended ranking, and the job's confidence."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pytest

from schemas.research import Paper
from tasks.embeddings import HashingEmbedder
from tasks.relevance import job_confidence, lexical_scores, rank_candidates
from tests.unit.factories import make_paper

QUERY = "graph neural networks for molecular property prediction"


class CountingEmbedder:
    """The local embedder, counting calls and keeping the texts of each."""

    def __init__(self) -> None:
        self._inner = HashingEmbedder()
        self.calls: list[list[str]] = []

    @property
    def name(self) -> str:
        return self._inner.name

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return self._inner.embed(texts)


def off_topic(arxiv_id: str, **overrides: object) -> Paper:
    fields: dict[str, object] = {
        "title": "Sketch comedy generation with language model agents",
        "abstract": "Agents write comedy scripts; critics trained on viewer votes judge the jokes.",
    }
    return make_paper(arxiv_id, **{**fields, **overrides})


# --- lexical_scores ---------------------------------------------------------------------


def test_a_document_covering_more_of_the_query_scores_higher() -> None:
    documents = [
        "graph neural networks predict molecular properties",
        "graph algorithms for shortest paths",
        "a study of medieval poetry",
    ]

    full, partial, none = lexical_scores("graph neural network molecular property", documents)

    assert full > partial > none == 0.0


def test_plural_and_singular_forms_match() -> None:
    singular, plural, neither = lexical_scores(
        "neural network studies", ["a neural network study", "neural networks studies", "poetry"]
    )

    assert singular == pytest.approx(plural, abs=0.05)
    assert singular > 0.2
    assert neither == 0.0


@pytest.mark.parametrize(
    ("query", "document"),
    [
        ("kv cache", "kv caches"),
        ("approach", "approaches"),
        ("molecular property", "molecular properties"),
        ("classes", "class"),
        ("image", "images"),
    ],
)
def test_a_plural_in_the_document_matches_a_singular_in_the_query_and_back(
    query: str, document: str
) -> None:
    (score,) = lexical_scores(query, [document])

    assert score > 0.3


def test_lexical_scores_stay_within_zero_and_one_even_for_repetitive_documents() -> None:
    documents = ["graph " * 500, "graph neural " * 200, "", "graph"]

    scores = lexical_scores("graph neural", documents)

    assert all(0.0 <= score <= 1.0 for score in scores)
    assert scores[2] == 0.0


def test_a_score_means_coverage_not_best_of_a_weak_lot() -> None:
    # Every candidate matches one query term out of four: none of them may
    # look like a perfect match just because it is the best available.
    documents = ["graph theory", "graph drawing", "graph colouring"]

    scores = lexical_scores("graph neural molecular prediction", documents)

    assert max(scores) < 0.5


def test_no_documents_or_a_stopword_only_query_give_nothing_to_score() -> None:
    assert lexical_scores("graph", []) == []
    assert lexical_scores("of the and", ["the graph of things"]) == [0.0]


# --- rank_candidates --------------------------------------------------------------------


def test_the_on_topic_paper_outranks_off_topic_ones() -> None:
    on_topic = make_paper("2401.00003")  # the factory's paper is about GNNs for molecules
    candidates = [off_topic("2401.00001"), on_topic, off_topic("2401.00002", title="Cooking")]

    ranked = rank_candidates(QUERY, candidates, HashingEmbedder(), max_papers=3)

    assert ranked[0].arxiv_id == "2401.00003"
    assert ranked[0].relevance_score > ranked[1].relevance_score


def test_scores_are_in_zero_one_rounded_to_four_places_and_sorted_best_first() -> None:
    candidates = [make_paper("2401.00001"), off_topic("2401.00002"), off_topic("2401.00003")]

    ranked = rank_candidates(QUERY, candidates, HashingEmbedder(), max_papers=3)

    scores = [paper.relevance_score for paper in ranked]
    assert all(0.0 <= score <= 1.0 and round(score, 4) == score for score in scores)
    assert scores == sorted(scores, reverse=True)


def test_returns_new_papers_and_leaves_the_candidates_untouched() -> None:
    candidate = make_paper("2401.00001")

    (ranked,) = rank_candidates(QUERY, [candidate], HashingEmbedder(), max_papers=1)

    assert ranked is not candidate
    assert candidate.relevance_score == 0.0
    assert ranked.relevance_score > 0.0
    assert ranked.model_dump(exclude={"relevance_score"}) == candidate.model_dump(
        exclude={"relevance_score"}
    )


def test_at_most_max_papers_are_kept_the_best_ones() -> None:
    candidates = [off_topic("2401.00001"), make_paper("2401.00002"), off_topic("2401.00003")]

    ranked = rank_candidates(QUERY, candidates, HashingEmbedder(), max_papers=1)

    assert [paper.arxiv_id for paper in ranked] == ["2401.00002"]


def test_papers_below_min_relevance_are_dropped() -> None:
    candidates = [make_paper("2401.00001"), off_topic("2401.00002")]
    all_scores = {
        paper.arxiv_id: paper.relevance_score
        for paper in rank_candidates(QUERY, candidates, HashingEmbedder(), max_papers=2)
    }
    threshold = (all_scores["2401.00001"] + all_scores["2401.00002"]) / 2

    ranked = rank_candidates(
        QUERY, candidates, HashingEmbedder(), max_papers=2, min_relevance=threshold
    )

    assert [paper.arxiv_id for paper in ranked] == ["2401.00001"]


def test_equal_scores_are_ordered_newer_first_then_by_arxiv_id_whatever_the_input_order() -> None:
    older = make_paper("2401.00001", updated_date=date(2024, 1, 2))
    newer_b = make_paper("2401.00009", updated_date=date(2024, 3, 1))
    newer_a = make_paper("2401.00005", updated_date=date(2024, 3, 1))
    expected = ["2401.00005", "2401.00009", "2401.00001"]

    for candidates in ([older, newer_b, newer_a], [newer_a, older, newer_b]):
        ranked = rank_candidates(QUERY, candidates, HashingEmbedder(), max_papers=3)
        assert [paper.arxiv_id for paper in ranked] == expected


def test_the_query_and_all_papers_are_embedded_in_one_call() -> None:
    embedder = CountingEmbedder()
    candidates = [make_paper("2401.00001"), off_topic("2401.00002")]

    rank_candidates(QUERY, candidates, embedder, max_papers=2)

    assert len(embedder.calls) == 1
    assert len(embedder.calls[0]) == 3
    assert embedder.calls[0][0] == QUERY


def test_no_candidates_give_an_empty_list_without_embedding() -> None:
    embedder = CountingEmbedder()

    assert rank_candidates(QUERY, [], embedder, max_papers=5) == []
    assert embedder.calls == []


def test_a_lexical_weight_of_one_ranks_by_lexical_score_alone() -> None:
    candidates = [make_paper("2401.00001"), off_topic("2401.00002")]
    texts = [f"{p.title}\n{p.title}\n{p.abstract}" for p in candidates]

    ranked = rank_candidates(QUERY, candidates, HashingEmbedder(), max_papers=2, lexical_weight=1.0)

    expected = [round(score, 4) for score in lexical_scores(QUERY, texts)]
    assert [paper.relevance_score for paper in ranked] == sorted(expected, reverse=True)


def test_nonsense_limits_are_refused() -> None:
    candidates = [make_paper("2401.00001")]

    with pytest.raises(ValueError, match="max_papers"):
        rank_candidates(QUERY, candidates, HashingEmbedder(), max_papers=0)
    with pytest.raises(ValueError, match="lexical_weight"):
        rank_candidates(QUERY, candidates, HashingEmbedder(), max_papers=1, lexical_weight=1.5)


# --- job_confidence ---------------------------------------------------------------------


def test_confidence_is_the_mean_score_times_the_share_of_papers_found() -> None:
    assert job_confidence([0.8, 0.6], max_papers=4) == pytest.approx(0.35)
    assert job_confidence([0.8, 0.6], max_papers=2) == pytest.approx(0.7)


def test_confidence_rises_with_scores_and_with_coverage() -> None:
    weak = job_confidence([0.3, 0.3], max_papers=4)
    stronger = job_confidence([0.6, 0.6], max_papers=4)
    fuller = job_confidence([0.6, 0.6, 0.6, 0.6], max_papers=4)

    assert weak < stronger < fuller <= 1.0


def test_confidence_is_zero_without_papers_and_never_above_one() -> None:
    assert job_confidence([], max_papers=5) == 0.0
    assert job_confidence([1.0] * 5, max_papers=5) == 1.0
    assert job_confidence([1.0] * 9, max_papers=5) == 1.0

"""The metric functions against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from tests.eval.metrics import (
    dcg,
    mean_metrics,
    ndcg_at,
    query_metrics,
    recall_at,
    reciprocal_rank,
)

GRADES = {"a": 3, "b": 2, "c": 1, "d": 2}


def test_dcg_discounts_by_log2_of_rank_plus_one() -> None:
    # 3/log2(2) + 1/log2(3) + 2/log2(4) = 3 + 0.63093 + 1
    assert dcg([3, 1, 2]) == pytest.approx(4.630930, abs=1e-6)


def test_ndcg_uses_the_ideal_of_all_judged_grades() -> None:
    # Ranking x, a, c: gains 0, 3, 1 -> DCG = 3/log2(3) + 1/log2(4) = 1.892789 + 0.5.
    # Ideal top 3 of all judgments (3, 2, 2) -> 3 + 2/log2(3) + 2/2 = 5.261860.
    expected = (3 / math.log2(3) + 0.5) / (3 + 2 / math.log2(3) + 1)
    assert ndcg_at(["x", "a", "c"], GRADES, 3) == pytest.approx(expected)
    assert expected == pytest.approx(0.454742, abs=1e-6)


def test_ndcg_of_the_ideal_ranking_is_one_and_of_unjudged_papers_zero() -> None:
    assert ndcg_at(["a", "b", "d", "c"], GRADES, 10) == pytest.approx(1.0)
    assert ndcg_at(["x", "y"], GRADES, 5) == 0.0
    assert ndcg_at(["a"], {}, 5) == 0.0


def test_ndcg_cuts_the_ranking_at_k() -> None:
    # Only rank 1 counts at k=1: gain 2 against the ideal 3.
    assert ndcg_at(["b", "a"], GRADES, 1) == pytest.approx(2 / 3)


def test_reciprocal_rank_skips_marginal_papers() -> None:
    # c is graded 1: below the relevance threshold; b at rank 3 is the first relevant.
    assert reciprocal_rank(["x", "c", "b"], GRADES) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "c"], GRADES) == 0.0


def test_recall_counts_papers_graded_two_or_more_within_k() -> None:
    # Relevant: a, b, d. Top 2 of (b, c, a) holds b only.
    assert recall_at(["b", "c", "a"], GRADES, 2) == pytest.approx(1 / 3)
    assert recall_at(["b", "c", "a", "d"], GRADES, 20) == pytest.approx(1.0)


def test_query_and_mean_metrics() -> None:
    first = query_metrics(["a", "b", "d", "c"], GRADES)
    second = query_metrics(["x"], GRADES)
    assert first == pytest.approx({"nDCG@5": 1.0, "nDCG@10": 1.0, "MRR": 1.0, "R@20": 1.0})
    assert second == {"nDCG@5": 0.0, "nDCG@10": 0.0, "MRR": 0.0, "R@20": 0.0}
    assert mean_metrics([first, second]) == pytest.approx(
        {"nDCG@5": 0.5, "nDCG@10": 0.5, "MRR": 0.5, "R@20": 0.5}
    )

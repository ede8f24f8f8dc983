"""Ranking metrics over graded judgments, as trec_eval and BEIR compute them.

A ranking is a list of arXiv ids, best first; `grades` maps judged ids to
1..3 and every other id counts as 0.

- nDCG@k: DCG@k / IDCG@k with linear gain, DCG@k = sum over ranks i = 1..k of
  grade(i) / log2(i + 1); the ideal ranking (IDCG) sorts *all* judged grades
  of the query, not only those retrieved (trec_eval's `ndcg_cut`).
- MRR: 1 / rank of the first paper graded 2 or more (0 if none is returned).
- Recall@k: the share of the papers graded 2 or more that appear in the top k.

A query with no paper graded 2 or more would make MRR and recall undefined;
the relevance set has none (its tests check that).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final

RELEVANT_GRADE: Final = 2
"""The grade from which a paper counts as relevant for MRR and recall."""


def dcg(gains: Sequence[int]) -> float:
    """Discounted cumulative gain of grades in rank order (rank 1 first)."""
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def ndcg_at(ranking: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    """nDCG@k of `ranking` against `grades`, in [0, 1]; 0 when nothing is judged relevant."""
    ideal = dcg(sorted(grades.values(), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([grades.get(arxiv_id, 0) for arxiv_id in ranking[:k]]) / ideal


def reciprocal_rank(ranking: Sequence[str], grades: Mapping[str, int]) -> float:
    """1 / rank of the first paper graded RELEVANT_GRADE or more; 0 if there is none."""
    for rank, arxiv_id in enumerate(ranking, start=1):
        if grades.get(arxiv_id, 0) >= RELEVANT_GRADE:
            return 1.0 / rank
    return 0.0


def recall_at(ranking: Sequence[str], grades: Mapping[str, int], k: int) -> float:
    """Share of the papers graded RELEVANT_GRADE or more found in the top `k`."""
    relevant = {arxiv_id for arxiv_id, grade in grades.items() if grade >= RELEVANT_GRADE}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


METRICS: Final = ("nDCG@5", "nDCG@10", "MRR", "R@20")


def query_metrics(ranking: Sequence[str], grades: Mapping[str, int]) -> dict[str, float]:
    """Every metric the evaluation reports, for one query."""
    return {
        "nDCG@5": ndcg_at(ranking, grades, 5),
        "nDCG@10": ndcg_at(ranking, grades, 10),
        "MRR": reciprocal_rank(ranking, grades),
        "R@20": recall_at(ranking, grades, 20),
    }


def mean_metrics(per_query: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over queries (0 for no query)."""
    if not per_query:
        return dict.fromkeys(METRICS, 0.0)
    return {name: sum(m[name] for m in per_query) / len(per_query) for name in METRICS}

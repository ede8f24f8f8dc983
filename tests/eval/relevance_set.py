"""The graded relevance set: queries, their groups and halves, and graded arXiv ids.

The set lives in `relevance_set.json` beside this module (see docs/evaluation.md
for how it was made). Each query has:

- `id`: "k01"… for keyword queries, "p01"… for paraphrases;
- `group`: "keyword" (the papers' own vocabulary) or "paraphrase" (other
  words: no content word shared with the titles of its graded papers);
- `split`: "tune" or "report", the fixed half it belongs to;
- `query`: the text sent as the research request's query;
- `patterns`: the regular expressions the grader searched the records with,
  beside BM25, to find candidates (kept to show how the pool was built);
- `grades`: arXiv id -> 3 (exactly on topic), 2 (clearly relevant) or
  1 (marginal); a paper not listed is graded 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast

RELEVANCE_SET_PATH: Final = Path(__file__).with_name("relevance_set.json")
GROUPS: Final = ("keyword", "paraphrase")
SPLITS: Final = ("tune", "report")

Group = Literal["keyword", "paraphrase"]
Split = Literal["tune", "report"]


@dataclass(frozen=True)
class JudgedQuery:
    """One query of the set and its graded papers."""

    query_id: str
    group: Group
    split: Split
    query: str
    patterns: tuple[str, ...]
    grades: Mapping[str, int]
    """arXiv id (no version) -> grade 1..3; papers not listed are grade 0."""

    def relevant(self, min_grade: int) -> set[str]:
        """The ids graded `min_grade` or above."""
        return {arxiv_id for arxiv_id, grade in self.grades.items() if grade >= min_grade}


@dataclass(frozen=True)
class RelevanceSet:
    """All the judged queries, in file order."""

    queries: tuple[JudgedQuery, ...]

    def select(self, split: str) -> list[JudgedQuery]:
        """The queries of one half ("tune", "report") or of both ("all")."""
        if split == "all":
            return list(self.queries)
        if split not in SPLITS:
            raise ValueError(f"split must be tune, report or all, got {split!r}")
        return [query for query in self.queries if query.split == split]


def load_relevance_set(path: Path = RELEVANCE_SET_PATH) -> RelevanceSet:
    """Read and check the set; raises ValueError naming the first bad query."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    queries = tuple(_query(item) for item in raw["queries"])
    ids = [query.query_id for query in queries]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: query ids repeat")
    return RelevanceSet(queries)


def _query(item: Mapping[str, object]) -> JudgedQuery:
    query_id = str(item["id"])
    group, split = item["group"], item["split"]
    if group not in GROUPS:
        raise ValueError(f"query {query_id}: group must be one of {GROUPS}, got {group!r}")
    if split not in SPLITS:
        raise ValueError(f"query {query_id}: split must be one of {SPLITS}, got {split!r}")
    grades = cast(Mapping[str, int], item.get("grades", {}))
    for arxiv_id, grade in grades.items():
        if grade not in (1, 2, 3):
            raise ValueError(f"query {query_id}: grade of {arxiv_id} must be 1, 2 or 3")
    return JudgedQuery(
        query_id=query_id,
        group=group,
        split=split,
        query=str(item["query"]),
        patterns=tuple(cast(Sequence[str], item.get("patterns", ()))),
        grades=dict(grades),
    )

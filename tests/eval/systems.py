"""The systems the evaluation compares, each turning a query into a ranking of arXiv ids.

- `job`: the product itself, one research job per query through Redis, a
  real worker and the fake arXiv serving the shared records (`EvalStack`).
  It measures whatever path a job takes today (arXiv search, and the local
  corpus once that exists), with the worker settings given.
- `bm25-all`: the baseline, `tasks.relevance.lexical_scores` (BM25) over the
  title and abstract of *every* record, with no arXiv search to narrow the pool.

A new system is a class with a `name` and a `rank(query)` method, added to
`SYSTEM_NAMES` and built in `tests.eval.__main__`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from tasks.relevance import lexical_scores
from tests.eval.job_stack import EvalStack, JobRun
from tests.eval.records import EvalRecord
from tests.eval.relevance_set import JudgedQuery

SYSTEM_NAMES: Final = ("job", "bm25-all")
RANKING_DEPTH: Final = 20
"""How many papers each system returns: Recall@20 needs 20."""


class RankingSystem(Protocol):
    """Something that ranks the records for a query."""

    @property
    def name(self) -> str: ...

    def rank(self, query: JudgedQuery) -> list[str]:
        """The arXiv ids it returns for `query`, best first."""
        ...


class BM25AllSystem:
    """BM25 (the product's `lexical_scores`) over title + abstract of all the records."""

    name = "bm25-all"

    def __init__(self, records: Sequence[EvalRecord], depth: int = RANKING_DEPTH) -> None:
        self._ids = [record.arxiv_id for record in records]
        self._texts = [record.text for record in records]
        self._depth = depth

    def rank(self, query: JudgedQuery) -> list[str]:
        scores = lexical_scores(query.query, self._texts)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], self._ids[i]))
        return [self._ids[i] for i in order[: self._depth] if scores[i] > 0]


class JobSystem:
    """The research job, one per query, on the evaluation's private stack."""

    name = "job"

    def __init__(self, stack: EvalStack, max_papers: int = RANKING_DEPTH) -> None:
        self._stack = stack
        self._max_papers = max_papers
        self.runs: dict[str, JobRun] = {}
        """Each query's job, by query id, for the report (model name, failures, latency)."""

    def rank(self, query: JudgedQuery) -> list[str]:
        run = self._stack.run_job(
            {"query": query.query, "max_papers": self._max_papers, "include_summaries": False}
        )
        self.runs[query.query_id] = run
        return run.ranking

    def embedding_models(self) -> list[str]:
        """The distinct embedder names the jobs' provenance reported."""
        return sorted({run.embedding_model for run in self.runs.values()})

    def failures(self) -> list[str]:
        """Ids of the queries whose job did not succeed."""
        return [query_id for query_id, run in self.runs.items() if run.state != "SUCCESS"]

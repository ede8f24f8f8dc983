"""Does the query planner's second arXiv request pay for itself? Prints the figures.

    .venv/bin/python -m tests.bench.planner
    .venv/bin/python -m tests.bench.planner --data ../shared/data/arxiv_metadata --max-papers 5,10
    .venv/bin/python -m tests.bench.planner --judgments path/to/relevance_set.json --split tune

The fake arXiv server (tests/support/fake_arxiv.py) serves the real records of
`--data` (read at run time, never committed): the cs.CL "latest 500" API
export and the head of the Kaggle metadata snapshot. The queries are the
evaluation's graded set (tests/eval/relevance_set.json, its tuning half by
default; a paper graded `--min-grade` or more counts as relevant). For each
query and each max_papers, it runs the search stage
as a job does (`tasks.stages.search`, the real client, no cache, the gate
off) and compares it with other ways of filling the candidate pool:

- `or-all`: one request, every content word OR-ed (research-arm before the planner);
- `precise`: the planner's precise query alone;
- `broad`: the planner's broad query alone;
- `planner`: the search stage as shipped (broad query when the precise one
  returns fewer than the pool size);
- `planner@max_papers`: the same, with the broad query only below max_papers;
- `precise+or-all`: the precise query, then the old OR-all query as the broad one.

It prints, per policy and query group: arXiv requests per job, how often one
request was enough, the mean pool size, and the pool recall (the share of the
relevant papers that reach the pool, which bounds what ranking can return).
On the real arXiv every request waits 3 s at the shared gate.

The fake's relevance is the number of query terms a paper matches (newest
first on ties); arXiv's own (Lucene, tf-idf) weighs rare words more, so the
OR queries rank better on arXiv than here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import fakeredis
import httpx

from schemas.research import Paper, ResearchRequest
from tasks.arxiv_client import ArxivClient
from tasks.arxiv_query import build_search_query
from tasks.constants import ARXIV_GATE_KEY
from tasks.job import JobState
from tasks.query_planner import plan_search
from tasks.rate_gate import ArxivRateGate
from tasks.resources import StageSettings
from tasks.stage import Attempt
from tasks.stages.search import search
from tests.eval.records import corpus_papers, load_records
from tests.support.fake_arxiv import FakeArxivServer
from worker.resources import stage_settings
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "arxiv_metadata"
DEFAULT_JUDGMENTS = REPO / "tests" / "eval" / "relevance_set.json"
# research-arm's defaults: ARXIV_CANDIDATE_FACTOR and ARXIV_MAX_CANDIDATES.
CANDIDATE_FACTOR = 3
MAX_CANDIDATES = 50
GATE_SECONDS = 3.0


@dataclass(frozen=True)
class PlannerQuery:
    """A request's text, its query group, and the arXiv ids of its relevant papers."""

    text: str
    relevant: tuple[str, ...]
    group: str


@dataclass(frozen=True)
class SearchCase:
    """One job's search: the query, max_papers, and the settings that size its pool."""

    query: PlannerQuery
    max_papers: int
    settings: StageSettings

    @property
    def pool(self) -> int:
        """How many candidates the job asks arXiv for."""
        return self.settings.candidate_count(self.max_papers)


# A policy fills a case's pool: the papers, and how many arXiv requests it took.
Policy = Callable[[ArxivClient, SearchCase], tuple[list[Paper], int]]


def load_judged_queries(path: Path, split: str, min_grade: int) -> list[PlannerQuery]:
    """The evaluation's graded queries of one half ("tune", "report" or "all").

    Queries without a paper graded `min_grade` or more are left out: they have
    no recall to measure.
    """
    queries = []
    for item in json.loads(path.read_text(encoding="utf-8"))["queries"]:
        relevant = tuple(sorted(i for i, grade in item["grades"].items() if grade >= min_grade))
        if relevant and split in ("all", item["split"]):
            queries.append(PlannerQuery(item["query"], relevant, item["group"]))
    return queries


def _merged(results: Sequence[Sequence[Paper]], size: int) -> list[Paper]:
    """The first request's papers, then the next ones' new papers, up to `size` (as the stage)."""
    merged = {paper.arxiv_id: paper for papers in results for paper in papers}
    return list(merged.values())[:size]


def or_all(client: ArxivClient, case: SearchCase) -> tuple[list[Paper], int]:
    return client.search(build_search_query(case.query.text), case.pool).feed.papers, 1


def precise_only(client: ArxivClient, case: SearchCase) -> tuple[list[Paper], int]:
    plan = plan_search(case.query.text, pool_size=case.pool)
    return client.search(plan.precise, plan.max_results).feed.papers, 1


def broad_only(client: ArxivClient, case: SearchCase) -> tuple[list[Paper], int]:
    plan = plan_search(case.query.text, pool_size=case.pool)
    return client.search(plan.broad or plan.precise, plan.max_results).feed.papers, 1


def planner(client: ArxivClient, case: SearchCase) -> tuple[list[Paper], int]:
    """The search stage as a job runs it."""
    job = JobState(
        job_id="bench",
        request=ResearchRequest(query=case.query.text, max_papers=case.max_papers),
        accepted_at=datetime.now(UTC),
        embedding_model="none",
        llm_model=None,
    )
    attempt = Attempt(retries=0, max_retries=0, deadline=time.monotonic() + 3600)
    result = search(job, client, case.settings, attempt)
    return job.candidates, len(result.arxiv_searches)


def broad_below(
    enough: Callable[[SearchCase], int], broad_of: Callable[[str], str | None]
) -> Policy:
    """Precise first; `broad_of(query)` when it returns fewer than `enough(case)` papers."""

    def policy(client: ArxivClient, case: SearchCase) -> tuple[list[Paper], int]:
        plan = plan_search(case.query.text, pool_size=case.pool)
        results = [client.search(plan.precise, case.pool).feed.papers]
        broad = broad_of(case.query.text)
        if broad is not None and broad != plan.precise and len(results[0]) < enough(case):
            results.append(client.search(broad, case.pool).feed.papers)
        return _merged(results, case.pool), len(results)

    return policy


def _planned_broad(text: str) -> str | None:
    return plan_search(text, pool_size=1).broad


POLICIES: dict[str, Policy] = {
    "or-all": or_all,
    "precise": precise_only,
    "broad": broad_only,
    "planner": planner,
    "planner@max_papers": broad_below(lambda case: case.max_papers, _planned_broad),
    "precise+or-all": broad_below(lambda case: case.pool, build_search_query),
}


@dataclass(frozen=True)
class Run:
    policy: str
    query: PlannerQuery
    max_papers: int
    pool: int
    requests: int
    recall: float


@contextmanager
def arxiv_client(server: FakeArxivServer) -> Iterator[ArxivClient]:
    with httpx.Client() as http:
        gate = ArxivRateGate(fakeredis.FakeRedis(), 0, key=ARXIV_GATE_KEY)
        yield ArxivClient(http, server.url, gate, cache=None, timeout_seconds=30.0)


def measure(
    client: ArxivClient,
    queries: Sequence[PlannerQuery],
    max_papers_values: Sequence[int],
    factor: int,
) -> list[Run]:
    runs = []
    for max_papers in max_papers_values:
        settings = replace(
            stage_settings(Settings()),
            arxiv_candidate_factor=factor,
            arxiv_max_candidates=MAX_CANDIDATES,
        )
        for query in queries:
            relevant = set(query.relevant)
            for name, policy in POLICIES.items():
                pool, requests = policy(client, SearchCase(query, max_papers, settings))
                found = relevant & {paper.arxiv_id for paper in pool}
                runs.append(
                    Run(name, query, max_papers, len(pool), requests, len(found) / len(relevant))
                )
    return runs


def print_report(
    runs: Sequence[Run],
    queries: Sequence[PlannerQuery],
    source: str,
    corpus_size: int,
    precise_totals: dict[str, int],
    factor: int,
) -> None:
    counts = {query.group: 0 for query in queries}
    for query in queries:
        counts[query.group] += 1
    print(f"corpus: {corpus_size} real arXiv records; queries: {source}, {counts}")
    print(f"pool size = max(max_papers, min({factor} x max_papers, {MAX_CANDIDATES}))")
    header = (
        f"{'max_papers':>10}  {'group':<10}  {'policy':<19}  {'requests/job':>12}"
        f"  {'one enough':>10}  {'gate s/job':>10}  {'mean pool':>9}  {'pool recall':>11}"
    )
    print(header)
    print("-" * len(header))
    groups = ("keyword", "paraphrase", "all")
    for max_papers in sorted({run.max_papers for run in runs}):
        for group in groups:
            for name in POLICIES:
                chosen = [
                    run
                    for run in runs
                    if run.max_papers == max_papers
                    and run.policy == name
                    and group in ("all", run.query.group)
                ]
                requests = statistics.mean(run.requests for run in chosen)
                one = sum(run.requests == 1 for run in chosen) / len(chosen)
                print(
                    f"{max_papers:>10}  {group:<10}  {name:<19}  {requests:>12.2f}"
                    f"  {one:>10.0%}  {requests * GATE_SECONDS:>10.1f}"
                    f"  {statistics.mean(run.pool for run in chosen):>9.1f}"
                    f"  {statistics.mean(run.recall for run in chosen):>11.3f}"
                )
        print()
    first = min(run.max_papers for run in runs)
    print(
        f"per query (max_papers {first}): arXiv's total for the precise query,"
        " the pool recall of each policy, and the planner's requests"
    )
    for query in queries:
        by_policy = {r.policy: r for r in runs if r.query == query and r.max_papers == first}
        figures = "  ".join(f"{name} {by_policy[name].recall:.2f}" for name in POLICIES)
        hits = precise_totals[query.text]
        print(
            f"  [{query.group[:4]}] {query.text[:44]:<44}  precise total {hits:>3}"
            f"  {figures}  requests {by_policy['planner'].requests}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="arxiv_metadata folder")
    parser.add_argument("--max-papers", default="5,10", help="comma-separated max_papers values")
    parser.add_argument(
        "--judgments", type=Path, default=DEFAULT_JUDGMENTS, help="the graded relevance set"
    )
    parser.add_argument("--split", default="tune", choices=("tune", "report", "all"))
    parser.add_argument("--min-grade", type=int, default=2, choices=(1, 2, 3))
    parser.add_argument(
        "--factor", type=int, default=CANDIDATE_FACTOR, help="ARXIV_CANDIDATE_FACTOR to measure"
    )
    args = parser.parse_args(argv)
    # The same papers, read the same way, as `make eval` serves them.
    corpus = corpus_papers(load_records(args.data))
    max_papers_values = [int(value) for value in args.max_papers.split(",")]
    if not args.judgments.exists():
        parser.error(f"no graded relevance set at {args.judgments}: pass --judgments PATH")
    queries = load_judged_queries(args.judgments, args.split, args.min_grade)
    source = f"{args.judgments.name} ({args.split} half, relevant = grade >= {args.min_grade})"
    with FakeArxivServer(corpus) as server, arxiv_client(server) as client:
        runs = measure(client, queries, max_papers_values, args.factor)
        precise_totals = {
            query.text: client.search(
                plan_search(query.text, pool_size=1).precise, 1
            ).feed.total_results
            for query in queries
        }
    print_report(runs, queries, source, len(corpus), precise_totals, args.factor)


if __name__ == "__main__":
    main()

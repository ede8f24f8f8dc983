"""Offline tuning of the ranking's blend on the TUNE half of the relevance set.

    python -m tests.eval.tune [--weights 0,0.2,...] [--env KEY=VALUE ...] [--reuse]

1. Each tune query runs once as a real research job (the same private stack as
   `make eval`); the arXiv requests the worker sent are answered again by the
   fake server, and the papers they return are the query's candidate pool:
   exactly what the job ranked, whatever query planner produced the requests.
   The pools are saved to `.data/eval/tune-pools.json` (`--reuse` reads them
   back instead of running jobs; they hold record text, so they stay out of git).
2. Each pool is re-scored with `tasks.relevance.rank_candidates`, the product's
   ranking code, for every lexical weight of the grid, with the embedder the
   worker builds from the same settings; each text is embedded once.

It prints, per weight, the figures per group, beside the job's own ranking and
BM25 over all records, and each group's pool recall: the share of relevant
papers (grade >= 2) in the pool, the ceiling of any reranking.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from schemas.research import Paper
from tasks.arxiv_feed import parse_feed
from tasks.embeddings import Embedder
from tasks.relevance import rank_candidates
from tests.eval.__main__ import parse_env
from tests.eval.job_stack import EvalStack
from tests.eval.metrics import METRICS, RELEVANT_GRADE, mean_metrics, query_metrics
from tests.eval.records import EvalDataMissing, corpus_papers, load_records
from tests.eval.relevance_set import GROUPS, JudgedQuery, load_relevance_set
from tests.eval.report import commit_description, header_lines
from tests.eval.systems import RANKING_DEPTH, BM25AllSystem, JobSystem
from tests.support.worker_process import REPO_ROOT
from worker.resources import build_embedder
from worker.settings import Settings

DEFAULT_POOLS = REPO_ROOT / ".data" / "eval" / "tune-pools.json"
DEFAULT_WEIGHTS = tuple(round(step / 10, 1) for step in range(11))


class CachingEmbedder:
    """An embedder that embeds each distinct text once (the grid re-ranks the same texts)."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self._vectors: dict[str, list[float]] = {}

    @property
    def name(self) -> str:
        return self._inner.name

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        missing = list(dict.fromkeys(text for text in texts if text not in self._vectors))
        if missing:
            self._vectors.update(zip(missing, self._inner.embed(missing), strict=True))
        return [self._vectors[text] for text in texts]


@contextmanager
def _environment(overrides: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def product_embedder(overrides: Mapping[str, str]) -> Embedder:
    """The embedder a worker builds from the environment plus `overrides` (worker/resources.py)."""
    with _environment(overrides):
        settings = Settings()
    if settings.embeddings == "openai":
        raise SystemExit("tuning runs offline; EMBEDDINGS=openai is not supported")
    return build_embedder(settings, None)


def record_pools(queries: Sequence[JudgedQuery], worker_env: Mapping[str, str]) -> dict[str, Any]:
    """Run each query's job once; its candidate pool, ranking and embedder name."""
    records = load_records()
    pools: dict[str, list[dict[str, Any]]] = {}
    with EvalStack(corpus_papers(records), worker_env) as stack:
        job = JobSystem(stack)
        rankings = {query.query_id: job.rank(query) for query in queries}
        for query in queries:
            papers: dict[str, Paper] = {}
            for request in job.runs[query.query_id].arxiv_requests:
                for paper in parse_feed(stack.served_papers(request)).papers:
                    papers.setdefault(paper.arxiv_id, paper)
            pools[query.query_id] = [paper.model_dump(mode="json") for paper in papers.values()]
    return {
        "commit": commit_description(),
        "worker_env": dict(worker_env),
        "embedding_models": job.embedding_models(),
        "job_rankings": rankings,
        "pools": pools,
    }


def pool_recall(pool_ids: Sequence[str], query: JudgedQuery) -> float:
    """Share of the query's papers graded RELEVANT_GRADE or more that are in the pool."""
    relevant = query.relevant(RELEVANT_GRADE)
    return len(relevant.intersection(pool_ids)) / len(relevant) if relevant else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.eval.tune", description=__doc__)
    parser.add_argument(
        "--weights",
        default=",".join(str(w) for w in DEFAULT_WEIGHTS),
        help="comma-separated lexical weights to try (default 0,0.1,...,1)",
    )
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--pools", type=Path, default=DEFAULT_POOLS, help="where pools are saved")
    parser.add_argument("--reuse", action="store_true", help="read saved pools, run no job")
    args = parser.parse_args(argv)
    try:
        weights = [float(w) for w in args.weights.split(",")]
        worker_env = parse_env(args.env)
        queries = load_relevance_set().select("tune")
        records = load_records()
    except (ValueError, EvalDataMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.reuse:
        recorded = json.loads(args.pools.read_text(encoding="utf-8"))
    else:
        recorded = record_pools(queries, worker_env)
        args.pools.parent.mkdir(parents=True, exist_ok=True)
        args.pools.write_text(json.dumps(recorded), encoding="utf-8")
    pools = {qid: [Paper.model_validate(p) for p in ps] for qid, ps in recorded["pools"].items()}
    embedder = CachingEmbedder(product_embedder(recorded["worker_env"]))
    bm25 = BM25AllSystem(records)
    table: dict[str, Mapping[str, Sequence[str]]] = {
        "job as run": recorded["job_rankings"],
        "bm25-all": {q.query_id: bm25.rank(q) for q in queries},
    }
    for weight in weights:
        table[f"w={weight:.2f}"] = rerank(queries, pools, embedder, weight)

    env_text = " ".join(f"{k}={v}" for k, v in recorded["worker_env"].items())
    details = {
        "pools": f"{args.pools} (recorded at {recorded['commit']})",
        "job": f"embedding model {', '.join(recorded['embedding_models'])};"
        f" worker env {env_text or '(defaults)'}",
        "rerank": f"tasks.relevance.rank_candidates with {embedder.name}, lexical_weight = w",
        **pool_details(queries, pools),
    }
    print("\n".join(header_lines(split="tune", queries=queries, details=details)))
    print()
    print("\n".join(grid_table(table, queries)))
    return 0


def rerank(
    queries: Sequence[JudgedQuery],
    pools: Mapping[str, Sequence[Paper]],
    embedder: Embedder,
    lexical_weight: float,
) -> dict[str, list[str]]:
    """Each query's pool ranked by the product's `rank_candidates` at `lexical_weight`."""
    return {
        q.query_id: [
            paper.arxiv_id
            for paper in rank_candidates(
                q.query,
                pools[q.query_id],
                embedder,
                max_papers=RANKING_DEPTH,
                lexical_weight=lexical_weight,
            )
        ]
        for q in queries
    }


def pool_details(
    queries: Sequence[JudgedQuery], pools: Mapping[str, Sequence[Paper]]
) -> dict[str, str]:
    """Mean pool size and pool recall per group."""
    details = {}
    for group in (*GROUPS, "all"):
        chosen = [q for q in queries if group == "all" or q.group == group]
        size = sum(len(pools[q.query_id]) for q in chosen) / len(chosen)
        recall = sum(pool_recall([p.arxiv_id for p in pools[q.query_id]], q) for q in chosen)
        details[f"pool {group}"] = (
            f"mean size {size:.1f}, recall of grade>={RELEVANT_GRADE} {recall / len(chosen):.3f}"
        )
    return details


def grid_table(
    table: Mapping[str, Mapping[str, Sequence[str]]], queries: Sequence[JudgedQuery]
) -> list[str]:
    """One row per ranking: nDCG@5 per group, then every metric over all tune queries."""
    lines = [
        f"{'ranking':<11} "
        + " ".join(f"{group[:4] + ' nDCG@5':>12}" for group in GROUPS)
        + " | all: "
        + " ".join(f"{m:>7}" for m in METRICS)
    ]
    for name, rankings in table.items():
        cells = []
        for group in GROUPS:
            chosen = [q for q in queries if q.group == group]
            figures = mean_metrics([query_metrics(rankings[q.query_id], q.grades) for q in chosen])
            cells.append(f"{figures['nDCG@5']:>12.3f}")
        overall = mean_metrics([query_metrics(rankings[q.query_id], q.grades) for q in queries])
        lines.append(
            f"{name:<11} "
            + " ".join(cells)
            + " |      "
            + " ".join(f"{overall[m]:>7.3f}" for m in METRICS)
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())

"""`make eval`: rank the relevance set's queries with each system and print the figures.

    python -m tests.eval [--split report|tune|all] [--system job --system bm25-all]
                         [--env KEY=VALUE ...] [--queries k01 p01 ...] [--per-query]

The records are read from EVAL_DATA_DIR (default: ../shared/data/arxiv_metadata
beside the repository). `--env` sets a worker setting for the `job` system, so
that a change is measured before and after (e.g. `--env EMBEDDINGS=hashing`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.eval.job_stack import CorpusIngestFailed, EvalStack
from tests.eval.records import EvalDataMissing, corpus_papers, default_data_dir, load_records
from tests.eval.relevance_set import JudgedQuery, load_relevance_set
from tests.eval.report import header_lines, per_query_table, results_table
from tests.eval.systems import SYSTEM_NAMES, BM25AllSystem, JobSystem, RankingSystem


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE strings as a dict; raises ValueError on a malformed one."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--env takes KEY=VALUE, got {pair!r}")
        env[key.strip()] = value
    return env


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.eval", description="research-arm's ranking on the graded set."
    )
    parser.add_argument("--split", choices=("report", "tune", "all"), default="report")
    parser.add_argument(
        "--system",
        action="append",
        choices=SYSTEM_NAMES,
        help="a system to evaluate (repeatable; default: all of them)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for the job system's workers (repeatable)",
    )
    parser.add_argument(
        "--corpus",
        action="store_true",
        help="ingest the records into the workers' local corpus first (needs `research-arm"
        " corpus ingest`)",
    )
    parser.add_argument("--queries", nargs="+", metavar="ID", help="only these query ids")
    parser.add_argument("--per-query", action="store_true", help="also print each query's nDCG@10")
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also write each system's rankings there"
    )
    return parser


def select_queries(split: str, only: Sequence[str] | None) -> list[JudgedQuery]:
    queries = load_relevance_set().select(split)
    if only:
        unknown = set(only) - {q.query_id for q in queries}
        if unknown:
            raise ValueError(f"no query {', '.join(sorted(unknown))} in split {split}")
        queries = [q for q in queries if q.query_id in only]
    return queries


def main(argv: Sequence[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    try:
        worker_env = parse_env(args.env)
        queries = select_queries(args.split, args.queries)
        records = load_records()
    except (ValueError, EvalDataMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    systems_wanted = args.system or list(SYSTEM_NAMES)
    started = time.monotonic()
    rankings: dict[str, dict[str, list[str]]] = {}
    details = {"data": f"{default_data_dir()} ({len(records)} records)"}
    seed = records if args.corpus else ()
    try:
        with EvalStack(corpus_papers(records), worker_env, seed_corpus=seed) as stack:
            job = JobSystem(stack)
            systems: list[RankingSystem] = [
                job if name == "job" else BM25AllSystem(records) for name in systems_wanted
            ]
            for system in systems:
                rankings[system.name] = {q.query_id: system.rank(q) for q in queries}
    except CorpusIngestFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if "job" in rankings:
        details["job"] = (
            f"embedding model {', '.join(job.embedding_models())};"
            f" worker env {' '.join(args.env) or '(defaults)'}; max_papers 20, no summaries;"
            f" local corpus {'ingested' if args.corpus else 'none'}"
        )
        if job.failures():
            details["failed"] = ", ".join(job.failures())
    details["runtime"] = f"{time.monotonic() - started:.0f} s"
    print("\n".join(header_lines(split=args.split, queries=queries, details=details)))
    print()
    print("\n".join(results_table(rankings, queries)))
    if args.per_query:
        print()
        print("\n".join(per_query_table(rankings, queries)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"details": details, "rankings": rankings}, indent=1))
    return 1 if "job" in rankings and job.failures() else 0


if __name__ == "__main__":
    sys.exit(main())

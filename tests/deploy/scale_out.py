"""Scale-out figures: the same jobs on 1, 2 and 4 workers sharing one Redis.

    .venv/bin/python -m tests.deploy.scale_out --workers 1 2 4 --jobs 24 --llm-latency 0.5

Everything is local and real: a private redis-server, the fake arXiv server,
the fake OpenAI server answering after `--llm-latency` seconds, and real
`research-arm worker` processes configured as the image runs them (prefork,
REMAP_SIGTERM=SIGQUIT), each with a small concurrency so that adding workers,
not threads, is what adds capacity. Every job gets its own one-month date
window, so no job finds another's papers in memory or in a cache: each one
calls the LLM. The table shows jobs per second and how the work was shared.

`tests/integration/test_scaling.py` uses the same parts with fewer jobs.
"""

from __future__ import annotations

import argparse
import calendar
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from tests.support.arxiv_corpus import CorpusPaper, default_corpus
from tests.support.fake_arxiv import FakeArxivServer
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.stack import Stack
from tests.support.worker_process import WorkerProcess
from worker.client import ResearchClient

TOPIC_QUERIES = (
    "retrieval augmented generation",
    "graph neural networks",
    "quantum error correction",
    "protein folding",
    "reinforcement learning",
)
# Enough papers that every topic has some in every month of the corpus.
PAPERS_PER_TOPIC = 600
FIRST_MONTH = date(2015, 2, 1)
MONTHS_AVAILABLE = 140


# What every worker of the fleet is configured with, beyond its stack's wiring.
SCALE_OUT_SETTINGS: Mapping[str, str] = {
    # Every job calls the LLM: no answer or summary is served from a cache.
    "ARXIV_CACHE_TTL_SECONDS": "0",
    "SUMMARY_CACHE_TTL_SECONDS": "0",
    # As the image runs it: SIGTERM is Celery's soft-then-requeue shutdown.
    "REMAP_SIGTERM": "SIGQUIT",
    "WORKER_SOFT_SHUTDOWN_TIMEOUT_SECONDS": "1",
    "LOG_LEVEL": "INFO",
}


def scale_corpus() -> tuple[CorpusPaper, ...]:
    """The fake arXiv's corpus for scale-out runs: every topic in every month."""
    return default_corpus(papers_per_topic=PAPERS_PER_TOPIC)


def job_requests(first: int, count: int, max_papers: int) -> list[dict[str, Any]]:
    """`count` requests, the i-th on topic i mod 5 and alone in calendar month `first + i`.

    Distinct months keep jobs independent: memory recall and the summary
    cache both key on papers, and no two jobs share a paper.
    """
    if first + count > MONTHS_AVAILABLE:
        raise ValueError(f"only {MONTHS_AVAILABLE} distinct months: ask for fewer jobs")
    requests = []
    for index in range(first, first + count):
        year = FIRST_MONTH.year + (FIRST_MONTH.month - 1 + index) // 12
        month = (FIRST_MONTH.month - 1 + index) % 12 + 1
        last_day = calendar.monthrange(year, month)[1]
        requests.append(
            {
                "query": TOPIC_QUERIES[index % len(TOPIC_QUERIES)],
                "max_papers": max_papers,
                "start_date": date(year, month, 1).isoformat(),
                "end_date": date(year, month, last_day).isoformat(),
            }
        )
    return requests


@dataclass
class WorkerFleet:
    """Worker processes on one stack, started as needed and all stopped by `stop`.

    Each worker has its own DATA_DIR (its heartbeat, metrics and embedded
    Qdrant) and the node name `<prefix>-<n>@<host>`.
    """

    stack: Stack[Any, Any]
    concurrency: int = 1
    pool: str = "prefork"
    prefix: str = "scale"
    workers: list[WorkerProcess] = field(default_factory=list)

    def grow_to(self, count: int) -> list[WorkerProcess]:
        """Start workers until `count` run (started together); returns the new ones."""
        new = [
            self.stack.worker(self.prefix, pool=self.pool, concurrency=self.concurrency)
            for _ in range(count - len(self.workers))
        ]
        self.workers.extend(new)
        with ThreadPoolExecutor(max_workers=max(1, len(new))) as pool:
            for started in [pool.submit(worker.start) for worker in new]:
                started.result()
        return new

    def node(self, worker: WorkerProcess) -> str:
        """The node-name prefix this worker's tasks record in provenance ("scale-2@")."""
        return worker.hostname.split("%", 1)[0]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()


@dataclass(frozen=True)
class ScaleOutRun:
    workers: int
    jobs: int
    seconds: float
    stages_by_worker: dict[str, int]
    """Node-name prefix -> tasks (pipeline stages) of these jobs that worker ran."""
    summaries_by_worker: dict[str, int]
    llm_calls: int

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds


def chat_calls(llm: FakeOpenAIServer) -> int:
    return sum(1 for r in llm.requests if r.path.endswith("/chat/completions"))


def run_jobs(
    fleet: WorkerFleet,
    client: ResearchClient,
    requests: Sequence[dict[str, Any]],
    llm: FakeOpenAIServer,
    timeout: float,
) -> ScaleOutRun:
    """Submit every request at once, wait for every response; raises if a job fails."""
    calls_before = chat_calls(llm)
    started = time.monotonic()
    job_ids = [client.submit(dict(request)) for request in requests]
    responses = [client.result(job_id, timeout=timeout) for job_id in job_ids]
    seconds = time.monotonic() - started
    nodes = [fleet.node(worker) for worker in fleet.workers]

    def owner(hostname: str) -> str:
        return next((node for node in nodes if hostname.startswith(node)), hostname)

    stages: Counter[str] = Counter({node: 0 for node in nodes})
    summaries: Counter[str] = Counter({node: 0 for node in nodes})
    for response in responses:
        for stage in response.provenance.stages:
            stages[owner(stage.worker)] += 1
            if stage.name == "summarize":
                summaries[owner(stage.worker)] += 1
    return ScaleOutRun(
        workers=len(fleet.workers),
        jobs=len(responses),
        seconds=seconds,
        stages_by_worker=dict(stages),
        summaries_by_worker=dict(summaries),
        llm_calls=chat_calls(llm) - calls_before,
    )


def format_table(runs: Sequence[ScaleOutRun]) -> str:
    baseline = runs[0].jobs_per_second / runs[0].workers
    lines = [
        "| workers | jobs | seconds | jobs/s | speed-up per worker | LLM calls "
        "| summaries per worker | stages per worker |",
        "|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for run in runs:
        efficiency = run.jobs_per_second / (baseline * run.workers)
        lines.append(
            f"| {run.workers} | {run.jobs} | {run.seconds:.2f} | {run.jobs_per_second:.2f} "
            f"| {efficiency:.0%} | {run.llm_calls} "
            f"| {' / '.join(str(n) for n in run.summaries_by_worker.values())} "
            f"| {' / '.join(str(n) for n in run.stages_by_worker.values())} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--jobs", type=int, default=24, help="jobs per worker count")
    parser.add_argument("--max-papers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="pool processes per worker")
    parser.add_argument("--llm-latency", type=float, default=0.5, help="seconds per LLM call")
    args = parser.parse_args(argv)
    counts = sorted(args.workers)

    with (
        tempfile.TemporaryDirectory(prefix="scale-out-") as tmp,
        Stack(
            Path(tmp),
            arxiv=FakeArxivServer(scale_corpus()),
            llm=FakeOpenAIServer(latency_seconds=args.llm_latency),
            settings=SCALE_OUT_SETTINGS,
        ) as stack,
    ):
        fleet = WorkerFleet(stack, concurrency=args.concurrency)
        client = stack.client()
        runs = []
        for index, count in enumerate(counts):
            fleet.grow_to(count)
            requests = job_requests(index * args.jobs, args.jobs, args.max_papers)
            runs.append(run_jobs(fleet, client, requests, stack.llm, timeout=300))
            print(f"{count} worker(s): {runs[-1].jobs_per_second:.2f} jobs/s", file=sys.stderr)
    print(
        f"{args.jobs} jobs per row, max_papers={args.max_papers}, LLM latency "
        f"{args.llm_latency} s, prefork concurrency {args.concurrency} per worker"
    )
    print(format_table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())

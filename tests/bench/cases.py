"""The benchmark's six cases. Each returns figures; `tests.bench.report` prints them.

Upstream latencies are the issue's: arXiv 200 ms, LLM 500 ms, so a job's
critical path (one arXiv request, then every paper's LLM call at once) is
0.70 s whatever the number of papers.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psutil
import redis

from schemas.research import STAGE_NAMES
from tasks.constants import ARXIV_CACHE_PREFIX, SUMMARY_CACHE_PREFIX
from tests.bench.fanout_tasks import FANOUT_CHORD, FANOUT_THREADS
from tests.bench.harness import JobOutcome, LoadFigures
from tests.bench.stack import BenchStack, FreshQueries

ARXIV_LATENCY = 0.2
LLM_LATENCY = 0.5
CRITICAL_PATH = ARXIV_LATENCY + LLM_LATENCY
JOB_TIMEOUT = 300.0


@dataclass(frozen=True)
class JobSample:
    """Figures of a batch of jobs: latencies, per-stage times, and what went wrong."""

    outcomes: tuple[JobOutcome, ...]

    @property
    def figures(self) -> LoadFigures:
        return LoadFigures.of(self.outcomes)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.state != "SUCCESS")

    def other_methods(self, method: str) -> Counter[str]:
        """Papers whose summary_method is not `method`, by method ("no papers" for empty jobs)."""
        found: Counter[str] = Counter()
        for outcome in self.outcomes:
            methods = outcome.summary_methods()
            found.update(m for m in methods if m != method)
            if not methods and outcome.state == "SUCCESS":
                found["no papers"] += 1
        return found

    def warnings(self) -> Counter[str]:
        """The provenance warnings of the jobs, counted."""
        found: Counter[str] = Counter()
        for outcome in self.outcomes:
            if isinstance(outcome.result, dict) and "provenance" in outcome.result:
                found.update(outcome.result["provenance"].get("warnings", []))
        return found

    def stage_means_ms(self) -> dict[str, float]:
        """Mean duration of each stage, and `between` (latency minus the stages: task hops)."""
        per_job = [o.stage_durations_ms() for o in self.outcomes if o.stage_durations_ms()]
        if not per_job:
            return {}
        means = {name: statistics.fmean(d.get(name, 0.0) for d in per_job) for name in STAGE_NAMES}
        latencies = [o.latency * 1000 for o in self.outcomes if o.stage_durations_ms()]
        means["between"] = statistics.fmean(latencies) - sum(means.values())
        return means


def run_batch(
    stack: BenchStack, requests: Sequence[dict[str, object]], noop: bool = False
) -> JobSample:
    return JobSample(tuple(stack.runner.run(requests, timeout=JOB_TIMEOUT, noop=noop)))


def warm_up(stack: BenchStack, queries: FreshQueries, workers: int) -> None:
    """First jobs open Qdrant and the HTTP pools: run a few per worker before measuring."""
    run_batch(stack, queries.requests(4 * workers, 5))


def ensure_workers(stack: BenchStack, queries: FreshQueries, count: int) -> None:
    """Have exactly `count` warmed-up worker processes running."""
    if len(stack.workers) != count:
        stack.stop_workers()
        stack.start_workers(count)
        warm_up(stack, queries, count)


# --- 1. latency against the critical path ---------------------------------------------


@dataclass(frozen=True)
class LatencyRow:
    papers: int
    sample: JobSample

    @property
    def median(self) -> float:
        return self.sample.figures.median_seconds

    @property
    def p95(self) -> float:
        return self.sample.figures.p95_seconds

    @property
    def ratio(self) -> float:
        return self.median / CRITICAL_PATH


def latency_case(
    stack: BenchStack, queries: FreshQueries, runs: int, sizes: Sequence[int] = (5, 10, 20)
) -> list[LatencyRow]:
    """One job at a time, `runs` times per size, each with a query (and papers) never seen."""
    stack.set_latencies(ARXIV_LATENCY, LLM_LATENCY)
    rows = []
    for papers in sizes:
        outcomes = [run_batch(stack, queries.requests(1, papers)).outcomes[0] for _ in range(runs)]
        rows.append(LatencyRow(papers, JobSample(tuple(outcomes))))
    return rows


# --- 2. throughput at load -------------------------------------------------------------


@dataclass(frozen=True)
class LoadRow:
    processes: int
    concurrent: int
    rounds: tuple[JobSample, ...]

    @property
    def jobs_per_second(self) -> float:
        return statistics.median(r.figures.jobs_per_second for r in self.rounds)

    @property
    def all_jobs(self) -> JobSample:
        return JobSample(tuple(o for r in self.rounds for o in r.outcomes))


def throughput_case(
    stack: BenchStack, queries: FreshQueries, loads: Sequence[tuple[int, int]], processes: int
) -> list[LoadRow]:
    """`loads` holds (concurrent jobs, rounds): all jobs of a round are sent at once.

    The jobs run on `processes` worker processes, each with a Qdrant of its own.
    """
    ensure_workers(stack, queries, processes)
    stack.set_latencies(ARXIV_LATENCY, LLM_LATENCY)
    return [
        LoadRow(
            processes,
            count,
            tuple(run_batch(stack, queries.requests(count, 5)) for _ in range(rounds)),
        )
        for count, rounds in loads
    ]


# --- 3. engine overhead ------------------------------------------------------------------


@dataclass(frozen=True)
class OverheadResult:
    concurrent: int
    full: tuple[JobSample, ...]
    raw: tuple[JobSample, ...]
    # The same two, one job at a time: what a job costs when nothing waits.
    full_alone: JobSample
    raw_alone: JobSample

    @property
    def full_rate(self) -> float:
        return statistics.median(s.figures.jobs_per_second for s in self.full)

    @property
    def raw_rate(self) -> float:
        return statistics.median(s.figures.jobs_per_second for s in self.raw)

    @property
    def share(self) -> float:
        return self.full_rate / self.raw_rate if self.raw_rate else 0.0


def overhead_case(
    stack: BenchStack,
    queries: FreshQueries,
    concurrent: int,
    rounds: int,
    during_full: Callable[[], None] | None = None,
    after_full: Callable[[], None] | None = None,
) -> OverheadResult:
    """Upstreams answer at once: the full job's rate beside the no-op chain's, rounds interleaved.

    `during_full` / `after_full` bracket the full-pipeline rounds (a profiler hooks in there).
    """
    stack.set_latencies(0.0, 0.0)
    full: list[JobSample] = []
    raw: list[JobSample] = []
    for _ in range(rounds):
        if during_full:
            during_full()
        full.append(run_batch(stack, queries.requests(concurrent, 5)))
        if after_full:
            after_full()
        raw.append(run_batch(stack, queries.requests(concurrent, 5), noop=True))
    alone = 10
    full_alone = [run_batch(stack, queries.requests(1, 5)).outcomes[0] for _ in range(alone)]
    raw_alone = [
        run_batch(stack, queries.requests(1, 5), noop=True).outcomes[0] for _ in range(alone)
    ]
    return OverheadResult(
        concurrent,
        tuple(full),
        tuple(raw),
        JobSample(tuple(full_alone)),
        JobSample(tuple(raw_alone)),
    )


# --- fan-out shape of the summaries ------------------------------------------------------


@dataclass(frozen=True)
class FanoutRow:
    shape: str
    papers: int
    single: JobSample
    load: JobSample

    @property
    def load_rate(self) -> float:
        return self.load.figures.jobs_per_second


FANOUT_SHAPES = {
    "threads in one task (current)": FANOUT_THREADS,
    "chord, a task per paper": FANOUT_CHORD,
}


def fanout_case(
    stack: BenchStack, queries: FreshQueries, runs: int, sizes: Sequence[int], concurrent: int
) -> list[FanoutRow]:
    """Summarise fresh papers (LLM 500 ms) each way: one at a time, then `concurrent` at once."""
    stack.set_latencies(ARXIV_LATENCY, LLM_LATENCY)
    runner = stack.runner
    rows = []
    for shape, task_name in FANOUT_SHAPES.items():
        for papers in sizes:
            single = [
                runner.run_tasks(
                    task_name, [{"count": papers, "salt": queries.salt()}], timeout=JOB_TIMEOUT
                )[0]
                for _ in range(runs)
            ]
            load = runner.run_tasks(
                task_name,
                [{"count": papers, "salt": queries.salt()} for _ in range(concurrent)],
                timeout=JOB_TIMEOUT,
            )
            rows.append(FanoutRow(shape, papers, JobSample(tuple(single)), JobSample(tuple(load))))
    return rows


# --- 4. repeat jobs ------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatResult:
    first: JobSample
    repeats: JobSample
    arxiv_calls: int
    llm_calls: int


def repeat_case(stack: BenchStack, queries: FreshQueries, runs: int) -> RepeatResult:
    """The same 5-paper request again and again; count the upstream calls the repeats make."""
    stack.set_latencies(ARXIV_LATENCY, LLM_LATENCY)
    arxiv, llm = stack.upstreams()
    [request] = queries.requests(1, 5)
    first = run_batch(stack, [request])
    arxiv_before, llm_before = arxiv.count("/api/query"), llm.count("/chat/completions")
    repeats = [run_batch(stack, [request]).outcomes[0] for _ in range(runs)]
    return RepeatResult(
        first=first,
        repeats=JobSample(tuple(repeats)),
        arxiv_calls=arxiv.count("/api/query") - arxiv_before,
        llm_calls=llm.count("/chat/completions") - llm_before,
    )


# --- 4b. worker CPU per job: fresh papers, and papers embedded before ----------------------


@dataclass(frozen=True)
class CpuResult:
    """Worker CPU (user + system, all its processes) per 5-paper job, one job at a time."""

    jobs: int
    fresh_ms: float
    embedded_ms: float
    fresh: JobSample
    embedded: JobSample


def worker_cpu_seconds(stack: BenchStack) -> float:
    total = 0.0
    for worker in stack.workers:
        for pid in worker.process_ids():
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def cpu_case(stack: BenchStack, queries: FreshQueries, jobs: int) -> CpuResult:
    """`jobs` fresh 5-paper jobs, then the same requests again with papers already embedded.

    For the second pass the arXiv response cache and the summary cache are
    emptied, so each job searches arXiv again and gets the same papers, whose
    vectors the first pass left in the paper vector cache (and whose summaries
    it stored in Qdrant: recall brings them back, so the LLM is not called).
    """
    stack.set_latencies(ARXIV_LATENCY, LLM_LATENCY)
    requests = queries.requests(jobs, 5)
    before = worker_cpu_seconds(stack)
    fresh = [run_batch(stack, [request]).outcomes[0] for request in requests]
    middle = worker_cpu_seconds(stack)
    with redis.Redis.from_url(stack.redis.url) as client:
        for prefix in (ARXIV_CACHE_PREFIX, SUMMARY_CACHE_PREFIX):
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
    again = [run_batch(stack, [request]).outcomes[0] for request in requests]
    after = worker_cpu_seconds(stack)
    return CpuResult(
        jobs=jobs,
        fresh_ms=(middle - before) * 1000 / jobs,
        embedded_ms=(after - middle) * 1000 / jobs,
        fresh=JobSample(tuple(fresh)),
        embedded=JobSample(tuple(again)),
    )


# --- 5. memory -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryResult:
    jobs: int
    concurrent: int
    rss_ready_mib: float
    peak_rss_mib: float
    failed: int


def memory_case(
    stack: BenchStack, queries: FreshQueries, jobs: int, concurrent: int
) -> MemoryResult:
    """A fresh worker (empty memory store) runs `jobs` 5-paper jobs; its peak RSS after."""
    stack.stop_workers()
    [worker] = stack.start_workers(1)
    ready = worker.peak_rss_mib()
    stack.set_latencies(ARXIV_LATENCY, LLM_LATENCY)
    failed = 0
    for start in range(0, jobs, concurrent):
        failed += run_batch(stack, queries.requests(min(concurrent, jobs - start), 5)).failed
    result = MemoryResult(jobs, concurrent, ready, worker.peak_rss_mib(), failed)
    stack.stop_workers()
    return result


# --- 6. scale-out ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleRow:
    processes: int
    rounds: tuple[JobSample, ...] = field(default_factory=tuple)

    @property
    def jobs_per_second(self) -> float:
        return statistics.median(r.figures.jobs_per_second for r in self.rounds)


def scale_out_case(
    stack: BenchStack, queries: FreshQueries, process_counts: Sequence[int], jobs: int, rounds: int
) -> list[ScaleRow]:
    """`jobs` concurrent 5-paper jobs on 1, 2, 4… worker processes, each with its own Qdrant."""
    rows = []
    for count in process_counts:
        ensure_workers(stack, queries, count)
        stack.set_latencies(ARXIV_LATENCY, LLM_LATENCY)
        samples = tuple(run_batch(stack, queries.requests(jobs, 5)) for _ in range(rounds))
        rows.append(ScaleRow(count, samples))
    stack.stop_workers()
    return rows

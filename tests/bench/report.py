"""The benchmark's output: the machine, the versions, and one markdown table per case."""

from __future__ import annotations

import os
import platform
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from schemas.research import STAGE_NAMES
from tests.bench.cases import (
    CRITICAL_PATH,
    CpuResult,
    FanoutRow,
    JobSample,
    LatencyRow,
    LoadRow,
    MemoryResult,
    OverheadResult,
    RepeatResult,
    ScaleRow,
)
from tests.support.machine import checkout_revision, cpu_model

PACKAGES = ("celery", "kombu", "redis", "qdrant-client", "pydantic", "openai", "httpx", "numpy")
LATENCY_GOAL = 1.15
THROUGHPUT_GOAL = 20.0
OVERHEAD_GOAL = 0.40
# With the embedding model loaded (issue 9); the hashing embedder stayed under 250 MB.
MEMORY_GOAL_MIB = 400.0


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def _revision() -> str:
    revision = checkout_revision()
    if revision is None:
        return "unknown"
    return revision.commit + (" (with uncommitted changes)" if revision.changed else "")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


@dataclass(frozen=True)
class MachineInfo:
    """What the figures were measured on; taken when the run starts."""

    cores: int
    cpu: str
    python: str
    redis_server: str
    load_at_start: str
    revision: str

    @classmethod
    def collect(cls, redis_server_version: str) -> MachineInfo:
        return cls(
            cores=len(os.sched_getaffinity(0)),
            cpu=cpu_model(),
            python=platform.python_version(),
            redis_server=redis_server_version,
            load_at_start=load_average(),
            revision=_revision(),
        )


def _goal(met: bool) -> str:
    return "met" if met else "MISSED"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def header(machine: MachineInfo, shape: str) -> str:
    versions = ", ".join(f"{name} {_package_version(name)}" for name in PACKAGES)
    return "\n".join(
        [
            "## research-arm benchmark",
            "",
            f"- machine: {machine.cores} cores ({machine.cpu}), {platform.system()} "
            f"{platform.release()}",
            f"- load average (1/5/15 min) at start: {machine.load_at_start}; at end: "
            f"{load_average()}",
            f"- Python {machine.python}, redis-server {machine.redis_server}; {versions}",
            f"- research-arm {_package_version('research-arm')} at {machine.revision}",
            f"- worker: {shape}",
            "- upstreams: local fake arXiv and OpenAI-compatible servers in their own processes;"
            " rate gate off; every job's query (and papers) never seen before unless said",
        ]
    )


def latency_table(rows: Sequence[LatencyRow]) -> str:
    lines = [
        "### 1. Latency of one job (arXiv 200 ms, LLM 500 ms)",
        "",
        "| papers | runs | median | p95 | critical path | median / critical path | goal ≤ 1.15 |",
        "|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.papers} | {len(row.sample.outcomes)} | {_ms(row.median)} | {_ms(row.p95)} "
            f"| {_ms(CRITICAL_PATH)} | {row.ratio:.2f} | {_goal(row.ratio <= LATENCY_GOAL)} |"
        )
    lines += [
        "",
        "Where the time goes (means, ms; `between` = latency minus the stages: "
        "task hops, queueing, result delivery):",
        "",
    ]
    lines.append("| papers | " + " | ".join(STAGE_NAMES) + " | between |")
    lines.append("|---:|" + "---:|" * (len(STAGE_NAMES) + 1))
    for row in rows:
        means = row.sample.stage_means_ms()
        cells = " | ".join(f"{means.get(name, 0.0):.0f}" for name in (*STAGE_NAMES, "between"))
        lines.append(f"| {row.papers} | {cells} |")
    lines += _anomalies([r.sample for r in rows], expect="llm")
    return "\n".join(lines)


def throughput_table(rows: Sequence[LoadRow]) -> str:
    lines = [
        "### 2. Throughput at load (5-paper jobs, arXiv 200 ms, LLM 500 ms)",
        "",
        "| worker processes | concurrent jobs | rounds | jobs/s (median round) | median latency "
        "| p95 latency | goal ≥ 20 jobs/s at 20 |",
        "|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for row in rows:
        figures = row.all_jobs.figures
        goal = _goal(row.jobs_per_second >= THROUGHPUT_GOAL) if row.concurrent == 20 else ""
        lines.append(
            f"| {row.processes} | {row.concurrent} | {len(row.rounds)} "
            f"| {row.jobs_per_second:.1f} | {_ms(figures.median_seconds)} "
            f"| {_ms(figures.p95_seconds)} | {goal} |"
        )
    lines += [
        "",
        "Several processes: each runs the thread pool with its own embedded Qdrant (one "
        "process owns an embedded store; processes in production share a Qdrant server).",
    ]
    lines += _anomalies([r.all_jobs for r in rows], expect="llm")
    return "\n".join(lines)


def overhead_table(result: OverheadResult) -> str:
    full_means = _merge_means([s.stage_means_ms() for s in result.full])
    lines = [
        "### 3. Engine overhead (upstream latency 0)",
        "",
        f"{result.concurrent} concurrent jobs per round, {len(result.full)} rounds of each, "
        "interleaved, on the same worker.",
        "",
        "| chain | jobs/s (median round) | median latency |",
        "|:---|---:|---:|",
        f"| full research job (5 papers) | {result.full_rate:.1f} "
        f"| {_ms(_median_latency(result.full))} |",
        f"| raw Celery chain of no-op tasks (execute + 5) | {result.raw_rate:.1f} "
        f"| {_ms(_median_latency(result.raw))} |",
        "",
        f"Full job at **{result.share:.0%}** of the raw chain's rate (goal ≥ 40 %: "
        f"{_goal(result.share >= OVERHEAD_GOAL)}).",
        "",
        f"One at a time ({len(result.full_alone.outcomes)} of each): full job "
        f"{_ms(result.full_alone.figures.median_seconds)} median, no-op chain "
        f"{_ms(result.raw_alone.figures.median_seconds)} (six tasks: about "
        f"{_ms(result.raw_alone.figures.median_seconds / 6)} per task hop, result delivery "
        "included).",
        "",
        "Mean stage times of the full jobs under this load (ms; they include waiting for the "
        "GIL): " + ", ".join(f"{name} {value:.0f}" for name, value in full_means.items()),
    ]
    lines += _anomalies(list(result.full), expect="llm")
    return "\n".join(lines)


def repeat_table(result: RepeatResult) -> str:
    repeats = result.repeats.figures
    lines = [
        "### 4. Repeat jobs (the same 5-paper request again; arXiv 200 ms, LLM 500 ms)",
        "",
        "| job | runs | median | p95 | arXiv calls | LLM calls |",
        "|:---|---:|---:|---:|---:|---:|",
        f"| first time | 1 | {_ms(result.first.figures.median_seconds)} | - | 1 | 5 |",
        f"| repeated (response and summary caches warm) | {repeats.jobs} "
        f"| {_ms(repeats.median_seconds)} | {_ms(repeats.p95_seconds)} "
        f"| {result.arxiv_calls} | {result.llm_calls} |",
    ]
    lines += _anomalies([result.repeats], expect="cached")
    return "\n".join(lines)


def cpu_table(result: CpuResult) -> str:
    lines = [
        "#### Worker CPU per 5-paper job (one job at a time; arXiv 200 ms, LLM 500 ms)",
        "",
        "| papers | jobs | worker CPU per job | median latency |",
        "|:---|---:|---:|---:|",
        f"| fresh (never embedded) | {result.jobs} | {result.fresh_ms:.0f} ms"
        f" | {_ms(result.fresh.figures.median_seconds)} |",
        f"| already embedded (arXiv and summary caches emptied) | {result.jobs}"
        f" | {result.embedded_ms:.0f} ms | {_ms(result.embedded.figures.median_seconds)} |",
    ]
    lines += _anomalies([result.fresh], "llm")
    return "\n".join(lines)


def memory_table(result: MemoryResult) -> str:
    return "\n".join(
        [
            "### 5. Memory of a worker process (default local embeddings, embedded Qdrant)",
            "",
            "| jobs | concurrent | RSS when ready | peak RSS after the jobs | goal < 400 MB |",
            "|---:|---:|---:|---:|:---|",
            f"| {result.jobs} | {result.concurrent} | {result.rss_ready_mib:.0f} MiB "
            f"| {result.peak_rss_mib:.0f} MiB | {_goal(result.peak_rss_mib < MEMORY_GOAL_MIB)} |",
            *(["", f"**{result.failed} jobs failed.**"] if result.failed else []),
        ]
    )


def scale_out_table(rows: Sequence[ScaleRow], jobs: int) -> str:
    base = rows[0].jobs_per_second if rows else 0.0
    lines = [
        f"### 6. Scale-out ({jobs} concurrent 5-paper jobs, arXiv 200 ms, LLM 500 ms)",
        "",
        "| worker processes | rounds | jobs/s (median round) | speed-up | p95 latency |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        figures = [s.figures for s in row.rounds]
        p95 = max(f.p95_seconds for f in figures)
        speedup = row.jobs_per_second / base if base else 0.0
        lines.append(
            f"| {row.processes} | {len(row.rounds)} | {row.jobs_per_second:.1f} "
            f"| {speedup:.2f} | {_ms(p95)} |"
        )
    return "\n".join(lines)


def _median_latency(samples: Sequence[JobSample]) -> float:
    outcomes = [o for s in samples for o in s.outcomes]
    return JobSample(tuple(outcomes)).figures.median_seconds


def _merge_means(means: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = means[0].keys() if means else ()
    return {key: sum(m[key] for m in means) / len(means) for key in keys}


def _anomalies(samples: Sequence[JobSample], expect: str) -> list[str]:
    """Say so when a job failed or did not summarise as the case intends."""
    failed = sum(s.failed for s in samples)
    others: Counter[str] = sum((s.other_methods(expect) for s in samples), Counter())
    warnings: Counter[str] = sum((s.warnings() for s in samples), Counter())
    notes = []
    if failed:
        notes.append(f"**{failed} jobs failed.**")
    if others:
        listed = ", ".join(f"{count} {method}" for method, count in others.most_common())
        notes.append(f"**Papers not summarised `{expect}`: {listed}.**")
    for warning, count in warnings.most_common(3):
        notes.append(f"Warning in {count} jobs: {warning[:160]}")
    return ["", *notes] if notes else []


def profile_table(shares: Sequence[tuple[str, float]]) -> str:
    lines = [
        "Where the worker's CPU goes during the full-job rounds (py-spy, samples of the thread "
        "holding the GIL):",
        "",
        "| kind of work | share of samples |",
        "|:---|---:|",
    ]
    lines += [f"| {name} | {share:.0%} |" for name, share in shares]
    return "\n".join(lines)


def fanout_table(rows: Sequence[FanoutRow], concurrent: int) -> str:
    lines = [
        "### Fan-out shape of the summaries (fresh papers, LLM 500 ms, no arXiv)",
        "",
        f"| shape | papers | median latency (alone) | p95 | fan-outs/s with {concurrent} at once |",
        "|:---|---:|---:|---:|---:|",
    ]
    for row in rows:
        figures = row.single.figures
        lines.append(
            f"| {row.shape} | {row.papers} | {_ms(figures.median_seconds)} "
            f"| {_ms(figures.p95_seconds)} | {row.load_rate:.1f} |"
        )
    failed = sum(r.single.failed + r.load.failed for r in rows)
    if failed:
        lines += ["", f"**{failed} fan-outs failed.**"]
    return "\n".join(lines)

"""Every Prometheus metric research-arm exposes, and how worker metrics reach the scrape.

Two sources make up the sidecar's /metrics:

- Worker processes record what they do (jobs, stages, arXiv, LLM, Qdrant,
  tasks) through `worker_metrics()`. They run in prometheus_client's
  multiprocess mode: each process — the thread-pool worker itself, or every
  prefork child — writes its values to memory-mapped files in METRICS_DIR,
  and the sidecar merges the files of all processes at scrape time. The
  worker turns the mode on at start (`enable_multiprocess`, from the
  `worker_init` signal) and empties the directory of a previous run.
- The sidecar reads the state of things when scraped: queue depth from Redis,
  worker up from the heartbeat, dependency reachability, the arXiv gate
  (`SidecarCollector`, fed `ScrapeValues`).

Names follow celery-exporter where it has one (`celery_queue_length`,
`celery_worker_up`, `celery_task_*_total`); ours start with `research_arm_`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from schemas.research import ResearchResponse, StageName, StageRecord
    from tasks.arxiv_client import ArxivSearchResult
    from tasks.stage import StageResult
    from tasks.summarizer import SummaryBatch

JOB_OUTCOMES = ("succeeded", "degraded", "failed", "rejected")
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# arXiv's gate hands out one slot every 3 s: waits are multiples of that.
GATE_WAIT_BUCKETS = (0.001, 0.5, 1, 2, 3, 6, 9, 15, 30, 60, 120)
# The exception class a job that failed on bad input carries (tasks.errors).
_REJECTED_EXCEPTION = "InvalidRequest"


def enable_multiprocess(metrics_dir: Path) -> None:
    """Make this process, and every process it forks, record into `metrics_dir`.

    Call once in the worker's main process before the pool starts. The files
    of a previous run are removed first (prometheus_client requires an empty
    directory per run; in Kubernetes each pod has its own).
    """
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # prometheus_client picks file-backed or in-memory values when it is first
    # imported, and the worker's modules are imported before its settings name
    # the directory: pick again now. Instruments are built later, on first use.
    prometheus_values.ValueClass = prometheus_values.get_value_class()  # type: ignore[no-untyped-call]
    worker_metrics.cache_clear()


class WorkerMetrics:
    """The instruments a worker process records into, and one method per thing it records."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """
        Args:
            registry: where the instruments register. In multiprocess mode the
                values live in files and the registry does not matter; tests
                pass one to read values back.
        """
        r = registry if registry is not None else CollectorRegistry()
        self.jobs = Counter(
            "research_arm_jobs",
            "Research jobs finished, by outcome: succeeded, degraded (finished with "
            "warnings), failed (upstream gave out), rejected (invalid request).",
            ["outcome"],
            registry=r,
        )
        self.stage_duration = Histogram(
            "research_arm_stage_duration_seconds",
            "Duration of each pipeline stage that completed, by stage and outcome.",
            ["stage", "outcome"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.arxiv_requests = Counter(
            "research_arm_arxiv_requests",
            "Searches sent to arXiv (past the rate gate).",
            registry=r,
        )
        self.arxiv_cache_hits = Counter(
            "research_arm_arxiv_cache_hits",
            "Searches answered from the arXiv response cache, without a request.",
            registry=r,
        )
        self.arxiv_gate_wait = Histogram(
            "research_arm_arxiv_gate_wait_seconds",
            "Time a search waited at the global arXiv rate gate before its request.",
            buckets=GATE_WAIT_BUCKETS,
            registry=r,
        )
        self.llm_calls = Counter(
            "research_arm_llm_calls", "Chat completions requested for summaries.", registry=r
        )
        self.llm_failures = Counter(
            "research_arm_llm_failures",
            "Summary calls that failed (retried later or replaced by an extractive summary).",
            registry=r,
        )
        self.summary_fallbacks = Counter(
            "research_arm_summary_fallbacks",
            "Papers given an extractive summary, by reason: llm_failed, no_llm, or budget "
            "(the job's LLM budget had run out).",
            ["reason"],
            registry=r,
        )
        self.tokens = Counter(
            "research_arm_tokens",
            "Tokens the APIs reported using, by model and kind: prompt and completion "
            "(chat, for summaries) or embedding.",
            ["model", "kind"],
            registry=r,
        )
        self.delivery_limit_failures = Counter(
            "research_arm_delivery_limit_exceeded",
            "Jobs failed with DeliveryLimitExceeded: a stage's message arrived MAX_DELIVERIES "
            "times, its worker having died during each earlier delivery; by task.",
            ["task"],
            registry=r,
        )
        self.summary_cache_hits = Counter(
            "research_arm_summary_cache_hits",
            "Summaries reused from the summary cache instead of calling the LLM.",
            registry=r,
        )
        self.qdrant_points_written = Counter(
            "research_arm_qdrant_points_written", "Papers upserted into Qdrant.", registry=r
        )
        self.qdrant_failures = Counter(
            "research_arm_qdrant_failures",
            "Qdrant operations that failed and degraded a job, by operation: recall or store.",
            ["operation"],
            registry=r,
        )
        task_labels = ["name", "hostname", "queue_name"]
        self.tasks_succeeded = Counter(
            "celery_task_succeeded", "Tasks that succeeded.", task_labels, registry=r
        )
        self.tasks_failed = Counter(
            "celery_task_failed",
            "Tasks that failed, by exception class.",
            ["name", "hostname", "exception", "queue_name"],
            registry=r,
        )
        self.tasks_retried = Counter(
            "celery_task_retried", "Tasks that will be retried.", task_labels, registry=r
        )
        # Series that exist from the start read 0 rather than "no data".
        for outcome in JOB_OUTCOMES:
            self.jobs.labels(outcome)
        for operation in ("recall", "store"):
            self.qdrant_failures.labels(operation)
        for reason in ("llm_failed", "no_llm", "budget"):
            self.summary_fallbacks.labels(reason)

    def record_stage(self, record: StageRecord) -> None:
        """A stage finished (its provenance record holds name, outcome and duration)."""
        self.stage_duration.labels(record.name, record.outcome).observe(record.duration_ms / 1000)

    def record_stage_result(
        self, stage: StageName, result: StageResult, embedding_model: str
    ) -> None:
        """What one attempt of a stage did, as the stage reported it."""
        for search in result.arxiv_searches:
            self.record_arxiv_search(search)
        if result.embedding_tokens:
            self.record_embedding_tokens(embedding_model, result.embedding_tokens)
        if result.summaries is not None:
            self.record_summaries(result.summaries, model=result.summary_model)
        if stage == "recall" and result.qdrant_failed:
            self.qdrant_failures.labels("recall").inc()
        if stage == "store" and result.qdrant_failed is not None:
            self.record_qdrant_store(points=result.points_stored, failed=result.qdrant_failed)

    def record_arxiv_search(self, result: ArxivSearchResult) -> None:
        """One arXiv search: a cache hit, or a request after waiting at the gate."""
        if result.from_cache:
            self.arxiv_cache_hits.inc()
            return
        self.arxiv_requests.inc()
        self.arxiv_gate_wait.observe(result.gate_wait_seconds)

    def record_summaries(self, batch: SummaryBatch, *, model: str | None) -> None:
        """One summarisation pass over a job's papers; `model` is None when no LLM is configured."""
        self.llm_calls.inc(batch.llm_calls)
        self.llm_failures.inc(batch.llm_failures)
        self.summary_cache_hits.inc(batch.cache_hits)
        if model is None:
            self.summary_fallbacks.labels("no_llm").inc(batch.count("extractive"))
            return
        self.summary_fallbacks.labels("budget").inc(batch.over_budget)
        self.summary_fallbacks.labels("llm_failed").inc(
            max(0, batch.count("extractive") - batch.over_budget)
        )
        self.tokens.labels(model, "prompt").inc(batch.usage.prompt_tokens)
        self.tokens.labels(model, "completion").inc(batch.usage.completion_tokens)

    def record_embedding_tokens(self, model: str, tokens: int) -> None:
        """Tokens an embeddings request reported using."""
        self.tokens.labels(model, "embedding").inc(tokens)

    def record_delivery_limit(self, task: str) -> None:
        """A stage's message reached MAX_DELIVERIES: its job failed with DeliveryLimitExceeded."""
        self.delivery_limit_failures.labels(task).inc()

    def record_qdrant_store(self, *, points: int, failed: bool) -> None:
        self.qdrant_points_written.inc(points)
        if failed:
            self.qdrant_failures.labels("store").inc()

    def record_job(self, response: ResearchResponse) -> None:
        """A job produced its response: succeeded, or degraded if it carries warnings."""
        self.jobs.labels("degraded" if response.provenance.warnings else "succeeded").inc()

    def record_task_succeeded(self, name: str, hostname: str, queue: str) -> None:
        self.tasks_succeeded.labels(name, _host(hostname), queue).inc()

    def record_task_retried(self, name: str, hostname: str, queue: str) -> None:
        self.tasks_retried.labels(name, _host(hostname), queue).inc()

    def record_task_failed(self, name: str, hostname: str, queue: str, exception: str) -> None:
        """A task failed, so its job failed: the chain stops at the first failure."""
        self.tasks_failed.labels(name, _host(hostname), exception, queue).inc()
        self.jobs.labels("rejected" if exception == _REJECTED_EXCEPTION else "failed").inc()


def _host(node_name: str) -> str:
    # celery-exporter labels tasks with the host part of the node name.
    return node_name.rpartition("@")[2] or node_name


@functools.cache
def worker_metrics() -> WorkerMetrics:
    """This process's instruments, built on first use (after `enable_multiprocess`)."""
    return WorkerMetrics()


@dataclass(frozen=True)
class ScrapeValues:
    """What the sidecar read for one scrape; None where it could not be read.

    Attributes:
        queue: the Celery queue (and Redis list) name.
        queue_waiting: messages waiting in the queue's lists.
        queue_unacked: messages delivered to a worker and not yet acknowledged.
        worker_hostname: the node name from the heartbeat ("" if none).
        worker_alive: the heartbeat is fresh.
        worker_ready: the sidecar's readiness verdict.
        heartbeat_age_seconds: age of the newest beat.
        dependencies: dependency name to reachable, for those checked.
        arxiv_gate_cooldown_seconds: time until the gate's next free slot.
        pending_store_batches: Qdrant writes parked in Redis, waiting for Qdrant.
    """

    queue: str
    queue_waiting: int | None
    queue_unacked: int | None
    worker_hostname: str
    worker_alive: bool
    worker_ready: bool
    heartbeat_age_seconds: float | None
    dependencies: Mapping[str, bool] = field(default_factory=dict)
    arxiv_gate_cooldown_seconds: float | None = None
    pending_store_batches: int | None = None


class SidecarCollector:
    """Gauges computed when scraped, from the `ScrapeValues` that `read` returns."""

    def __init__(self, read: Callable[[], ScrapeValues]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        values = self._read()
        if values.queue_waiting is not None:
            yield _gauge(
                "celery_queue_length",
                "Messages waiting in the broker queue (not yet delivered).",
                values.queue_waiting,
                queue_name=values.queue,
            )
        if values.queue_unacked is not None:
            yield _gauge(
                "research_arm_queue_unacked",
                "Messages delivered to a worker and not yet acknowledged (in flight).",
                values.queue_unacked,
                queue_name=values.queue,
            )
        if values.queue_waiting is not None and values.queue_unacked is not None:
            yield _gauge(
                "research_arm_queue_depth",
                "Jobs and stages in the queue: waiting plus in flight.",
                values.queue_waiting + values.queue_unacked,
                queue_name=values.queue,
            )
        yield _gauge(
            "celery_worker_up",
            "1 if the worker beside this sidecar has a fresh heartbeat.",
            int(values.worker_alive),
            hostname=_host(values.worker_hostname),
        )
        yield _gauge(
            "research_arm_worker_ready",
            "1 if the worker consumes and its dependencies answer (the /readyz verdict).",
            int(values.worker_ready),
        )
        if values.heartbeat_age_seconds is not None:
            yield _gauge(
                "research_arm_worker_heartbeat_age_seconds",
                "Seconds since the worker's newest heartbeat.",
                values.heartbeat_age_seconds,
            )
        dependencies = GaugeMetricFamily(
            "research_arm_dependency_up",
            "1 if the dependency answered the sidecar's check.",
            labels=["dependency"],
        )
        for name, up in sorted(values.dependencies.items()):
            dependencies.add_metric([name], int(up))
        yield dependencies
        if values.arxiv_gate_cooldown_seconds is not None:
            yield _gauge(
                "research_arm_arxiv_gate_cooldown_seconds",
                "Seconds until the global arXiv rate gate's next free slot (0: free).",
                values.arxiv_gate_cooldown_seconds,
            )
        if values.pending_store_batches is not None:
            yield _gauge(
                "research_arm_qdrant_pending_batches",
                "Store batches parked in Redis while Qdrant was away, not yet written.",
                values.pending_store_batches,
            )


def _gauge(name: str, documentation: str, value: float, **labels: str) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def sidecar_registry(metrics_dir: Path, read: Callable[[], ScrapeValues]) -> CollectorRegistry:
    """The sidecar's registry: the worker processes' files in `metrics_dir` plus scrape-time gauges.

    The directory is created if the worker has not started yet.
    """
    metrics_dir.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    registry.register(SidecarCollector(read))
    return registry

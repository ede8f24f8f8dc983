"""Metrics: what each record call counts, the scrape-time gauges, and multiprocess collection."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from schemas.research import LlmUsage, StageRecord
from tasks.summarizer import SummaryBatch
from tests.unit.factories import make_paper
from worker.metrics import ScrapeValues, SidecarCollector, WorkerMetrics, sidecar_registry

REPO_ROOT = Path(__file__).resolve().parents[2]


def sample(registry: CollectorRegistry, metric: str, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels)


def test_a_summary_pass_counts_calls_failures_fallbacks_and_cache_hits() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    papers = [
        make_paper(arxiv_id="2401.00001").model_copy(update={"summary_method": "llm"}),
        make_paper(arxiv_id="2401.00002").model_copy(update={"summary_method": "extractive"}),
        make_paper(arxiv_id="2401.00003").model_copy(update={"summary_method": "cached"}),
        make_paper(arxiv_id="2401.00004").model_copy(update={"summary_method": "extractive"}),
    ]
    usage = LlmUsage(calls=2, prompt_tokens=120, completion_tokens=30)

    metrics.record_summaries(
        SummaryBatch(papers=papers, usage=usage, llm_failures=1, cache_hits=1, over_budget=1),
        model="gpt-test",
    )

    assert sample(registry, "research_arm_llm_calls_total") == 2
    assert sample(registry, "research_arm_llm_failures_total") == 1
    assert sample(registry, "research_arm_summary_cache_hits_total") == 1
    assert sample(registry, "research_arm_summary_fallbacks_total", reason="llm_failed") == 1
    assert sample(registry, "research_arm_summary_fallbacks_total", reason="budget") == 1
    assert sample(registry, "research_arm_summary_fallbacks_total", reason="no_llm") == 0
    assert sample(registry, "research_arm_tokens_total", model="gpt-test", kind="prompt") == 120
    assert sample(registry, "research_arm_tokens_total", model="gpt-test", kind="completion") == 30


def test_a_delivery_limit_failure_is_counted_by_task() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)

    metrics.record_delivery_limit("research.summarize")

    assert (
        sample(registry, "research_arm_delivery_limit_exceeded_total", task="research.summarize")
        == 1
    )


def test_a_failed_task_fails_its_job_and_an_invalid_request_is_a_rejection() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)

    metrics.record_task_failed("research.execute", "research@pod-1", "research", "InvalidRequest")
    metrics.record_task_failed(
        "research.search", "research@pod-1", "research", "UpstreamUnavailable"
    )

    assert sample(registry, "research_arm_jobs_total", outcome="rejected") == 1
    assert sample(registry, "research_arm_jobs_total", outcome="failed") == 1
    assert sample(registry, "research_arm_jobs_total", outcome="succeeded") == 0
    failed = registry.get_sample_value(
        "celery_task_failed_total",
        {
            "name": "research.search",
            "hostname": "pod-1",
            "exception": "UpstreamUnavailable",
            "queue_name": "research",
        },
    )
    assert failed == 1


def test_stage_records_land_in_the_duration_histogram() -> None:
    registry = CollectorRegistry()
    record = StageRecord(
        name="search",
        worker="research@pod-1",
        started_at=datetime.now(UTC),
        duration_ms=1500.0,
        outcome="cached",
    )

    WorkerMetrics(registry).record_stage(record)

    labels = {"stage": "search", "outcome": "cached"}
    assert sample(registry, "research_arm_stage_duration_seconds_sum", **labels) == 1.5
    assert sample(registry, "research_arm_stage_duration_seconds_bucket", le="2.5", **labels) == 1
    assert sample(registry, "research_arm_stage_duration_seconds_bucket", le="1.0", **labels) == 0


def test_scrape_gauges_show_what_was_read_and_leave_out_what_was_not() -> None:
    values = ScrapeValues(
        queue="research",
        queue_waiting=4,
        queue_unacked=2,
        worker_hostname="research@pod-1",
        worker_alive=True,
        worker_ready=False,
        heartbeat_age_seconds=1.5,
        dependencies={"redis": True, "qdrant": False},
        arxiv_gate_cooldown_seconds=None,
    )
    registry = CollectorRegistry()
    registry.register(SidecarCollector(lambda: values))

    assert sample(registry, "celery_queue_length", queue_name="research") == 4
    assert sample(registry, "research_arm_queue_unacked", queue_name="research") == 2
    assert sample(registry, "research_arm_queue_depth", queue_name="research") == 6
    assert sample(registry, "celery_worker_up", hostname="pod-1") == 1
    assert sample(registry, "research_arm_worker_ready") == 0
    assert sample(registry, "research_arm_dependency_up", dependency="qdrant") == 0
    text = generate_latest(registry).decode()
    assert "research_arm_arxiv_gate_cooldown_seconds" not in text
    assert "research_arm_qdrant_pending_batches" not in text
    assert text.count("# TYPE research_arm_dependency_up gauge") == 1


def test_values_recorded_by_other_processes_are_merged_at_scrape(tmp_path: Path) -> None:
    # The first process enables multiprocess mode as a worker does at start;
    # the second is started with the variable set. Each records one failure:
    # the files both leave behind are summed by the sidecar's registry.
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left over from a previous run")
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from worker.metrics import enable_multiprocess, worker_metrics
        if sys.argv[2] == "first":
            enable_multiprocess(Path(sys.argv[1]))
        worker_metrics().record_task_failed("research.search", "w@h", "research", "Boom")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for which, extra in (("first", {}), ("second", {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})):
        subprocess.run(
            [sys.executable, "-c", script, str(metrics_dir), which],
            env=env | extra,
            check=True,
            timeout=60,
        )

    registry = sidecar_registry(metrics_dir, lambda: _idle_scrape())

    assert not (metrics_dir / "counter_999999.db").exists()
    assert sample(registry, "research_arm_jobs_total", outcome="failed") == 2
    assert len(list(metrics_dir.glob("counter_*.db"))) == 2


def _idle_scrape() -> ScrapeValues:
    return ScrapeValues(
        queue="research",
        queue_waiting=None,
        queue_unacked=None,
        worker_hostname="",
        worker_alive=False,
        worker_ready=False,
        heartbeat_age_seconds=None,
    )

"""The Celery tasks of a research job: thin shells around the stages in `tasks.stages`.

`research.execute` validates the request and replaces itself with the chain
recall → search → rank → summarize → store; the chain's last task inherits the
job id, so the job id's result is the final ResearchResponse. Each stage
reports PROGRESS on the job id with {stage, done, total}.

A shell only adapts: `run_stage` binds the log context, counts the
delivery, reports progress, times the stage, records its result in the
job's provenance and in the metrics, and maps its errors to a Celery retry
or a requeue. What a stage does, and when it gives up, is the stage's own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import redis
import structlog
from celery import Task, chain, shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from schemas.research import StageRecord, Usage
from tasks.cancellation import current_task_cancelled
from tasks.constants import (
    QUEUE,
    TASK_EXECUTE,
    TASK_RANK,
    TASK_RECALL,
    TASK_SEARCH,
    TASK_STORE,
    TASK_SUMMARIZE,
)
from tasks.deliveries import DeliveryCounter
from tasks.errors import (
    DeliveryLimitExceeded,
    InvalidRequest,
    TransientUpstreamError,
    UpstreamUnavailable,
    WorkCancelled,
)
from tasks.job import JobState, accept_job, build_response
from tasks.resources import StageResources, StageSettings, stage_resources
from tasks.retry import retry_countdown
from tasks.stage import Attempt, Stage, stage_deadline
from tasks.stages import rank as rank_stage
from tasks.stages import recall as recall_stage
from tasks.stages import search as search_stage
from tasks.stages import store as store_stage
from tasks.stages import summarize as summarize_stage
from tasks.usage import AttemptUsage, add_usage, usage_since

log = structlog.get_logger("research_arm.pipeline")

JobJson = dict[str, Any]
PROGRESS_INTERVAL_SECONDS = 0.25

# The stages before `store` hand the job to the next task in its message; no
# one reads their own results, so they are not written to the backend (nor is
# their STARTED state). Their errors are: a failure is stored and passed down
# the chain to the job id, so the job still ends in FAILURE.
PASS_ON_ONLY: dict[str, Any] = {"ignore_result": True, "store_errors_even_if_ignored": True}
# execute and store run under the job id and write PROGRESS as they start: a
# STARTED state written just before it would be a backend write no one reads.
REPORTS_ITS_OWN_START: dict[str, Any] = {"track_started": False}


def give_back(reason: str) -> Reject:
    """The message goes back to the queue at once, for this or another worker to redo."""
    log.warning("stage_requeued", reason=reason)
    return Reject(reason, requeue=True)


@contextmanager
def job_log_context(job_id: str, task_id: str, stage: str) -> Iterator[None]:
    """Bind job id, task id and stage to every log line of this task (threads reuse contexts)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_id=job_id, task_id=task_id, stage=stage)
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()


def report_progress(task: Task, job_id: str, stage: str, done: int, total: int) -> None:
    task.update_state(
        task_id=job_id, state="PROGRESS", meta={"stage": stage, "done": done, "total": total}
    )


class ThrottledProgress:
    """A stage's {done, total} progress, written at most once per `interval` seconds.

    Papers' LLM calls start together and mostly answer within milliseconds of
    each other: a write per paper would be a burst of result-backend writes on
    the job's critical path, each replaced by the next at once.
    """

    def __init__(self, task: Task, job_id: str, stage: str, interval: float) -> None:
        self._task = task
        self._job_id = job_id
        self._stage = stage
        self._interval = interval
        # The stage reported {done: 0} as it started (see run_stage).
        self._last_report = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last_report >= self._interval:
            self._last_report = now
            report_progress(self._task, self._job_id, self._stage, done, total)


def retry_or_give_up(
    task: Task, exc: TransientUpstreamError, max_retries: int, settings: StageSettings
) -> Exception:
    """A Celery retry with a jittered countdown, or UpstreamUnavailable once retries are spent."""
    retries = task.request.retries
    if retries >= max_retries:
        return UpstreamUnavailable(
            exc.service, f"{exc.message} (gave up after {retries + 1} attempts)"
        )
    countdown = retry_countdown(
        retries,
        base_seconds=settings.retry_backoff_seconds,
        max_seconds=settings.retry_backoff_max_seconds,
        retry_after=exc.retry_after,
    )
    log.warning(
        "upstream_retry",
        service=exc.service,
        error=exc.message,
        attempt=retries + 1,
        countdown_s=round(countdown, 3),
    )
    retry: Exception = task.retry(
        exc=exc, countdown=countdown, max_retries=max_retries, throw=False
    )
    return retry


@contextmanager
def counted_delivery(task: Task, resources: StageResources) -> Iterator[int]:
    """Count this delivery of the task's message; fail the job at the delivery limit.

    Yields how many deliveries of this message are unfinished, this one
    included (1 unless earlier ones died with their worker). Raises
    DeliveryLimitExceeded when that reaches MAX_DELIVERIES; any end of the
    block, error or not, finishes the delivery (see tasks.deliveries).
    """
    request = task.request
    counter = DeliveryCounter(resources.redis, request.id, request.retries or 0)
    try:
        deliveries = counter.check(task.name, resources.settings.max_deliveries)
    except DeliveryLimitExceeded as exc:
        resources.metrics.record_delivery_limit(task.name)
        log.error("delivery_limit_exceeded", task=task.name, deliveries=exc.deliveries)
        raise
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise give_back(f"redis unavailable: {exc}") from exc
    if deliveries > 1:
        log.warning("stage_redelivered", task=task.name, deliveries=deliveries)
    try:
        yield deliveries
    finally:
        try:
            counter.finish()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # The count stays one too high until it expires: harmless below the limit.
            log.warning("delivery_count_not_cleared", error=str(exc))


def keep_attempt_usage(attempts: AttemptUsage, job: JobState, before: Usage) -> None:
    """Save what this attempt spent since `before` for the stage's next attempt (best effort)."""
    try:
        attempts.keep(usage_since(job.usage, before))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("attempt_usage_not_kept", error=str(exc))


def run_stage(task: Task, state: JobJson, stage: Stage) -> JobState:
    """Run one stage on the job in `state`: delivery limit, log context, progress, timing,
    metrics, retries, and the usage of earlier attempts of this stage.
    """
    job = JobState.model_validate(state)
    resources = stage_resources()
    with job_log_context(job.job_id, task.request.id, stage.name):
        if current_task_cancelled():
            raise give_back("the worker cancelled the stage")
        with counted_delivery(task, resources) as deliveries:
            record = _run_attempt(task, job, stage, resources, deliveries)
        resources.metrics.record_stage(record)
        log.info(
            "stage_finished",
            outcome=record.outcome,
            duration_ms=record.duration_ms,
            candidates=len(job.candidates),
            papers=len(job.papers),
            warnings=len(job.warnings),
        )
    return job


def _run_attempt(
    task: Task, job: JobState, stage: Stage, resources: StageResources, deliveries: int
) -> StageRecord:
    """One attempt of the stage; returns its provenance record, appended to the job."""
    request = task.request
    settings = resources.settings
    max_retries = stage.max_retries(settings)
    attempts = AttemptUsage(resources.redis, job.job_id, stage.name)
    # A retry's message carries the job as the stage first received it: what
    # earlier attempts spent comes back from Redis (nothing to read otherwise).
    delivery_info = getattr(request, "delivery_info", None) or {}
    if (request.retries or 0) > 0 or deliveries > 1 or delivery_info.get("redelivered"):
        try:
            add_usage(job.usage, attempts.earlier())
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise give_back(f"redis unavailable: {exc}") from exc
    before = job.usage.model_copy(deep=True)
    report_progress(task, job.job_id, stage.name, 0, 1)
    attempt = Attempt(
        retries=request.retries or 0,
        max_retries=max_retries,
        deadline=stage_deadline(settings),
        progress=ThrottledProgress(task, job.job_id, stage.name, PROGRESS_INTERVAL_SECONDS),
        cancelled=current_task_cancelled,
        interrupted_by=(SoftTimeLimitExceeded,),
    )
    started_at = datetime.now(UTC)
    start = time.perf_counter()
    try:
        result = stage.run(job, resources, attempt)
        resources.metrics.record_stage_result(stage.name, result, job.embedding_model)
        if result.retry is not None:
            raise result.retry
    except TransientUpstreamError as exc:
        keep_attempt_usage(attempts, job, before)
        raise retry_or_give_up(task, exc, max_retries, settings) from exc
    except WorkCancelled as exc:
        keep_attempt_usage(attempts, job, before)
        raise give_back(str(exc)) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Redis (rate gate, caches, parked writes) is the broker too: while it
        # is away nothing can be stored or retried, so the message waits in it.
        raise give_back(f"redis unavailable: {exc}") from exc
    except SoftTimeLimitExceeded as exc:
        raise UpstreamUnavailable(
            stage.service,
            f"the {stage.name} stage did not finish within the soft time limit "
            f"({settings.task_soft_time_limit_seconds} s)",
        ) from exc
    record = StageRecord(
        name=stage.name,
        worker=request.hostname or "unknown",
        started_at=started_at,
        duration_ms=round((time.perf_counter() - start) * 1000, 3),
        outcome=result.outcome,
    )
    job.stages.append(record)
    return record


@shared_task(bind=True, name=TASK_EXECUTE, throws=(InvalidRequest,), **REPORTS_ITS_OWN_START)
def execute(self: Task, *args: Any, **kwargs: Any) -> Any:
    """Validate the request, then become the job's chain (the job id's result is its response).

    `replace` raises Ignore once the chain is sent; under `apply()` it runs
    the chain here and returns the response.
    """
    job_id = self.request.id
    resources = stage_resources()
    with job_log_context(job_id, job_id, "validate"), counted_delivery(self, resources):
        summarizer = resources.summarizer
        try:
            job = accept_job(
                job_id,
                args,
                kwargs,
                embedding_model=resources.embedder.name,
                llm_model=summarizer.model if summarizer else None,
            )
        except InvalidRequest as exc:
            log.info("job_rejected", errors=exc.errors)
            raise
        # The chain's first stage is next: the job shows it until that stage starts.
        report_progress(self, job_id, recall_stage.STAGE.name, 0, 1)
        log.info("job_accepted", query=job.request.query, max_papers=job.request.max_papers)
    return self.replace(job_chain(job))


def job_chain(job: JobState) -> Any:
    state = job.model_dump(mode="json")
    # Each stage's argument is the whole job (every candidate's abstract):
    # task events and logs show this instead of Celery's truncated repr of it,
    # which cost more CPU than any stage's own bookkeeping.
    options = {"queue": QUEUE, "argsrepr": f"(<job {job.job_id}>,)", "kwargsrepr": "{}"}
    return chain(
        recall.s(state).set(**options),
        search.s().set(**options),
        rank.s().set(**options),
        summarize.s().set(**options),
        store.s().set(**options),
    )


@shared_task(bind=True, name=TASK_RECALL, **PASS_ON_ONLY)
def recall(self: Task, state: JobJson) -> JobJson:
    return run_stage(self, state, recall_stage.STAGE).model_dump(mode="json")


@shared_task(bind=True, name=TASK_SEARCH, max_retries=None, **PASS_ON_ONLY)
def search(self: Task, state: JobJson) -> JobJson:
    return run_stage(self, state, search_stage.STAGE).model_dump(mode="json")


@shared_task(bind=True, name=TASK_RANK, **PASS_ON_ONLY)
def rank(self: Task, state: JobJson) -> JobJson:
    return run_stage(self, state, rank_stage.STAGE).model_dump(mode="json")


@shared_task(bind=True, name=TASK_SUMMARIZE, max_retries=None, **PASS_ON_ONLY)
def summarize(self: Task, state: JobJson) -> JobJson:
    return run_stage(self, state, summarize_stage.STAGE).model_dump(mode="json")


@shared_task(bind=True, name=TASK_STORE, **REPORTS_ITS_OWN_START)
def store(self: Task, state: JobJson) -> JobJson:
    """The last stage: its result, under the job id, is the job's ResearchResponse."""
    job = run_stage(self, state, store_stage.STAGE)
    response = build_response(job)
    stage_resources().metrics.record_job(response)
    with job_log_context(job.job_id, self.request.id, store_stage.STAGE.name):
        log.info(
            "job_finished",
            papers=len(response.papers),
            total_found=response.total_found,
            confidence=response.confidence,
            duration_ms=response.search_time_ms,
            warnings=response.provenance.warnings,
        )
    return response.model_dump(mode="json")

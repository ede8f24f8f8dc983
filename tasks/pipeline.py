"""The Celery tasks of a research job: thin shells around the stages in `tasks.job`.

`research.execute` validates the request and replaces itself with the chain
recall → search → rank → summarize → store; the chain's last task inherits the
job id, so the job id's result is the final ResearchResponse. Each stage
reports PROGRESS on the job id with {stage, done, total}.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import redis
import structlog
from celery import Task, chain, shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from schemas.research import Usage
from tasks import job as stages
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
from tasks.job import JobState, StageName, StageTimer, timed_stage
from tasks.retry import retry_countdown
from tasks.summarizer import LlmBudget, summarize_papers
from tasks.usage import AttemptUsage, add_usage, usage_since
from worker.metrics import worker_metrics
from worker.resources import WorkerResources, current_resources
from worker.settings import Settings
from worker.thread_pool import current_task_cancelled

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
StageWork = Callable[[JobState, WorkerResources, StageTimer], None]

# What a stage waits on, named in the error of a stage that outran its time.
STAGE_SERVICES: dict[StageName, str] = {
    "recall": "qdrant",
    "search": "arxiv",
    "rank": "embeddings",
    "summarize": "llm",
    "store": "qdrant",
}


def stage_deadline(settings: Settings) -> float:
    """When a stage starting now must stop waiting (a `time.monotonic()` value).

    The thread pool enforces no Celery time limit at all, so this deadline is
    the only one there; under prefork it comes a little before Celery's soft
    limit, so the stage ends on its own terms before SoftTimeLimitExceeded.
    """
    soft = settings.task_soft_time_limit_seconds
    return time.monotonic() + soft - min(5.0, max(0.5, 0.1 * soft))


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


def retry_or_give_up(task: Task, exc: TransientUpstreamError, max_retries: int) -> Exception:
    """A Celery retry with a jittered countdown, or UpstreamUnavailable once retries are spent."""
    settings = current_resources().settings
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
def counted_delivery(task: Task, resources: WorkerResources) -> Iterator[int]:
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
        worker_metrics().record_delivery_limit(task.name)
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


def record_embedding_metrics(job: JobState, tokens_before: int) -> None:
    """Count in the metrics the embedding tokens a stage added to the job's ledger."""
    spent = job.usage.embeddings.tokens - tokens_before
    if spent:
        worker_metrics().record_embedding_tokens(job.embedding_model, spent)


def run_stage(
    task: Task, state: JobJson, name: StageName, work: StageWork, *, max_retries: int = 0
) -> JobState:
    """Run one stage on the job in `state`: delivery limit, log context, progress, timing,
    retries, and the usage of earlier attempts of this stage.
    """
    job = JobState.model_validate(state)
    resources = current_resources()
    with job_log_context(job.job_id, task.request.id, name):
        if current_task_cancelled():
            raise give_back("the worker cancelled the stage")
        with counted_delivery(task, resources) as deliveries:
            _run_attempt(task, job, name, work, resources, max_retries, deliveries)
        record = job.stages[-1]
        worker_metrics().record_stage(record)
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
    task: Task,
    job: JobState,
    name: StageName,
    work: StageWork,
    resources: WorkerResources,
    max_retries: int,
    deliveries: int,
) -> None:
    request = task.request
    attempts = AttemptUsage(resources.redis, job.job_id, name)
    # A retry's message carries the job as the stage first received it: what
    # earlier attempts spent comes back from Redis (nothing to read otherwise).
    delivery_info = getattr(request, "delivery_info", None) or {}
    if (request.retries or 0) > 0 or deliveries > 1 or delivery_info.get("redelivered"):
        try:
            add_usage(job.usage, attempts.earlier())
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise give_back(f"redis unavailable: {exc}") from exc
    before = job.usage.model_copy(deep=True)
    report_progress(task, job.job_id, name, 0, 1)
    try:
        with timed_stage(job, name, request.hostname or "unknown") as timer:
            work(job, resources, timer)
    except TransientUpstreamError as exc:
        keep_attempt_usage(attempts, job, before)
        raise retry_or_give_up(task, exc, max_retries) from exc
    except WorkCancelled as exc:
        keep_attempt_usage(attempts, job, before)
        raise give_back(str(exc)) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Redis (rate gate, caches, parked writes) is the broker too: while it
        # is away nothing can be stored or retried, so the message waits in it.
        raise give_back(f"redis unavailable: {exc}") from exc
    except SoftTimeLimitExceeded as exc:
        soft = resources.settings.task_soft_time_limit_seconds
        raise UpstreamUnavailable(
            STAGE_SERVICES[name],
            f"the {name} stage did not finish within the soft time limit ({soft} s)",
        ) from exc


@shared_task(bind=True, name=TASK_EXECUTE, throws=(InvalidRequest,), **REPORTS_ITS_OWN_START)
def execute(self: Task, *args: Any, **kwargs: Any) -> None:
    """Validate the request, then become the job's chain (the job id's result is its response)."""
    job_id = self.request.id
    resources = current_resources()
    with job_log_context(job_id, job_id, "validate"), counted_delivery(self, resources):
        try:
            request = stages.parse_job_payload(args, kwargs)
        except InvalidRequest as exc:
            log.info("job_rejected", errors=exc.errors)
            raise
        summarizer = resources.summarizer
        job = JobState(
            job_id=job_id,
            request=request,
            accepted_at=datetime.now(UTC),
            embedding_model=resources.embedder.name,
            llm_model=summarizer.model if summarizer and request.include_summaries else None,
        )
        report_progress(self, job_id, "recall", 0, 1)
        log.info("job_accepted", query=request.query, max_papers=request.max_papers)
    raise self.replace(job_chain(job))


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
    settings = current_resources().settings

    def work(job: JobState, res: WorkerResources, timer: StageTimer) -> None:
        # As many candidates from the index as arXiv would be asked for.
        limit = stages.candidate_count(
            job.request.max_papers, settings.arxiv_candidate_factor, settings.arxiv_max_candidates
        )
        source = f"corpus:{settings.qdrant_collection}"
        tokens_before = job.usage.embeddings.tokens
        stages.recall_stage(job, res.memory, timer, limit=limit, collection_source=source)
        record_embedding_metrics(job, tokens_before)
        if timer.outcome != "skipped":
            worker_metrics().record_qdrant_recall(failed=timer.outcome == "degraded")

    return run_stage(self, state, "recall", work).model_dump(mode="json")


@shared_task(bind=True, name=TASK_SEARCH, max_retries=None, **PASS_ON_ONLY)
def search(self: Task, state: JobJson) -> JobJson:
    settings = current_resources().settings

    deadline = stage_deadline(settings)

    def work(job: JobState, res: WorkerResources, timer: StageTimer) -> None:
        count = stages.candidate_count(
            job.request.max_papers, settings.arxiv_candidate_factor, settings.arxiv_max_candidates
        )
        # On the last attempt, or with no time left for another, a job the
        # corpus answered goes on without arXiv.
        no_time_left = deadline - time.monotonic() < settings.arxiv_timeout_seconds
        final_attempt = no_time_left or self.request.retries >= settings.arxiv_max_retries
        try:
            # Each request gets arXiv's own timeout, or less when the task's time runs out first.
            for result in stages.search_stage(
                job, res.arxiv, count, timer, deadline=deadline, final_attempt=final_attempt
            ):
                worker_metrics().record_arxiv_search(result)
        except TransientUpstreamError as exc:
            if time.monotonic() >= deadline:
                raise UpstreamUnavailable(
                    "arxiv",
                    f"no answer within the soft time limit "
                    f"({settings.task_soft_time_limit_seconds} s): {exc.message}",
                ) from exc
            raise

    job = run_stage(self, state, "search", work, max_retries=settings.arxiv_max_retries)
    return job.model_dump(mode="json")


@shared_task(bind=True, name=TASK_RANK, **PASS_ON_ONLY)
def rank(self: Task, state: JobJson) -> JobJson:
    def work(job: JobState, res: WorkerResources, timer: StageTimer) -> None:
        tokens_before = job.usage.embeddings.tokens
        stages.rank_stage(job, res.embedder, res.paper_vectors, res.fresh_embeddings)
        record_embedding_metrics(job, tokens_before)

    return run_stage(self, state, "rank", work).model_dump(mode="json")


@shared_task(bind=True, name=TASK_SUMMARIZE, max_retries=None, **PASS_ON_ONLY)
def summarize(self: Task, state: JobJson) -> JobJson:
    settings = current_resources().settings
    max_retries = settings.llm_max_retries

    def work(job: JobState, res: WorkerResources, timer: StageTimer) -> None:
        if not job.request.include_summaries:
            stages.drop_summaries(job)
            timer.outcome = "skipped"
            return
        batch = summarize_papers(
            job.papers,
            res.summarizer,
            res.summary_cache,
            concurrency=settings.summary_concurrency,
            final_attempt=self.request.retries >= max_retries,
            job_id=job.job_id,
            ledger=job.usage.llm,
            budget=LlmBudget.for_job(job.request.budget, settings.llm_max_tokens_per_job),
            on_progress=ThrottledProgress(self, job.job_id, "summarize", PROGRESS_INTERVAL_SECONDS),
            deadline=stage_deadline(settings),
            cancelled=current_task_cancelled,
            interrupted_by=(SoftTimeLimitExceeded,),
        )
        worker_metrics().record_summaries(
            batch, model=res.summarizer.model if res.summarizer else None
        )
        log.info(
            "summaries_done",
            llm_calls=batch.llm_calls,
            prompt_tokens=batch.usage.prompt_tokens,
            completion_tokens=batch.usage.completion_tokens,
            cache_hits=batch.cache_hits,
            retryable=len(batch.retryable),
            timed_out=batch.timed_out,
            over_budget=batch.over_budget,
        )
        if batch.retryable:
            # Papers summarised already are cached: the retry calls only these.
            raise next(iter(batch.retryable.values()))
        timer.outcome = stages.apply_summaries(job, batch, res.summarizer is not None)

    return run_stage(self, state, "summarize", work, max_retries=max_retries).model_dump(
        mode="json"
    )


@shared_task(bind=True, name=TASK_STORE, **REPORTS_ITS_OWN_START)
def store(self: Task, state: JobJson) -> JobJson:
    def work(job: JobState, res: WorkerResources, timer: StageTimer) -> None:
        stages.store_stage(job, res.memory, res.pending_writes, timer)
        worker_metrics().record_qdrant_store(
            points=job.memory.stored, failed=timer.outcome == "degraded"
        )

    job = run_stage(self, state, "store", work)
    response = stages.build_response(job)
    worker_metrics().record_job(response)
    with job_log_context(job.job_id, self.request.id, "store"):
        log.info(
            "job_finished",
            papers=len(response.papers),
            total_found=response.total_found,
            confidence=response.confidence,
            duration_ms=response.search_time_ms,
            warnings=response.provenance.warnings,
        )
    return response.model_dump(mode="json")

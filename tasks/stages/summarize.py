"""Summarize: every kept paper at once, on a bounded thread pool, within the job's LLM budget.

Cached summaries are reused; a paper whose LLM call fails for good gets a
flagged extractive summary. A retryable failure retries the stage, which
then calls the LLM only for the papers still without a summary.
"""

from __future__ import annotations

import structlog

from schemas.research import StageOutcome
from tasks.cache import RedisJsonCache
from tasks.job import JobState
from tasks.resources import StageResources, StageSettings
from tasks.stage import Attempt, Stage, StageResult
from tasks.summarizer import LlmBudget, LLMSummarizer, SummaryBatch, summarize_papers

log = structlog.get_logger("research_arm.summarize")


def summarize(
    job: JobState,
    summarizer: LLMSummarizer | None,
    cache: RedisJsonCache,
    settings: StageSettings,
    attempt: Attempt,
) -> StageResult:
    """Summarise the job's papers, or drop every summary when the request asks for none.

    When some papers' calls may succeed on a retry and this is not the final
    attempt, the result asks for one (papers summarised already are cached,
    so the retry calls only the others).
    """
    if not job.request.include_summaries:
        job.papers = [
            p.model_copy(update={"summary": None, "summary_method": "none"}) for p in job.papers
        ]
        return StageResult(outcome="skipped")
    batch = summarize_papers(
        job.papers,
        summarizer,
        cache,
        concurrency=settings.summary_concurrency,
        final_attempt=attempt.final,
        job_id=job.job_id,
        ledger=job.usage.llm,
        budget=LlmBudget.for_job(job.request.budget, settings.llm_max_tokens_per_job),
        on_progress=attempt.progress,
        deadline=attempt.deadline,
        cancelled=attempt.cancelled,
        interrupted_by=attempt.interrupted_by,
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
    result = StageResult(summaries=batch, summary_model=summarizer.model if summarizer else None)
    if batch.retryable:
        result.retry = next(iter(batch.retryable.values()))
        return result
    result.outcome = apply_summaries(job, batch, llm_configured=summarizer is not None)
    return result


def apply_summaries(job: JobState, batch: SummaryBatch, *, llm_configured: bool) -> StageOutcome:
    """Put a summarisation pass's papers and warnings into the job; returns the stage outcome."""
    job.papers = batch.papers
    for warning in batch.warnings:
        job.add_warning(warning)
    extractive = batch.count("extractive")
    if batch.over_budget:
        return "degraded"
    if not llm_configured and extractive:
        job.add_warning("no LLM is configured: every summary is extractive")
        return "degraded"
    return "degraded" if extractive else "ok"


def run(job: JobState, resources: StageResources, attempt: Attempt) -> StageResult:
    return summarize(
        job, resources.summarizer, resources.summary_cache, resources.settings, attempt
    )


STAGE = Stage(
    name="summarize",
    service="llm",
    run=run,
    max_retries=lambda settings: settings.llm_max_retries,
)

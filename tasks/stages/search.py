"""Search: arXiv for what the index of papers cannot answer, merged with the recalled papers.

arXiv is asked only for dates after the corpus's watermark, or for the whole
request when the corpus does not cover it (`tasks.corpus_coverage`). Within
that window the precise query goes first; the broad one only when the precise
one returns fewer papers than the pool (`tasks.query_planner`).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from schemas.research import Paper
from tasks.arxiv_client import ArxivClient
from tasks.corpus_coverage import plan_arxiv_search
from tasks.errors import TransientUpstreamError, UpstreamError, UpstreamUnavailable
from tasks.job import JobState
from tasks.query_planner import joined_queries, plan_search
from tasks.resources import StageResources, StageSettings
from tasks.stage import Attempt, Stage, StageResult

log = structlog.get_logger("research_arm.search")


def search(
    job: JobState, arxiv: ArxivClient, settings: StageSettings, attempt: Attempt
) -> StageResult:
    """Ask arXiv for the job's pool of candidates and merge them into the job.

    Of the broad answer, only papers the precise one lacked are added, up to
    the pool size in all. `query_used` lists the queries sent.

    Each request gets arXiv's timeout, or what is left before the attempt's
    deadline when that is less. On the final attempt (no retry left, or no
    time for another request) a job the corpus answered goes on without
    arXiv, with a warning. Raises TransientUpstreamError for the shell to
    retry, UpstreamUnavailable when the deadline passed waiting.
    """
    request = job.request
    window = plan_arxiv_search(request, job.coverage, corpus_answered=job.corpus_answered)
    log.info("arxiv_window", call=window.call, reason=window.reason)
    if not window.call:
        return StageResult(outcome="skipped")
    plan = plan_search(
        request.query,
        request.categories,
        window.start_date,
        window.end_date,
        pool_size=settings.candidate_count(request.max_papers),
    )
    final_attempt = attempt.final or attempt.time_left() < settings.arxiv_timeout_seconds
    sent = [plan.precise]
    job.search_query = joined_queries(sent)
    result = StageResult()
    searches = result.arxiv_searches
    try:
        searches.append(
            _within(arxiv, attempt).search(plan.precise, plan.max_results, usage=job.usage.arxiv)
        )
        if plan.broad is not None and plan.needs_broad(len(searches[0].feed.papers)):
            sent.append(plan.broad)
            job.search_query = joined_queries(sent)
            searches.append(
                _within(arxiv, attempt).search(plan.broad, plan.max_results, usage=job.usage.arxiv)
            )
    except UpstreamError as exc:
        if not (final_attempt and job.corpus is not None):
            if isinstance(exc, TransientUpstreamError) and attempt.time_left() <= 0:
                raise UpstreamUnavailable(
                    "arxiv",
                    f"no answer within the soft time limit "
                    f"({settings.task_soft_time_limit_seconds} s): {exc.message}",
                ) from exc
            raise
        job.add_warning(
            f"arXiv did not answer ({exc}): papers newer than the corpus watermark "
            f"{job.corpus.watermark} were not searched"
        )
        result.outcome = "degraded"
        if not searches:
            return result
    if all(s.from_cache for s in searches) and result.outcome != "degraded":
        result.outcome = "cached"
    job.sources.extend(s.source for s in searches)
    # The broad query matches every paper the precise one does: its total is the larger.
    job.arxiv_total = max(s.feed.total_results for s in searches)
    found = {paper.arxiv_id: paper for s in searches for paper in s.feed.papers}
    pool = list(found.values())[: plan.max_results]
    job.recalled_beyond_search = len(set(job.recalled_ids) - {paper.arxiv_id for paper in pool})
    job.candidates = merge_candidates(job.candidates, pool)
    return result


def _within(arxiv: ArxivClient, attempt: Attempt) -> ArxivClient:
    """The client, with its timeout cut to what is left of the attempt (at least 0.1 s)."""
    time_left = attempt.time_left()
    return arxiv.with_timeout(max(0.1, time_left)) if time_left < arxiv.timeout_seconds else arxiv


def merge_candidates(recalled: Sequence[Paper], searched: Sequence[Paper]) -> list[Paper]:
    """One paper per arXiv id: arXiv's record wins; a reused summary of the same version stays."""
    merged = {paper.arxiv_id: paper for paper in recalled}
    for paper in searched:
        known = merged.get(paper.arxiv_id)
        if known and known.version == paper.version and known.summary_method == "cached":
            paper = paper.model_copy(update={"summary": known.summary, "summary_method": "cached"})
        merged[paper.arxiv_id] = paper
    return list(merged.values())


def run(job: JobState, resources: StageResources, attempt: Attempt) -> StageResult:
    return search(job, resources.arxiv, resources.settings, attempt)


STAGE = Stage(
    name="search",
    service="arxiv",
    run=run,
    max_retries=lambda settings: settings.arxiv_max_retries,
)

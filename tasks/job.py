"""A research job's state as it travels down the chain, and the work of each stage on it.

Each `*_stage` function is plain code: it takes the job and the clients it
needs, updates the job, and knows nothing of Celery. `tasks.pipeline` wraps
each in a thin task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.research import (
    MemoryCounts,
    ModelNames,
    Paper,
    Provenance,
    ResearchRequest,
    ResearchResponse,
    StageRecord,
)
from tasks.arxiv_client import ArxivClient, ArxivSearchResult
from tasks.arxiv_query import build_search_query
from tasks.citations import apa_reference, bibtex_entry
from tasks.embeddings import Embedder
from tasks.errors import InvalidRequest, MemoryUnavailable
from tasks.memory import PaperMemory, PendingWrites
from tasks.paper_vectors import PaperVectorLookup
from tasks.relevance import job_confidence, lexical_order, rank_candidates
from tasks.summarizer import SummaryBatch
from tasks.version import arm_version

# Stored papers less similar to the query than this are not recalled: the
# hashing embedder's cosine for an unrelated paper stays well below it.
RECALL_MIN_SIMILARITY = 0.3

StageName = Literal["recall", "search", "rank", "summarize", "store"]
Outcome = Literal["ok", "degraded", "skipped", "cached"]


def parse_job_payload(args: Sequence[Any], kwargs: Mapping[str, Any]) -> ResearchRequest:
    """The request inside a `research.execute` message, or InvalidRequest saying what to fix."""
    if args:
        raise InvalidRequest(
            'research.execute takes no positional arguments: send kwargs {"request": {...}}',
            [{"field": "args", "message": "must be empty"}],
        )
    unexpected = sorted(set(kwargs) - {"request"})
    if unexpected:
        raise InvalidRequest(
            f'unexpected keyword arguments {unexpected}: send kwargs {{"request": {{...}}}}',
            [{"field": name, "message": "unexpected keyword argument"} for name in unexpected],
        )
    if "request" not in kwargs:
        raise InvalidRequest(
            "missing keyword argument 'request': send kwargs {\"request\": {...}}",
            [{"field": "request", "message": "required"}],
        )
    request = kwargs["request"]
    if not isinstance(request, dict):
        raise InvalidRequest(
            f"request must be a JSON object, not {type(request).__name__}",
            [{"field": "request", "message": "must be a JSON object"}],
        )
    try:
        return ResearchRequest.model_validate(request)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None


def invalid_request_from(exc: ValidationError) -> InvalidRequest:
    """InvalidRequest listing each field and what is wrong with it (never the offending value)."""
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"]) or "request"
        errors.append({"field": field, "message": error["msg"]})
    details = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return InvalidRequest(f"invalid research request: {details}", errors)


class JobState(BaseModel):
    """Everything the stages hand down the chain. Internal: not a public contract."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    request: ResearchRequest
    accepted_at: datetime
    embedding_model: str
    llm_model: str | None
    search_query: str = ""
    candidates: list[Paper] = Field(default_factory=list)
    papers: list[Paper] = Field(default_factory=list)
    recalled_ids: list[str] = Field(default_factory=list)
    arxiv_total: int = 0
    # Recalled papers that arXiv's answer did not contain: they add to total_found.
    recalled_beyond_search: int = 0
    sources: list[str] = Field(default_factory=list)
    stages: list[StageRecord] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    memory: MemoryCounts = Field(default_factory=MemoryCounts)

    def add_warning(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)


class StageTimer:
    """Set `outcome` inside the `timed_stage` block; the record is appended on success."""

    def __init__(self) -> None:
        self.outcome: Outcome = "ok"


@contextmanager
def timed_stage(job: JobState, name: StageName, worker: str) -> Iterator[StageTimer]:
    """Record the stage's start, duration and outcome in the job's provenance."""
    timer = StageTimer()
    started_at = datetime.now(UTC)
    start = time.perf_counter()
    yield timer
    job.stages.append(
        StageRecord(
            name=name,
            worker=worker,
            started_at=started_at,
            duration_ms=round((time.perf_counter() - start) * 1000, 3),
            outcome=timer.outcome,
        )
    )


def candidate_count(max_papers: int, factor: int, cap: int) -> int:
    """How many arXiv results to ask for: more than needed, so ranking has a choice."""
    return max(max_papers, min(max_papers * factor, cap))


def recall_stage(job: JobState, memory: PaperMemory, timer: StageTimer) -> None:
    """Candidates from memory; Qdrant being away degrades the job, it does not fail it."""
    request = job.request
    try:
        recalled = memory.recall(
            request.query,
            limit=request.max_papers,
            min_score=RECALL_MIN_SIMILARITY,
            start_date=request.start_date,
            end_date=request.end_date,
            categories=request.categories,
        )
    except MemoryUnavailable as exc:
        job.add_warning(f"memory recall skipped: {exc}")
        timer.outcome = "degraded"
        return
    job.candidates = recalled
    job.recalled_ids = [paper.arxiv_id for paper in recalled]
    job.memory.recalled = len(recalled)


def search_stage(
    job: JobState, arxiv: ArxivClient, max_results: int, timer: StageTimer
) -> ArxivSearchResult:
    """Search arXiv (through the shared gate and cache) and merge with the recalled papers.

    Returns the search's result, for metrics (cache hit, time at the rate gate).
    """
    request = job.request
    job.search_query = build_search_query(
        request.query, request.categories, request.start_date, request.end_date
    )
    result = arxiv.search(job.search_query, max_results)
    if result.from_cache:
        timer.outcome = "cached"
    else:
        job.sources.append(result.request_url)
    job.arxiv_total = result.feed.total_results
    searched_ids = {paper.arxiv_id for paper in result.feed.papers}
    job.recalled_beyond_search = len(set(job.recalled_ids) - searched_ids)
    job.candidates = merge_candidates(job.candidates, result.feed.papers)
    return result


def merge_candidates(recalled: Sequence[Paper], searched: Sequence[Paper]) -> list[Paper]:
    """One paper per arXiv id: arXiv's record wins; a reused summary of the same version stays."""
    merged = {paper.arxiv_id: paper for paper in recalled}
    for paper in searched:
        known = merged.get(paper.arxiv_id)
        if known and known.version == paper.version and known.summary_method == "cached":
            paper = paper.model_copy(update={"summary": known.summary, "summary_method": "cached"})
        merged[paper.arxiv_id] = paper
    return list(merged.values())


def rank_stage(
    job: JobState, embedder: Embedder, vectors: PaperVectorLookup | None = None, fresh: int = 0
) -> int:
    """Score, sort and keep the best papers; each kept paper gets its citations.

    With `vectors`, the query is embedded once and each paper's vector is
    looked up (store, cache) before it is computed; only candidates among the
    lexical best `max(fresh, max_papers)` are embedded when no vector is
    known, the others without one are ranked on the lexical score alone
    (docs/embeddings.md says why).
    Without it, `embedder` embeds the query and every candidate.
    Returns the tokens the embedding model read, for the job's usage ledger.
    """
    request = job.request
    query_vector, paper_vectors, tokens = None, None, 0
    if vectors is not None and job.candidates:
        query_batch = vectors.embedder.embed_with_usage([request.query])
        ordered = lexical_order(request.query, job.candidates)
        depth = max(fresh, request.max_papers)
        found = vectors.vectors_for(ordered[:depth])
        known_beyond = vectors.known_vectors(ordered[depth:])
        query_vector = query_batch.vectors[0]
        paper_vectors = {**known_beyond.vectors, **found.vectors}
        tokens = query_batch.tokens + found.tokens
    ranked = rank_candidates(
        request.query,
        job.candidates,
        embedder,
        max_papers=request.max_papers,
        min_relevance=request.min_relevance,
        query_vector=query_vector,
        paper_vectors=paper_vectors,
    )
    job.papers = [
        paper.model_copy(update={"citation": apa_reference(paper), "bibtex": bibtex_entry(paper)})
        for paper in ranked
    ]
    job.candidates = []  # no need to carry the losers down the chain
    return tokens


def apply_summaries(job: JobState, batch: SummaryBatch, llm_configured: bool) -> Outcome:
    """Put a summarisation pass's papers and warnings into the job; returns the stage outcome."""
    job.papers = batch.papers
    for warning in batch.warnings:
        job.add_warning(warning)
    extractive = batch.count("extractive")
    if not llm_configured and extractive:
        job.add_warning("no LLM is configured: every summary is extractive")
        return "degraded"
    return "degraded" if extractive else "ok"


def drop_summaries(job: JobState) -> None:
    """include_summaries=false: no paper carries a summary."""
    job.papers = [
        p.model_copy(update={"summary": None, "summary_method": "none"}) for p in job.papers
    ]


def store_stage(
    job: JobState, memory: PaperMemory, pending: PendingWrites, timer: StageTimer
) -> None:
    """One batch upsert of the kept papers; parked in Redis if Qdrant is away."""
    try:
        pending.flush(memory)
        job.memory.stored = memory.store(job.papers, query=job.request.query, job_id=job.job_id)
    except MemoryUnavailable as exc:
        if job.papers:
            pending.park(job.papers, query=job.request.query, job_id=job.job_id)
        job.add_warning(
            f"memory store deferred: {exc}; the papers will be written when Qdrant answers"
        )
        timer.outcome = "degraded"


def method_description(job: JobState) -> str:
    summaries = "none"
    if job.request.include_summaries:
        summaries = f"llm:{job.llm_model}" if job.llm_model else "extractive"
    return (
        f"qdrant-recall + arxiv-search + rank(bm25 0.6, {job.embedding_model} 0.4) "
        f"+ summaries({summaries})"
    )


def build_response(
    job: JobState, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> ResearchResponse:
    """The job's final response, provenance included."""
    finished_at = now()
    scores = [paper.relevance_score for paper in job.papers]
    confidence = job_confidence(scores, job.request.max_papers)
    provenance = Provenance(
        version=arm_version(),
        job_id=job.job_id,
        timestamp=finished_at,
        sources=job.sources,
        method=method_description(job),
        confidence=confidence,
        models=ModelNames(llm=job.llm_model, embedding=job.embedding_model),
        stages=job.stages,
        memory=job.memory,
        warnings=job.warnings,
    )
    return ResearchResponse(
        papers=job.papers,
        total_found=job.arxiv_total + job.recalled_beyond_search,
        query_used=job.search_query,
        search_time_ms=round((finished_at - job.accepted_at).total_seconds() * 1000, 3),
        confidence=confidence,
        provenance=provenance,
    )

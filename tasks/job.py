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
    CorpusCounts,
    MemoryCounts,
    ModelNames,
    Paper,
    Provenance,
    ResearchRequest,
    ResearchResponse,
    StageRecord,
    Usage,
)
from tasks.arxiv_client import ArxivClient, ArxivSearchResult
from tasks.citations import apa_reference, bibtex_entry
from tasks.corpus_coverage import CoverageEntry, plan_arxiv_search
from tasks.embeddings import Embedder
from tasks.errors import InvalidRequest, MemoryUnavailable, UpstreamError
from tasks.paper_index import PaperIndex, PendingWrites
from tasks.paper_vectors import PaperVectorLookup
from tasks.query_planner import joined_queries, plan_search
from tasks.relevance import LEXICAL_WEIGHT, job_confidence, lexical_order, rank_candidates
from tasks.summarizer import SummaryBatch
from tasks.usage import add_embedding_call
from tasks.version import arm_version

# Dense hits less similar to the query than this are not recalled. Chosen on
# the evaluation's tune half with all-MiniLM-L6-v2: paraphrased queries find
# their papers at cosines of 0.15-0.3 (0.3 lost them); below 0.15 nothing changed.
RECALL_MIN_SIMILARITY = 0.15

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
    # Recalled papers that arXiv's answer did not contain (all of them when
    # arXiv was not asked): they add to total_found.
    recalled_beyond_search: int = 0
    sources: list[str] = Field(default_factory=list)
    stages: list[StageRecord] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    memory: MemoryCounts = Field(default_factory=MemoryCounts)
    # The job's ledger (provenance.usage): each stage adds what it spends, as
    # the APIs report it (tasks.usage); a retried stage's failed attempts are
    # added back by tasks.pipeline.run_stage.
    usage: Usage = Field(default_factory=Usage)
    # The index's completed snapshot ingests and counts; None: no corpus answered.
    corpus: CorpusCounts | None = None
    coverage: list[CoverageEntry] = Field(default_factory=list)
    # Whether the recall stage read the index (requested, configured and reachable).
    corpus_answered: bool = False
    # How provenance.sources names the index, once it gave candidates (after arXiv's URLs).
    index_source: str | None = None

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


def recall_stage(
    job: JobState, index: PaperIndex, timer: StageTimer, *, limit: int, collection_source: str
) -> None:
    """Candidates from the index of papers: hybrid retrieval over the corpus and stored papers.

    Args:
        job: the job; its request says what to retrieve and whether "corpus" is a source.
        index: the index of papers.
        timer: the stage's outcome is set on it.
        limit: how many candidates to retrieve at most.
        collection_source: how provenance.sources names the index (`corpus:<collection>`).

    Qdrant being away degrades the job, it does not fail it: arXiv is then
    asked for everything.
    """
    request = job.request
    if "corpus" not in request.sources:
        timer.outcome = "skipped"
        return
    query = index.embedder.embed_with_usage([request.query])
    record_embedding(job, query.tokens)
    try:
        recalled = index.recall(
            request.query,
            query_vector=query.vectors[0],
            limit=limit,
            min_similarity=RECALL_MIN_SIMILARITY,
            start_date=request.start_date,
            end_date=request.end_date,
            categories=request.categories,
        )
        coverage = index.coverage()
        records = index.count() if coverage else 0
    except MemoryUnavailable as exc:
        job.add_warning(f"memory recall skipped: {exc}")
        timer.outcome = "degraded"
        return
    job.corpus_answered = True
    job.coverage = coverage
    job.candidates = recalled
    job.recalled_ids = [paper.arxiv_id for paper in recalled]
    job.recalled_beyond_search = len(recalled)  # until arXiv's answer says otherwise
    job.memory.recalled = len(recalled)
    if coverage:
        job.corpus = CorpusCounts(
            records=records,
            watermark=max(entry.watermark for entry in coverage),
            hits=len(recalled),
        )
    if recalled:
        job.index_source = collection_source


def search_stage(
    job: JobState,
    arxiv: ArxivClient,
    max_results: int,
    timer: StageTimer,
    *,
    deadline: float | None = None,
    final_attempt: bool = True,
) -> list[ArxivSearchResult]:
    """Search arXiv for what the index cannot hold, and merge with the recalled papers.

    arXiv is asked only for dates after the corpus's watermark, or for the
    whole request when the corpus does not cover it (see
    `tasks.corpus_coverage.plan_arxiv_search`). Within that window the precise
    query goes first; the broad one only when the precise one returns fewer
    than `max_results` papers (see `tasks.query_planner`). Of the broad
    answer, only papers the precise one lacked are added, up to `max_results`
    in all. `query_used` lists the queries sent, QUERY_SEPARATOR between them.

    Args:
        max_results: the pool size, how many candidates arXiv should supply.
        deadline: a `time.monotonic()` value by which the stage must stop waiting:
            each request's timeout is cut to the time left (at least 0.1 s).
        final_attempt: no retry follows; when arXiv fails now and the corpus
            answered, the job goes on with the corpus's papers and a warning.

    Returns:
        Each search's result in order, for metrics (cache hit, time at the rate
        gate); empty when arXiv was not asked or did not answer.
    """
    request = job.request
    window = plan_arxiv_search(request, job.coverage, corpus_answered=job.corpus_answered)
    if not window.call:
        timer.outcome = "skipped"
        return []
    plan = plan_search(
        request.query,
        request.categories,
        window.start_date,
        window.end_date,
        pool_size=max_results,
    )
    sent = [plan.precise]
    job.search_query = joined_queries(sent)
    results: list[ArxivSearchResult] = []
    try:
        results.append(
            _within(arxiv, deadline).search(plan.precise, plan.max_results, usage=job.usage.arxiv)
        )
        if plan.broad is not None and plan.needs_broad(len(results[0].feed.papers)):
            sent.append(plan.broad)
            job.search_query = joined_queries(sent)
            results.append(
                _within(arxiv, deadline).search(plan.broad, plan.max_results, usage=job.usage.arxiv)
            )
    except UpstreamError as exc:
        if not (final_attempt and job.corpus is not None):
            raise
        job.add_warning(
            f"arXiv did not answer ({exc}): papers newer than the corpus watermark "
            f"{job.corpus.watermark} were not searched"
        )
        timer.outcome = "degraded"
        if not results:
            return []
    if all(result.from_cache for result in results) and timer.outcome != "degraded":
        timer.outcome = "cached"
    job.sources.extend(result.source for result in results)
    # The broad query matches every paper the precise one does: its total is the larger.
    job.arxiv_total = max(result.feed.total_results for result in results)
    searched = {paper.arxiv_id: paper for result in results for paper in result.feed.papers}
    pool = list(searched.values())[: plan.max_results]
    job.recalled_beyond_search = len(set(job.recalled_ids) - {paper.arxiv_id for paper in pool})
    job.candidates = merge_candidates(job.candidates, pool)
    return results


def _within(arxiv: ArxivClient, deadline: float | None) -> ArxivClient:
    """The client, with its timeout cut to what is left before `deadline`."""
    if deadline is None:
        return arxiv
    time_left = deadline - time.monotonic()
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


def record_embedding(job: JobState, tokens: int) -> None:
    """Count an embedding call in the job's ledger; a call served from memory read nothing."""
    if tokens:
        add_embedding_call(job.usage.embeddings, tokens)


def rank_stage(
    job: JobState, embedder: Embedder, vectors: PaperVectorLookup | None = None, fresh: int = 0
) -> None:
    """Score, sort and keep the best papers; each kept paper gets its citations.

    With `vectors`, the query is embedded once and each paper's vector is
    looked up (store, cache) before it is computed; only candidates among the
    lexical best `max(fresh, max_papers)` are embedded when no vector is
    known, the others without one are ranked on the lexical score alone
    (docs/embeddings.md says why).
    Without it, `embedder` embeds the query and every candidate.
    What the embedding model read goes into the job's usage ledger.
    """
    request = job.request
    query_vector, paper_vectors = None, None
    if vectors is not None and job.candidates:
        query_batch = vectors.embedder.embed_with_usage([request.query])
        ordered = lexical_order(request.query, job.candidates)
        depth = max(fresh, request.max_papers)
        found = vectors.vectors_for(ordered[:depth])
        known_beyond = vectors.known_vectors(ordered[depth:])
        query_vector = query_batch.vectors[0]
        paper_vectors = {**known_beyond.vectors, **found.vectors}
        record_embedding(job, query_batch.tokens)
        record_embedding(job, found.tokens)
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


def apply_summaries(job: JobState, batch: SummaryBatch, llm_configured: bool) -> Outcome:
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


def drop_summaries(job: JobState) -> None:
    """include_summaries=false: no paper carries a summary."""
    job.papers = [
        p.model_copy(update={"summary": None, "summary_method": "none"}) for p in job.papers
    ]


def store_stage(
    job: JobState, memory: PaperIndex, pending: PendingWrites, timer: StageTimer
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
        f"qdrant-recall(dense+bm25, rrf) + arxiv-search "
        f"+ rank(bm25 {LEXICAL_WEIGHT:g}, {job.embedding_model} {1 - LEXICAL_WEIGHT:g}) "
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
        sources=[*job.sources, *([job.index_source] if job.index_source else [])],
        method=method_description(job),
        confidence=confidence,
        models=ModelNames(llm=job.llm_model, embedding=job.embedding_model),
        stages=job.stages,
        memory=job.memory,
        usage=job.usage,
        corpus=job.corpus,
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

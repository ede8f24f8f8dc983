"""A research job: its request as a message carries it, its state as it travels down
the chain, and the response it ends in.

The stages (`tasks.stages`) update the JobState; `tasks.pipeline` hands it
from task to task as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

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
from tasks.corpus_coverage import CoverageEntry
from tasks.errors import InvalidRequest
from tasks.relevance import LEXICAL_WEIGHT, job_confidence
from tasks.usage import add_embedding_call
from tasks.version import arm_version


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
    # added back by tasks.pipeline.
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


def accept_job(
    job_id: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    embedding_model: str,
    llm_model: str | None,
) -> JobState:
    """A new job from a `research.execute` message; InvalidRequest says what to fix.

    `llm_model` is the configured LLM; the job records it only when its
    request asks for summaries.
    """
    request = parse_job_payload(args, kwargs)
    return JobState(
        job_id=job_id,
        request=request,
        accepted_at=datetime.now(UTC),
        embedding_model=embedding_model,
        llm_model=llm_model if request.include_summaries else None,
    )


def record_embedding(job: JobState, tokens: int) -> None:
    """Count an embedding call in the job's ledger; a call served from memory read nothing."""
    if tokens:
        add_embedding_call(job.usage.embeddings, tokens)


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

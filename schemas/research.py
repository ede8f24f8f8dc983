"""The research job's public contract: request in, response with provenance out.

Orchestrators in any language depend on these names; `schemas/json/` holds the
exported JSON Schema of each model and a test keeps the two in step.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from typing import Annotated, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
)

ARM_ID: Final = "research"

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# arXiv archive and subject class, e.g. cs.CL, hep-th, astro-ph.GA, q-bio.NC.
_CATEGORY = re.compile(r"^[a-z][a-z-]{0,15}(\.[A-Za-z][A-Za-z-]{0,15})?$")


def _parse_iso_date(value: object) -> object:
    """Accept only a `YYYY-MM-DD` string (or a date): no timestamps, no other layouts."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be a date written as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a real calendar date") from exc


def _clean_query(value: str) -> str:
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in value):
        raise ValueError("must not contain control characters")
    collapsed = " ".join(value.split())
    if not any(ch.isalnum() for ch in collapsed):
        raise ValueError("must contain at least one letter or digit")
    return collapsed


def _check_category(value: str) -> str:
    if not _CATEGORY.match(value):
        raise ValueError(f"{value!r} is not an arXiv category such as cs.CL or hep-th")
    return value


IsoDate = Annotated[date, BeforeValidator(_parse_iso_date)]
Category = Annotated[str, AfterValidator(_check_category)]
Score = Annotated[float, Field(ge=0.0, le=1.0)]
SummaryMethod = Literal["llm", "extractive", "cached", "none"]
Source = Literal["corpus", "arxiv"]
# The stages of a job's chain, in order, and how each can end (provenance.stages).
StageName = Literal["recall", "search", "rank", "summarize", "store"]
StageOutcome = Literal["ok", "degraded", "skipped", "cached"]
STAGE_NAMES: tuple[StageName, ...] = get_args(StageName)
ALL_SOURCES: Final[tuple[Source, ...]] = ("corpus", "arxiv")
PositiveInt = Annotated[StrictInt, Field(ge=1)]


class Budget(BaseModel):
    """Caps on what one job may spend on the LLM; either or both."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_llm_tokens: PositiveInt | None = Field(
        default=None, description="Prompt plus completion tokens, as the LLM API reports them."
    )
    max_llm_calls: PositiveInt | None = Field(default=None, description="LLM requests.")


class ResearchRequest(BaseModel):
    """What an orchestrator asks for. Unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)

    query: Annotated[str, Field(min_length=3, max_length=500), AfterValidator(_clean_query)] = (
        Field(description="Free-text research question or keywords.")
    )
    max_papers: StrictInt = Field(default=5, ge=1, le=20, description="Papers to return.")
    start_date: IsoDate | None = Field(
        default=None, description="Earliest first-submission date (YYYY-MM-DD), inclusive."
    )
    end_date: IsoDate | None = Field(
        default=None, description="Latest first-submission date (YYYY-MM-DD), inclusive."
    )
    include_summaries: StrictBool = Field(default=True, description="Summarise each paper.")
    categories: list[Category] = Field(
        default_factory=list, max_length=20, description="arXiv categories such as cs.CL."
    )
    min_relevance: Score = Field(default=0.0, description="Drop papers scoring below this.")
    sources: list[Source] = Field(
        default_factory=lambda: list(ALL_SOURCES),
        min_length=1,
        max_length=2,
        description="Where candidates come from: the local index, arXiv, or both.",
    )
    budget: Budget | None = Field(
        default=None, description="Caps on this job's LLM spending; none by default."
    )

    @field_validator("sources")
    @classmethod
    def _distinct_sources(cls, sources: list[Source]) -> list[Source]:
        if len(set(sources)) != len(sources):
            raise ValueError("must not name a source twice")
        return sources

    @field_validator("end_date")
    @classmethod
    def _dates_in_order(cls, end_date: date | None, info: ValidationInfo) -> date | None:
        start_date = info.data.get("start_date")
        if start_date and end_date and start_date > end_date:
            raise ValueError(f"must be on or after start_date ({start_date.isoformat()})")
        return end_date


class Paper(BaseModel):
    """One arXiv paper as research-arm returns and stores it."""

    model_config = ConfigDict(extra="forbid")

    arxiv_id: str = Field(
        description="arXiv id without version, e.g. 2502.13957 or hep-th/9901001."
    )
    version: int = Field(ge=1)
    title: str
    authors: list[str]
    abstract: str
    url: str
    pdf_url: str
    published_date: date = Field(description="First submission (version 1).")
    updated_date: date = Field(description="This version's submission.")
    categories: list[str]
    primary_category: str | None = None
    doi: str | None = None
    journal_ref: str | None = None
    summary: str | None = None
    summary_method: SummaryMethod = "none"
    relevance_score: Score = 0.0
    citation: str = Field(default="", description="APA 7 reference built from the metadata.")
    bibtex: str = ""


class StageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StageName
    worker: str = Field(description="Hostname of the worker that ran the stage.")
    started_at: datetime
    duration_ms: float
    outcome: StageOutcome


class ModelNames(BaseModel):
    model_config = ConfigDict(extra="forbid")

    llm: str | None
    embedding: str


class MemoryCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recalled: int = 0
    stored: int = 0


class CorpusCounts(BaseModel):
    """The local index of arXiv's metadata snapshot, as this job saw it."""

    model_config = ConfigDict(extra="forbid")

    records: int = Field(ge=0, description="Papers the index holds.")
    watermark: date | None = Field(
        description="Newest first-submission date ingested from a snapshot (YYYY-MM-DD)."
    )
    hits: int = Field(ge=0, description="Papers this job's retrieval took from the index.")


class LlmUsage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class EmbeddingUsage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    tokens: int = 0


class ArxivUsage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: int = 0
    cache_hits: int = 0
    gate_wait_ms: float = 0.0


class Usage(BaseModel):
    """What the job spent, from the APIs' own usage fields; every attempt counted once."""

    model_config = ConfigDict(extra="forbid")

    llm: LlmUsage = Field(default_factory=LlmUsage)
    embeddings: EmbeddingUsage = Field(default_factory=EmbeddingUsage)
    arxiv: ArxivUsage = Field(default_factory=ArxivUsage)


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arm_id: Literal["research"] = ARM_ID
    version: str
    job_id: str
    timestamp: datetime
    sources: list[str] = Field(description="URLs actually called for this job.")
    method: str
    confidence: Score
    models: ModelNames
    stages: list[StageRecord]
    memory: MemoryCounts
    corpus: CorpusCounts | None = Field(
        default=None, description="The local index's state; null when there is none."
    )
    usage: Usage = Field(default_factory=Usage)
    warnings: list[str]


class ResearchResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    papers: list[Paper] = Field(description="Best first.")
    total_found: int = Field(
        ge=0, description="arXiv's reported total plus recalled papers not in it."
    )
    query_used: str = Field(
        description=(
            "The arXiv search_query actually sent. When the precise query found too few"
            " papers and a broad one followed, both, in that order, joined by ' ; '."
        )
    )
    search_time_ms: float
    confidence: Score
    provenance: Provenance

"""What the local index of papers holds of arXiv, and what a job must still ask arXiv for.

Each completed snapshot ingest records one `CoverageEntry` in the index: the
categories it kept (None: all of arXiv), the first-submission date it started
from (None: the beginning), and its watermark, the newest first-submission
date the snapshot held. The index is complete for that slice of arXiv up to
the watermark; papers submitted on the watermark day itself may be missing
(the snapshot may have been cut during the day).

`plan_arxiv_search` turns a request and the coverage into an `ArxivWindow`:
whether the search stage calls arXiv at all, and for which dates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from schemas.research import ResearchRequest


class CoverageEntry(BaseModel):
    """The slice of arXiv one completed snapshot ingest put in the index."""

    model_config = ConfigDict(extra="forbid")

    categories: list[str] | None = Field(
        default=None, description="Category patterns kept (cs.CL, cs.*); None: every category."
    )
    since: date | None = Field(default=None, description="Earliest first-submission date kept.")
    watermark: date = Field(description="Newest first-submission date in the snapshot.")


def category_matches(category: str, pattern: str) -> bool:
    """`pattern` is a category (`cs.CL`) or an archive's prefix (`cs.*`, any `cs.` category)."""
    if pattern.endswith(".*"):
        return category.startswith(pattern[:-1])
    return category == pattern


def matches_any(categories: Sequence[str], patterns: Sequence[str]) -> bool:
    return any(category_matches(c, p) for c in categories for p in patterns)


def _covers(entry: CoverageEntry, request: ResearchRequest) -> bool:
    if entry.categories is not None:
        # A request without categories asks for all of arXiv, which a filtered ingest lacks.
        if not request.categories:
            return False
        if not all(matches_any([c], entry.categories) for c in request.categories):
            return False
    if entry.since is not None:
        return request.start_date is not None and request.start_date >= entry.since
    return True


@dataclass(frozen=True)
class ArxivWindow:
    """What the search stage asks arXiv for. `call` False: arXiv is not asked at all."""

    call: bool
    start_date: date | None
    end_date: date | None
    reason: str


def plan_arxiv_search(
    request: ResearchRequest, coverage: Sequence[CoverageEntry], *, corpus_answered: bool
) -> ArxivWindow:
    """Decide whether and for which dates a job asks arXiv, given what the index covers.

    Args:
        request: the job's request (its sources, categories and date range).
        coverage: the index's completed ingests; empty for an index without a snapshot.
        corpus_answered: the recall stage read the index (it is configured,
            reachable and the request named "corpus"); False sends the whole
            request to arXiv, as without a corpus.

    The index answers alone when some ingest covers the request's categories
    and start date and the request ends before that ingest's watermark. When
    it ends on or after the watermark, arXiv is asked from the watermark day
    on (that day included: the snapshot may lack part of it). Anything the
    index does not cover goes to arXiv whole.
    """
    if "arxiv" not in request.sources:
        return ArxivWindow(False, None, None, "the request's sources exclude arxiv")
    if not corpus_answered or not coverage:
        return ArxivWindow(True, request.start_date, request.end_date, "no corpus")
    covering = [entry for entry in coverage if _covers(entry, request)]
    if not covering:
        return ArxivWindow(
            True, request.start_date, request.end_date, "outside the corpus's categories or dates"
        )
    watermark = max(entry.watermark for entry in covering)
    if request.end_date is not None and request.end_date < watermark:
        return ArxivWindow(False, None, None, f"inside the corpus (watermark {watermark})")
    start = max(request.start_date, watermark) if request.start_date else watermark
    return ArxivWindow(True, start, request.end_date, f"newer than the watermark {watermark}")

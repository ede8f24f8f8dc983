"""What a stage of a job is handed and what it hands back, whatever the stage.

A stage is one plain function, `run(job, resources, attempt) -> StageResult`,
in its own module under `tasks.stages`. It updates the job, decides what its
failures mean (retry, degrade, give up) and reports what it did; the Celery
shell in `tasks.pipeline` times it, records the result in the job's
provenance and in the metrics, and maps its errors to a retry or a requeue.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from schemas.research import StageName, StageOutcome

if TYPE_CHECKING:
    from tasks.arxiv_client import ArxivSearchResult
    from tasks.errors import TransientUpstreamError
    from tasks.job import JobState
    from tasks.resources import StageResources, StageSettings
    from tasks.summarizer import SummaryBatch


@dataclass(frozen=True)
class Attempt:
    """This delivery of a stage's message: which try it is, and how long it may take."""

    # Celery retries of this stage so far (0 on the first try).
    retries: int
    # Retries the stage allows; the try after the last is final.
    max_retries: int
    # A `time.monotonic()` value by which the stage must stop waiting.
    deadline: float
    # Reports {done, total} progress on the job id.
    progress: Callable[[int, int], None] = lambda done, total: None
    # Whether the worker asked the stage to stop.
    cancelled: Callable[[], bool] = lambda: False
    # What interrupts a wait when the time limit strikes (Celery's soft limit under prefork).
    interrupted_by: tuple[type[BaseException], ...] = ()

    @property
    def final(self) -> bool:
        """No retry follows this attempt."""
        return self.retries >= self.max_retries

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


@dataclass
class StageResult:
    """How a stage ended, and what it did that the metrics count."""

    outcome: StageOutcome = "ok"
    # Each arXiv search, cache hit or request, in order.
    arxiv_searches: list[ArxivSearchResult] = field(default_factory=list)
    # Tokens the embedding model read for this stage.
    embedding_tokens: int = 0
    # The summarisation pass, and the LLM it called (None: none is configured).
    summaries: SummaryBatch | None = None
    summary_model: str | None = None
    # Qdrant's part: None when the stage did not ask it; else whether it failed.
    qdrant_failed: bool | None = None
    # Points written to the index.
    points_stored: int = 0
    # Set when part of the work may succeed on a retry: the shell retries the
    # stage with it after recording what this attempt did.
    retry: TransientUpstreamError | None = None


StageRun = Callable[["JobState", "StageResources", Attempt], StageResult]


@dataclass(frozen=True)
class Stage:
    """One stage of the chain: its name, what it waits on, its function and its retries."""

    name: StageName
    # The service named in the error of a stage that outran its time.
    service: str
    run: StageRun
    max_retries: Callable[[StageSettings], int] = lambda settings: 0


def stage_deadline(settings: StageSettings) -> float:
    """When a stage starting now must stop waiting (a `time.monotonic()` value).

    The thread pool enforces no Celery time limit at all, so this deadline is
    the only one there; under prefork it comes a little before Celery's soft
    limit, so the stage ends on its own terms before SoftTimeLimitExceeded.
    """
    soft = settings.task_soft_time_limit_seconds
    return time.monotonic() + soft - min(5.0, max(0.5, 0.1 * soft))

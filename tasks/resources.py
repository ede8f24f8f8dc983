"""What the stages need in a worker process: its clients, its settings and its metrics.

`tasks` declares the holder; the worker fills it. At start-up (after any fork)
the worker hands `process_resources` a function that builds a
`StageResources`, as arq hands its jobs a ctx built in `on_startup`; the
Celery shells read `stage_resources()` and pass what each stage needs as
arguments. Nothing here imports the worker, and importing this module
opens no connection.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import redis

from tasks.cache import RedisJsonCache
from tasks.embeddings import Embedder
from tasks.paper_index import PaperIndex, PendingWrites
from tasks.paper_vectors import PaperVectorLookup

if TYPE_CHECKING:
    from schemas.research import ResearchResponse, StageName, StageRecord
    from tasks.arxiv_client import ArxivClient
    from tasks.stage import StageResult
    from tasks.summarizer import LLMSummarizer


@dataclass(frozen=True)
class StageSettings:
    """The settings the stages read; the worker takes them from its typed settings."""

    task_soft_time_limit_seconds: int
    retry_backoff_seconds: float
    retry_backoff_max_seconds: float
    max_deliveries: int
    arxiv_timeout_seconds: float
    arxiv_max_retries: int
    arxiv_candidate_factor: int
    arxiv_max_candidates: int
    llm_max_retries: int
    llm_max_tokens_per_job: int | None
    summary_concurrency: int
    qdrant_collection: str
    # Where the sidecar reads the corpus status file.
    data_dir: Path
    # The embedded store's folder, whose size the status reports; None with a server.
    qdrant_store_path: Path | None

    def candidate_count(self, max_papers: int) -> int:
        """How many candidates a job retrieves: more than it keeps, so ranking has a choice."""
        wanted = min(max_papers * self.arxiv_candidate_factor, self.arxiv_max_candidates)
        return max(max_papers, wanted)


class StageMetrics(Protocol):
    """Where the pipeline records what its stages did (the worker's Prometheus instruments)."""

    def record_stage(self, record: StageRecord) -> None:
        """A stage finished: its provenance record holds name, outcome and duration."""

    def record_stage_result(
        self, stage: StageName, result: StageResult, embedding_model: str
    ) -> None:
        """What an attempt of a stage did (searches, tokens, summaries, Qdrant writes)."""

    def record_delivery_limit(self, task: str) -> None:
        """A stage's message reached MAX_DELIVERIES."""

    def record_job(self, response: ResearchResponse) -> None:
        """A job produced its response."""


@dataclass
class StageResources:
    """One worker process's clients and settings, as the stages use them."""

    settings: StageSettings
    redis: redis.Redis
    arxiv: ArxivClient
    summarizer: LLMSummarizer | None
    summary_cache: RedisJsonCache
    embedder: Embedder
    paper_vectors: PaperVectorLookup
    # Candidates without a vector the rank stage may embed (EMBEDDING_FRESH_CANDIDATES).
    fresh_embeddings: int
    # The index of papers (corpus and job-stored); recall and store use it.
    index: PaperIndex
    pending_writes: PendingWrites
    metrics: StageMetrics
    # Closes the clients the worker opened for these resources, in its order.
    close: Callable[[], None] = field(default=lambda: None)


class ProcessResources:
    """This process's StageResources, built on first use by the builder the worker provides.

    A forked child never uses its parent's sockets: the holder remembers the
    process that built the resources and builds anew in any other.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._build: Callable[[], StageResources] | None = None
        self._resources: StageResources | None = None
        self._owner_pid = 0

    def provide(self, build: Callable[[], StageResources]) -> None:
        """Say how to build this process's resources; those built by another builder are closed."""
        self.close()
        with self._lock:
            self._build = build

    def open(self) -> StageResources:
        """This process's resources, built now if it has none."""
        with self._lock:
            if self._resources is None or self._owner_pid != os.getpid():
                if self._build is None:
                    raise RuntimeError(
                        "no stage resources: the worker provides them at start-up "
                        "(tasks.resources.process_resources.provide)"
                    )
                self._resources = self._build()
                self._owner_pid = os.getpid()
            return self._resources

    def close(self) -> None:
        """Close this process's resources, if it built any; the builder stays."""
        with self._lock:
            resources, owner = self._resources, self._owner_pid
            self._resources = None
        if resources is not None and owner == os.getpid():
            resources.close()


# The one holder of this process; empty until the worker provides a builder.
process_resources = ProcessResources()


def stage_resources() -> StageResources:
    """This process's resources, for a Celery shell to hand to its stage."""
    return process_resources.open()

"""research-arm's exceptions, in one tree.

    ResearchArmError
    ├── InvalidRequest             the request is wrong; never retried
    ├── UpstreamError              arXiv, the LLM or the embeddings endpoint misbehaved
    │   ├── TransientUpstreamError timeouts, 429, 5xx, resets, bodies cut short: retried
    │   │                          with backoff
    │   ├── PermanentUpstreamError arXiv's error feed, other HTTP 4xx, bodies of the wrong shape
    │   └── UpstreamUnavailable    a transient error whose retries are spent
    ├── MemoryUnavailable          Qdrant failed; the job degrades, it is not lost
    ├── DeliveryLimitExceeded      a stage's message came back MAX_DELIVERIES times, its
    │                              worker having died each time; the job fails, no retry
    └── WorkCancelled              the worker is shutting down; the stage's message goes
                                   back to the queue (never a job's final error)

Celery stores a failure's class name as `exc_type`, so `InvalidRequest`,
`UpstreamUnavailable` and `DeliveryLimitExceeded` are part of the public
contract. Every argument is a plain JSON value so the result backend can
serialise the exception.
"""

from __future__ import annotations

from typing import Any


class ResearchArmError(Exception):
    """Base class of every error research-arm raises on purpose."""


class InvalidRequest(ResearchArmError):
    """The job's request failed validation.

    `errors` lists `{"field": "max_papers", "message": "..."}` entries; the
    message joins them so it reads well in Flower and in `result`.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, errors or [])
        self.message = message
        self.errors = errors or []

    def __str__(self) -> str:
        return self.message


class UpstreamError(ResearchArmError):
    """An upstream service (`service` names it: "arxiv", "llm", "embeddings") failed."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(service, message)
        self.service = service
        self.message = message

    def __str__(self) -> str:
        return f"{self.service}: {self.message}"


class TransientUpstreamError(UpstreamError):
    """Worth retrying. `retry_after` is the server's Retry-After in seconds, if it sent one."""

    def __init__(self, service: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(service, message)
        self.args = (service, message, retry_after)
        self.retry_after = retry_after


class PermanentUpstreamError(UpstreamError):
    """Retrying would get the same answer (bad query, error feed, malformed body)."""


class UpstreamUnavailable(UpstreamError):
    """A transient upstream failure that outlasted every retry."""


class MemoryUnavailable(ResearchArmError):
    """Qdrant could not be read or written; the job goes on without memory."""


class DeliveryLimitExceeded(ResearchArmError):
    """A stage's message arrived for the `deliveries`-th time, its worker having died each time.

    A message that kills whatever worker runs it (out of memory, a crash in a
    native library) would otherwise come back forever; this ends its job.
    `stage` names the task, e.g. "research.summarize". Build one with
    `for_stage`; the stored arguments are (message, stage, deliveries).
    """

    def __init__(self, message: str, stage: str, deliveries: int) -> None:
        super().__init__(message, stage, deliveries)
        self.message = message
        self.stage = stage
        self.deliveries = deliveries

    @classmethod
    def for_stage(cls, stage: str, deliveries: int) -> DeliveryLimitExceeded:
        return cls(
            f"{stage} was delivered {deliveries} times and its worker died during each "
            f"earlier delivery: the job is stopped (MAX_DELIVERIES={deliveries})",
            stage,
            deliveries,
        )

    def __str__(self) -> str:
        return self.message


class WorkCancelled(ResearchArmError):
    """The worker asked a running stage to stop (cold shutdown); another worker redoes it."""

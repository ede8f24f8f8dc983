"""What became of a batch of jobs after a fault: the figures of the reliability table.

A job *succeeded* (SUCCESS), *failed with a clear error* (FAILURE whose exc_type is
one of ours and says what went wrong), or is *lost* (not finished in time, or failed
with anything else). A paper is *duplicated* when memory holds it twice. A *re-run*
is a stage that ran to its end more than once for a job (at-least-once delivery after
a fault; harmless because every write is idempotent) and is reported, not hidden.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from qdrant_client import QdrantClient

from tasks.paper_index import point_id

CLEAR_ERRORS = frozenset(
    {"InvalidRequest", "UpstreamUnavailable", "PermanentUpstreamError", "DeliveryLimitExceeded"}
)
FINISHED = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
RESULT_KEY = "celery-task-meta-{}"


def job_metas(redis_url: str, job_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    """Each job's raw result meta as the backend stores it (None: nothing stored yet)."""
    with redis.Redis.from_url(redis_url) as client:
        raw = client.mget([RESULT_KEY.format(job_id) for job_id in job_ids]) if job_ids else []
    return {
        job_id: json.loads(value) if value is not None else None
        for job_id, value in zip(job_ids, raw, strict=True)
    }


def wait_for_jobs(
    redis_url: str, job_ids: Sequence[str], timeout: float, poll_seconds: float = 0.1
) -> JobOutcomes:
    """Poll the result backend until every job has finished or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        metas = job_metas(redis_url, job_ids)
        unfinished = [m for m in metas.values() if m is None or m["status"] not in FINISHED]
        if not unfinished or time.monotonic() > deadline:
            return JobOutcomes(metas)
        time.sleep(poll_seconds)


@dataclass(frozen=True)
class JobOutcomes:
    """The final (or last seen) meta of each job of a batch."""

    metas: dict[str, dict[str, Any] | None]

    def status(self, job_id: str) -> str:
        meta = self.metas[job_id]
        return "PENDING" if meta is None else str(meta["status"])

    def error(self, job_id: str) -> tuple[str, str]:
        """A failed job's exc_type and its message (the exception's text arguments, joined)."""
        meta = self.metas[job_id]
        assert meta is not None and meta["status"] == "FAILURE", meta
        result = meta["result"]
        arguments = result.get("exc_message")
        if not isinstance(arguments, list):
            arguments = [arguments]
        text = ": ".join(str(part) for part in arguments if isinstance(part, str))
        return str(result.get("exc_type")), text

    def error_arguments(self, job_id: str) -> list[Any]:
        """A failed job's exception arguments as stored (InvalidRequest: message, errors)."""
        meta = self.metas[job_id]
        assert meta is not None and meta["status"] == "FAILURE", meta
        arguments = meta["result"].get("exc_message")
        return arguments if isinstance(arguments, list) else [arguments]

    def response(self, job_id: str) -> dict[str, Any]:
        meta = self.metas[job_id]
        assert meta is not None and meta["status"] == "SUCCESS", meta
        result: dict[str, Any] = meta["result"]
        return result

    @property
    def succeeded(self) -> list[str]:
        return [job_id for job_id in self.metas if self.status(job_id) == "SUCCESS"]

    @property
    def failed_clearly(self) -> list[str]:
        failed = [job_id for job_id in self.metas if self.status(job_id) == "FAILURE"]
        return [
            job_id
            for job_id in failed
            if self.error(job_id)[0] in CLEAR_ERRORS and self.error(job_id)[1].strip()
        ]

    @property
    def lost(self) -> list[str]:
        accounted = set(self.succeeded) | set(self.failed_clearly)
        return [job_id for job_id in self.metas if job_id not in accounted]


def log_events(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The structured (JSON) lines of worker logs; Celery's banner and plain lines are skipped."""
    events = []
    for path in paths:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
    return events


def stage_runs(
    events: Iterable[dict[str, Any]], job_ids: Iterable[str]
) -> Counter[tuple[str, str]]:
    """How many times each (job, stage) ran to its end, from the workers' stage_finished lines."""
    wanted = set(job_ids)
    return Counter(
        (event["job_id"], event["stage"])
        for event in events
        if event.get("event") == "stage_finished" and event.get("job_id") in wanted
    )


def reruns(events: Iterable[dict[str, Any]], job_ids: Iterable[str]) -> int:
    return sum(count - 1 for count in stage_runs(events, job_ids).values() if count > 1)


def stored_duplicates(qdrant_path: Path, collection: str = "research_papers") -> int:
    """Papers stored more than once in an embedded Qdrant (open it only once its worker stopped).

    Also checks the invariant that makes duplicates impossible: each point's id is
    derived from its paper's arXiv id.
    """
    if not qdrant_path.exists():
        return 0
    qdrant = QdrantClient(path=str(qdrant_path))
    try:
        if not qdrant.collection_exists(collection):
            return 0
        records, offset = [], None
        while True:
            page, offset = qdrant.scroll(collection, limit=256, offset=offset, with_payload=True)
            records.extend(page)
            if offset is None:
                break
    finally:
        qdrant.close()
    ids = Counter(str(record.payload["arxiv_id"]) for record in records if record.payload)
    for record in records:
        assert record.payload is not None
        assert str(record.id) == point_id(str(record.payload["arxiv_id"])), record.id
    return sum(count - 1 for count in ids.values())


@dataclass(frozen=True)
class FaultRow:
    """One row of the reliability table in docs/reliability.md."""

    fault: str
    submitted: int
    succeeded: int
    failed_clearly: int
    lost: int
    duplicated: int
    reruns: int
    recovery_seconds: float | None
    recovery: str
    """What the recovery time measures, e.g. "kill -9 → every job done"."""
    note: str
    """Other measured facts worth a line in the table (e.g. the smallest arXiv gap)."""

    @classmethod
    def of(
        cls,
        fault: str,
        outcomes: JobOutcomes,
        *,
        duplicated: int = 0,
        reruns: int = 0,
        recovery_seconds: float | None = None,
        recovery: str = "",
        note: str = "",
    ) -> FaultRow:
        return cls(
            fault=fault,
            submitted=len(outcomes.metas),
            succeeded=len(outcomes.succeeded),
            failed_clearly=len(outcomes.failed_clearly),
            lost=len(outcomes.lost),
            duplicated=duplicated,
            reruns=reruns,
            recovery_seconds=None if recovery_seconds is None else round(recovery_seconds, 2),
            recovery=recovery,
            note=note,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

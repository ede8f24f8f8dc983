"""The Celery tasks of a snapshot ingest spread over the workers: thin shells around
`tasks.corpus_ingest`.

`research-arm corpus ingest --via-queue` reads the file, sends its lines in
chunks as `research.ingest_chunk` on the `research` queue, and once every
chunk is done, `research.ingest_commit` records the ingest's coverage.
Both are idempotent: a redelivered chunk writes the same points again.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from celery import Task, shared_task

from tasks.constants import TASK_INGEST_CHUNK, TASK_INGEST_COMMIT
from tasks.corpus_ingest import SnapshotFilter, ingest_lines
from tasks.corpus_status import write_status_file
from tasks.resources import stage_resources


def _filter(categories: list[str], since: str | None) -> SnapshotFilter:
    return SnapshotFilter(tuple(categories), date.fromisoformat(since) if since else None)


@shared_task(bind=True, name=TASK_INGEST_CHUNK, acks_late=True)
def ingest_chunk(
    self: Task, lines: list[str], first_line: int, categories: list[str], since: str | None
) -> dict[str, Any]:
    """Parse, filter, embed and upsert one chunk of snapshot lines; returns its IngestCounts."""
    counts = ingest_lines(lines, first_line, _filter(categories, since), stage_resources().index)
    return counts.model_dump(mode="json")


@shared_task(bind=True, name=TASK_INGEST_COMMIT)
def ingest_commit(
    self: Task, categories: list[str], since: str | None, watermark: str
) -> list[dict[str, Any]]:
    """Record a completed ingest's coverage in the index; returns the coverage now recorded.

    The worker's status file (what its sidecar reads) is refreshed too.
    """
    resources = stage_resources()
    settings = resources.settings
    entry = _filter(categories, since).coverage(date.fromisoformat(watermark))
    coverage = resources.index.record_coverage(entry)
    write_status_file(resources.index, settings.data_dir, settings.qdrant_store_path)
    return [e.model_dump(mode="json") for e in coverage]

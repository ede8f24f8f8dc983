"""What the index of papers holds, as a status file the health sidecar reads.

The sidecar must not open an embedded store a worker holds (it is locked to
one process): the worker and `research-arm corpus` write the status to
DATA_DIR/corpus.json instead, after every ingest and at worker start.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from pydantic import BaseModel, ConfigDict, Field

from tasks.corpus_coverage import CoverageEntry
from tasks.errors import MemoryUnavailable

if TYPE_CHECKING:
    from tasks.paper_index import PaperIndex

CORPUS_STATUS_FILE_NAME = "corpus.json"

log = structlog.get_logger("research_arm.corpus")


class CorpusStatus(BaseModel):
    """The index as `research-arm corpus status` and the health sidecar report it."""

    model_config = ConfigDict(extra="forbid")

    collection: str
    embedding_model: str | None = Field(description="The model the collection's vectors are of.")
    records: int = Field(ge=0, description="Papers the index holds (snapshot and job-stored).")
    watermark: date | None = Field(description="Newest first-submission date of a snapshot.")
    coverage: list[CoverageEntry] = Field(default_factory=list)
    bytes_on_disk: int | None = Field(description="Size of an embedded store; None on a server.")
    updated_at: datetime


def write_corpus_status(data_dir: Path, status: CorpusStatus) -> Path:
    """Write `status` where the sidecar reads it (atomically: a reader never sees half a file)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CORPUS_STATUS_FILE_NAME
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(status.model_dump_json(indent=2), encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_corpus_status(data_dir: Path) -> CorpusStatus | None:
    """The last status written in `data_dir`, or None if there is none (or it is unreadable)."""
    try:
        raw = (data_dir / CORPUS_STATUS_FILE_NAME).read_text(encoding="utf-8")
        return CorpusStatus.model_validate(json.loads(raw))
    except (OSError, ValueError):
        return None


def directory_bytes(path: Path) -> int:
    """Bytes of every file under `path` (0 if it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue  # removed while walking
    return total


def corpus_status(index: PaperIndex, store_path: Path | None) -> CorpusStatus:
    """What the index holds now; `store_path` is the embedded store's folder (None: a server).

    Raises:
        MemoryUnavailable: Qdrant failed (an embedded store held by a running
            worker among the causes).
    """
    coverage = index.coverage()
    return CorpusStatus(
        collection=index.collection,
        embedding_model=index.recorded_model(),
        records=index.count(),
        watermark=max((entry.watermark for entry in coverage), default=None),
        coverage=coverage,
        bytes_on_disk=(
            None
            if store_path is None
            else directory_bytes(store_path / "collection" / index.collection)
        ),
        updated_at=datetime.now(UTC),
    )


def write_status_file(
    index: PaperIndex, data_dir: Path, store_path: Path | None
) -> CorpusStatus | None:
    """Write the index's status where the sidecar reads it; None if Qdrant did not answer."""
    try:
        status = corpus_status(index, store_path)
    except MemoryUnavailable as exc:
        log.warning("corpus_status_unavailable", error=str(exc))
        return None
    write_corpus_status(data_dir, status)
    return status

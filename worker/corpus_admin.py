"""The index of papers seen from outside a job: opened on its own, checked, reported.

`research-arm corpus ingest` and `corpus status` open the index without the
rest of a worker's clients (no Redis needed); a worker checks at start-up
that the collection was written with its embedding model; both leave a
status file in DATA_DIR that the health sidecar reads instead of opening a
file-locked embedded store.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from tasks.corpus_status import CorpusStatus, write_status_file
from tasks.errors import MemoryUnavailable
from tasks.paper_index import EmbeddingModelMismatch, PaperIndex
from worker.resources import build_embedder, build_paper_index, openai_client_for
from worker.settings import Settings

log = structlog.get_logger("research_arm.corpus")


def open_standalone_index(settings: Settings) -> PaperIndex:
    """The index with the worker's embedder, for the CLI (Qdrant is opened on first use)."""
    openai_client = openai_client_for(settings) if settings.embeddings == "openai" else None
    embedder = build_embedder(settings, openai_client)
    return build_paper_index(settings, embedder, summary_model=None)


def store_path(settings: Settings) -> Path | None:
    """The embedded store's folder, whose size the status reports; None with a server."""
    return None if settings.qdrant_url else settings.effective_qdrant_path


def refresh_status_file(index: PaperIndex, settings: Settings) -> CorpusStatus | None:
    """Write the index's status where the sidecar reads it; None if Qdrant did not answer."""
    return write_status_file(index, settings.data_dir, store_path(settings))


def check_index_at_start(settings: Settings) -> None:
    """Refuse to start a worker whose embedding model differs from the collection's.

    Writes the status file on the way. Qdrant being unreachable is no reason
    to refuse: jobs degrade and the index comes back when Qdrant does.

    Raises:
        SystemExit: the collection holds another model's vectors (the message
            says what to do).
    """
    index = open_standalone_index(settings)
    try:
        index.verify_model()
        refresh_status_file(index, settings)
    except EmbeddingModelMismatch as exc:
        log.error("index_model_mismatch", error=str(exc))
        raise SystemExit(f"research-arm: refusing to start: {exc}") from exc
    except MemoryUnavailable as exc:
        log.warning("index_check_skipped", error=str(exc))
    finally:
        index.close()

"""Long-term memory of papers in Qdrant: recall before searching, store after summarising.

A point's id is uuid5 of the paper's version-less abs URL, so a redelivered or
repeated job overwrites the same point instead of storing the paper twice.
Vectors are kept under a vector name equal to the embedding model's name, and
the collection records its model: vectors of two models never mix.

Writes that fail while Qdrant is away are parked in a Redis list and written
by the next job that reaches Qdrant (`PendingWrites`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import redis
from qdrant_client import QdrantClient, models

from schemas.research import Paper
from tasks.constants import PENDING_STORE_KEY
from tasks.embeddings import Embedder
from tasks.errors import MemoryUnavailable

# How many recent queries and job ids a stored paper remembers.
MAX_FINDERS = 50
_PAPER_FIELDS = frozenset(Paper.model_fields) - {"relevance_score"}


def point_id(arxiv_id: str) -> str:
    """The deterministic Qdrant id of a paper (any version)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://arxiv.org/abs/{arxiv_id}"))


def _day_number(day: date) -> int:
    # Range filters on an integer work the same in embedded and served Qdrant.
    return day.year * 10000 + day.month * 100 + day.day


def _merge_recent(old: Sequence[str], new: str) -> list[str]:
    merged = [item for item in old if item != new] + [new]
    return merged[-MAX_FINDERS:]


class PaperMemory:
    """Recall and store papers in one Qdrant collection.

    `open_client` builds the Qdrant client; it is called lazily and again after
    a failure, so memory comes back by itself when Qdrant does. `summary_model`
    names the LLM whose stored summaries may be reused (None: no LLM).
    """

    def __init__(
        self,
        open_client: Callable[[], QdrantClient],
        collection: str,
        embedder: Embedder,
        *,
        summary_model: str | None,
    ) -> None:
        self._open_client = open_client
        self.collection = collection
        self.embedder = embedder
        self.summary_model = summary_model
        self._client: QdrantClient | None = None
        # The vector size the open client's collection was checked for: the
        # check costs two requests to a Qdrant server, so it runs once per client.
        self._checked_dimension: int | None = None
        # Embedded Qdrant is not safe for concurrent use from threads.
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
                self._checked_dimension = None

    def _ready_client(self, dimension: int) -> QdrantClient:
        """The open client, its collection made or checked for `dimension` once per client."""
        if self._client is None or self._checked_dimension != dimension:
            client = self._open_and_check(dimension)
            _commit_local_writes_without_fsync(client)
            self._checked_dimension = dimension
            return client
        return self._client

    def _open_and_check(self, dimension: int) -> QdrantClient:
        if self._client is None:
            try:
                self._client = self._open_client()
            except Exception as exc:  # any failure to open means memory is away
                raise MemoryUnavailable(f"cannot open Qdrant: {exc}") from exc
        client = self._client
        try:
            if not client.collection_exists(self.collection):
                client.create_collection(
                    self.collection,
                    vectors_config={
                        self.embedder.name: models.VectorParams(
                            size=dimension, distance=models.Distance.COSINE
                        )
                    },
                    metadata={"embedding_model": self.embedder.name},
                )
                return client
            vectors = client.get_collection(self.collection).config.params.vectors
        except Exception as exc:
            self._drop_client()
            raise MemoryUnavailable(f"Qdrant failed: {exc}") from exc
        params = vectors.get(self.embedder.name) if isinstance(vectors, dict) else None
        if params is None:
            known = ", ".join(vectors) if isinstance(vectors, dict) else "an unnamed vector"
            raise MemoryUnavailable(
                f"collection {self.collection!r} holds vectors of {known}, not of "
                f"{self.embedder.name}; set QDRANT_COLLECTION to a collection for this model"
            )
        if params.size != dimension:
            raise MemoryUnavailable(
                f"collection {self.collection!r} has {params.size}-dimensional vectors, "
                f"{self.embedder.name} gives {dimension}"
            )
        return client

    def _drop_client(self) -> None:
        self._checked_dimension = None
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def recall(
        self,
        query: str,
        *,
        limit: int,
        min_score: float,
        start_date: date | None = None,
        end_date: date | None = None,
        categories: Sequence[str] = (),
    ) -> list[Paper]:
        """Stored papers similar to `query`, within the date range and categories.

        A paper whose stored summary came from the configured LLM comes back
        with that summary and `summary_method` "cached"; others come back
        without a summary.
        """
        query_vector = self.embedder.embed([query])[0]
        conditions: list[models.Condition] = []
        if start_date or end_date:
            conditions.append(
                models.FieldCondition(
                    key="published_day",
                    range=models.Range(
                        gte=_day_number(start_date) if start_date else None,
                        lte=_day_number(end_date) if end_date else None,
                    ),
                )
            )
        if categories:
            conditions.append(
                models.FieldCondition(key="categories", match=models.MatchAny(any=list(categories)))
            )
        with self._lock:
            client = self._ready_client(len(query_vector))
            try:
                hits = client.query_points(
                    self.collection,
                    query=query_vector,
                    using=self.embedder.name,
                    query_filter=models.Filter(must=conditions) if conditions else None,
                    limit=limit,
                    score_threshold=min_score,
                    with_payload=True,
                ).points
            except Exception as exc:
                self._drop_client()
                raise MemoryUnavailable(f"Qdrant recall failed: {exc}") from exc
        return [self._paper_from_payload(hit.payload or {}) for hit in hits]

    def _paper_from_payload(self, payload: dict[str, Any]) -> Paper:
        fields = {key: value for key, value in payload.items() if key in _PAPER_FIELDS}
        reusable = (
            self.summary_model is not None
            and payload.get("summary_model") == self.summary_model
            and payload.get("summary_method") in ("llm", "cached")
            and payload.get("summary")
        )
        if reusable:
            fields["summary_method"] = "cached"
        else:
            fields["summary"] = None
            fields["summary_method"] = "none"
        return Paper.model_validate(fields)

    def store(self, papers: Sequence[Paper], *, query: str, job_id: str) -> int:
        """Upsert `papers` in one batch, remembering the query and job that found them.

        A stored summary is kept when the new record has none. Returns the
        number of points written.
        """
        if not papers:
            return 0
        vectors = self.embedder.embed([f"{p.title}\n{p.abstract}" for p in papers])
        ids = [point_id(p.arxiv_id) for p in papers]
        with self._lock:
            client = self._ready_client(len(vectors[0]))
            try:
                existing = {
                    str(record.id): record.payload or {}
                    for record in client.retrieve(self.collection, ids=ids, with_payload=True)
                }
                points = [
                    models.PointStruct(
                        id=pid,
                        vector={self.embedder.name: vector},
                        payload=self._payload(paper, existing.get(pid, {}), query, job_id),
                    )
                    for pid, paper, vector in zip(ids, papers, vectors, strict=True)
                ]
                client.upsert(self.collection, points=points, wait=True)
            except Exception as exc:
                self._drop_client()
                raise MemoryUnavailable(f"Qdrant write failed: {exc}") from exc
        return len(points)

    def _payload(
        self, paper: Paper, previous: dict[str, Any], query: str, job_id: str
    ) -> dict[str, Any]:
        payload = paper.model_dump(mode="json", exclude={"relevance_score"})
        if paper.summary is None and previous.get("summary"):
            for key in ("summary", "summary_method", "summary_model"):
                payload[key] = previous.get(key)
        else:
            payload["summary_model"] = (
                self.summary_model if paper.summary_method in ("llm", "cached") else None
            )
        payload["published_day"] = _day_number(paper.published_date)
        payload["embedding_model"] = self.embedder.name
        payload["queries"] = _merge_recent(previous.get("queries", []), query)
        payload["job_ids"] = _merge_recent(previous.get("job_ids", []), job_id)
        payload["stored_at"] = datetime.now(UTC).isoformat()
        return payload

    def count(self) -> int:
        """How many papers the collection holds (0 if it does not exist yet)."""
        with self._lock:
            if self._client is None:
                self._client = self._open_client()
            if not self._client.collection_exists(self.collection):
                return 0
            return self._client.count(self.collection, exact=True).count


def _commit_local_writes_without_fsync(client: QdrantClient) -> None:
    """Let embedded Qdrant's sqlite files commit without an fsync per point.

    qdrant-client's local mode commits every point of an upsert on its own,
    and each commit waits for the disk: most of the store stage's time (about
    1 ms a point; 23 ms -> 5 ms for 20 papers). In WAL mode with
    synchronous=NORMAL a commit survives a crash of the process and syncs at
    checkpoints; a power cut may lose the last writes, which the next job to
    find those papers writes again. The connections are private to
    qdrant-client, so anything not shaped as expected (a Qdrant server, a
    future version) is left alone.
    """
    local = getattr(client, "_client", None)
    for collection in getattr(local, "collections", {}).values():
        connection = getattr(getattr(collection, "storage", None), "storage", None)
        if isinstance(connection, sqlite3.Connection):
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                continue  # the defaults are slower, not wrong


class PendingWrites:
    """Store batches that failed, parked in Redis until Qdrant answers again.

    Each entry is one job's batch as JSON; entries survive worker restarts and
    are written by whichever worker next reaches Qdrant.
    """

    def __init__(self, redis_client: redis.Redis, key: str = PENDING_STORE_KEY) -> None:
        self.redis = redis_client
        self.key = key

    def park(self, papers: Sequence[Paper], *, query: str, job_id: str) -> None:
        entry = {
            "query": query,
            "job_id": job_id,
            "papers": [p.model_dump(mode="json") for p in papers],
        }
        self.redis.rpush(self.key, json.dumps(entry))

    def size(self) -> int:
        return int(self.redis.llen(self.key))

    def flush(self, memory: PaperMemory, max_batches: int = 20) -> int:
        """Write up to `max_batches` parked batches; returns the papers written.

        A batch is removed only after it was written; on failure it stays at
        the head of the list and MemoryUnavailable propagates.
        """
        written = 0
        for _ in range(max_batches):
            raw = self.redis.lindex(self.key, 0)
            if raw is None:
                break
            entry = json.loads(raw)
            papers = [Paper.model_validate(p) for p in entry["papers"]]
            written += memory.store(papers, query=entry["query"], job_id=entry["job_id"])
            # Remove exactly this entry: another worker may have flushed it already.
            self.redis.lrem(self.key, 1, raw)  # type: ignore[arg-type]  # bytes work too
        return written

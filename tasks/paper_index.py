"""The index of papers in Qdrant: the ingested arXiv snapshot and every paper a job stored.

One collection holds them all, one point per paper whatever brought it there:
the point's id is uuid5 of the paper's version-less abs URL, so re-ingesting,
a redelivered job, or a job storing a paper the snapshot already holds
overwrites the same point. The payload's `origin` lists where the paper came
from (`snapshot`, `job`); a job adds its query, job id and summary to it.

Each point has two vectors:

- a dense one, named after the embedding model (the collection records its
  model: vectors of two models never mix, and a worker of another model is
  refused with a message saying what to do);
- a sparse BM25 one (`bm25`), whose term weights come from `tasks.bm25_terms`
  and whose IDF Qdrant applies (`modifier=IDF`).

`recall` asks Qdrant's query API for both, filtered by date and category,
and fuses the two rankings with reciprocal rank fusion (RRF).

The collection's metadata also records what the snapshot ingests covered
(`tasks.corpus_coverage`). Writes that fail while Qdrant is away are parked
in Redis and written by the next job that reaches it (`PendingWrites`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

import redis
import structlog
from qdrant_client import QdrantClient, models

from schemas.research import Paper
from tasks.bm25_terms import SparseTerms, document_terms, query_terms
from tasks.constants import PENDING_STORE_KEY
from tasks.corpus_coverage import CoverageEntry
from tasks.embeddings import Embedder
from tasks.errors import MemoryUnavailable
from tasks.paper_vectors import PaperVectorCache, paper_text

log = structlog.get_logger("research_arm.paper_index")

SPARSE_VECTOR: Final = "bm25"
ORIGIN_SNAPSHOT: Final = "snapshot"
ORIGIN_JOB: Final = "job"
# How many recent queries and job ids a stored paper remembers.
MAX_FINDERS: Final = 50
# Payload keys a job adds to a paper; a snapshot ingest keeps them.
_JOB_KEYS: Final = ("summary", "summary_method", "summary_model", "queries", "job_ids")
_PAPER_FIELDS: Final = frozenset(Paper.model_fields) - {"relevance_score"}
_COVERAGE_KEY: Final = "coverage"


class EmbeddingModelMismatch(MemoryUnavailable):
    """The collection holds vectors of another model (or of another layout) than this worker's."""


def point_id(arxiv_id: str) -> str:
    """The deterministic Qdrant id of a paper (any version)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://arxiv.org/abs/{arxiv_id}"))


def day_number(day: date) -> int:
    """A date as the integer YYYYMMDD: range filters on it work alike embedded and served."""
    return day.year * 10000 + day.month * 100 + day.day


def _merge_recent(old: Sequence[str], new: str) -> list[str]:
    merged = [item for item in old if item != new] + [new]
    return merged[-MAX_FINDERS:]


def _sparse(terms: SparseTerms) -> models.SparseVector:
    return models.SparseVector(indices=terms.indices, values=terms.values)


@dataclass(frozen=True)
class ServerLayout:
    """How a collection is laid out on a Qdrant server, for a corpus of millions of papers.

    Original vectors stay on disk and int8 scalar-quantized copies in RAM (a
    quarter of the size), searched first and rescored from the originals; the
    HNSW graph stays in RAM. Embedded Qdrant ignores all of this.
    """

    quantile: float = 0.99
    hnsw_m: int = 16
    hnsw_ef_construct: int = 128


@dataclass(frozen=True)
class IndexHoldings:
    """What a job learns of the index before asking arXiv: its coverage and its size."""

    coverage: list[CoverageEntry]
    records: int


@dataclass(frozen=True)
class SnapshotWrite:
    """What writing a batch of snapshot papers did."""

    written: int  # points upserted (new papers, new versions, job-stored papers completed)
    unchanged: int  # the index held this version from a snapshot already: nothing embedded


class PaperIndex:
    """Hybrid retrieval and idempotent writes of papers in one Qdrant collection.

    `open_client` builds the Qdrant client; it is called lazily and again after
    a failure, so the index comes back by itself when Qdrant does.
    `summary_model` names the LLM whose stored summaries may be reused (None:
    no LLM). `server_layout`, for a Qdrant server, sets how a new collection
    is stored (None: Qdrant's defaults, as embedded Qdrant uses).
    `vector_cache` holds vectors the rank stage computed, perhaps in another
    worker process: a paper found there is not embedded again to be stored.
    """

    def __init__(
        self,
        open_client: Callable[[], QdrantClient],
        collection: str,
        embedder: Embedder,
        *,
        summary_model: str | None,
        server_layout: ServerLayout | None = None,
        vector_cache: PaperVectorCache | None = None,
    ) -> None:
        self._open_client = open_client
        self._vector_cache = vector_cache
        self.collection = collection
        self.embedder = embedder
        self.summary_model = summary_model
        self.server_layout = server_layout
        self._client: QdrantClient | None = None
        # The vector size the open client's collection was checked for: the
        # check costs two requests to a Qdrant server, so it runs once per client.
        self._checked_dimension: int | None = None
        # Embedded Qdrant is not safe for concurrent use from threads.
        self._lock = threading.Lock()

    # --- the client and the collection ---------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._drop_client()

    def _drop_client(self) -> None:
        self._checked_dimension = None
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    @contextmanager
    def _failing_as(self, failure: str) -> Iterator[None]:
        """Any error of Qdrant's in the block is MemoryUnavailable; the client is dropped."""
        try:
            yield
        except Exception as exc:
            self._drop_client()
            raise MemoryUnavailable(f"{failure}: {exc}") from exc

    def _open(self) -> QdrantClient:
        if self._client is None:
            try:
                self._client = self._open_client()
            except Exception as exc:  # any failure to open means the index is away
                raise MemoryUnavailable(f"cannot open Qdrant: {exc}") from exc
        return self._client

    def _ready_client(self, dimension: int) -> QdrantClient:
        """The open client, its collection made or checked for `dimension` once per client."""
        if self._client is not None and self._checked_dimension == dimension:
            return self._client
        client = self._open()
        with self._failing_as("Qdrant failed"):
            exists = client.collection_exists(self.collection)
            if not exists:
                self._create_collection(client, dimension)
            info = client.get_collection(self.collection) if exists else None
        if info is not None:
            self._check_layout(info, dimension)
        _commit_local_writes_without_fsync(client)
        self._checked_dimension = dimension
        return client

    def _create_collection(self, client: QdrantClient, dimension: int) -> None:
        layout = self.server_layout
        client.create_collection(
            self.collection,
            vectors_config={
                self.embedder.name: models.VectorParams(
                    size=dimension,
                    distance=models.Distance.COSINE,
                    on_disk=True if layout else None,
                )
            },
            sparse_vectors_config={
                SPARSE_VECTOR: models.SparseVectorParams(
                    modifier=models.Modifier.IDF,
                    index=models.SparseIndexParams(on_disk=True) if layout else None,
                )
            },
            hnsw_config=(
                models.HnswConfigDiff(m=layout.hnsw_m, ef_construct=layout.hnsw_ef_construct)
                if layout
                else None
            ),
            quantization_config=(
                models.ScalarQuantization(
                    scalar=models.ScalarQuantizationConfig(
                        type=models.ScalarType.INT8, quantile=layout.quantile, always_ram=True
                    )
                )
                if layout
                else None
            ),
            on_disk_payload=True if layout else None,
            metadata={"embedding_model": self.embedder.name},
        )
        if layout:
            # Filtered search needs payload indexes on a server; embedded Qdrant
            # has none (it warns that they do nothing).
            client.create_payload_index(
                self.collection, "published_day", models.PayloadSchemaType.INTEGER
            )
            client.create_payload_index(
                self.collection, "categories", models.PayloadSchemaType.KEYWORD
            )

    def _check_layout(self, info: models.CollectionInfo, dimension: int | None) -> None:
        """Refuse a collection of another model, size or layout, saying what to do about it."""
        params = info.config.params
        vectors = params.vectors
        names = list(vectors) if isinstance(vectors, dict) else []
        recorded = (info.config.metadata or {}).get("embedding_model")
        model = recorded or (", ".join(names) if names else "an unnamed vector")
        if self.embedder.name not in names:
            raise EmbeddingModelMismatch(
                f"collection {self.collection!r} holds vectors of {model}, but this worker "
                f"embeds with {self.embedder.name}: vectors of two models cannot be compared. "
                f"Either configure {model} again (EMBEDDINGS / EMBEDDING_MODEL), or set "
                f"QDRANT_COLLECTION to a new collection for {self.embedder.name} and ingest "
                "the corpus into it again"
            )
        size = vectors[self.embedder.name].size if isinstance(vectors, dict) else None
        if dimension is not None and size != dimension:
            raise EmbeddingModelMismatch(
                f"collection {self.collection!r} has {size}-dimensional vectors, "
                f"{self.embedder.name} gives {dimension}: set QDRANT_COLLECTION to a new collection"
            )
        if SPARSE_VECTOR not in (params.sparse_vectors or {}):
            raise EmbeddingModelMismatch(
                f"collection {self.collection!r} has no BM25 vector (it predates the hybrid "
                "index): set QDRANT_COLLECTION to a new collection; papers stored by jobs "
                "come back through arXiv, and `research-arm corpus ingest` fills the new one"
            )

    def verify_model(self) -> None:
        """At a worker's start: refuse a collection of another embedding model.

        Raises:
            EmbeddingModelMismatch: the collection exists and holds another
                model's vectors (the message says what to do).
            MemoryUnavailable: Qdrant cannot be reached (the worker may start:
                jobs degrade and the index comes back when Qdrant does).
        """
        with self._lock:
            client = self._open()
            with self._failing_as("Qdrant failed"):
                if not client.collection_exists(self.collection):
                    return
                info = client.get_collection(self.collection)
            self._check_layout(info, None)

    # --- recall --------------------------------------------------------------------

    def recall(
        self,
        query: str,
        *,
        query_vector: Sequence[float] | None = None,
        limit: int,
        min_similarity: float,
        start_date: date | None = None,
        end_date: date | None = None,
        categories: Sequence[str] = (),
    ) -> list[Paper]:
        """Papers for `query` by dense + BM25 retrieval fused with RRF, best first.

        Args:
            query: the user's text, embedded and split into BM25 terms.
            query_vector: the query's embedding, when the caller has it already.
            limit: how many papers to return at most.
            min_similarity: dense hits less similar than this (cosine) are left
                out; BM25 hits need at least one query term.
            start_date, end_date: bound the first-submission date, inclusive.
            categories: keep papers in any of these arXiv categories.

        A paper whose stored summary came from the configured LLM comes back
        with that summary and `summary_method` "cached"; others come back
        without a summary.
        """
        if query_vector is None:
            query_vector = self.embedder.embed([query])[0]
        sparse = query_terms(query)
        query_filter = _recall_filter(start_date, end_date, categories)
        # Each side offers more than the final list, so that a paper ranked
        # fairly by both beats one ranked first by one side only.
        depth = max(2 * limit, 20)
        prefetch = [
            models.Prefetch(
                query=query_vector,
                using=self.embedder.name,
                filter=query_filter,
                limit=depth,
                score_threshold=min_similarity,
            )
        ]
        if sparse.indices:
            prefetch.append(
                models.Prefetch(
                    query=_sparse(sparse), using=SPARSE_VECTOR, filter=query_filter, limit=depth
                )
            )
        with self._lock:
            client = self._ready_client(len(query_vector))
            with self._failing_as("Qdrant recall failed"):
                hits = client.query_points(
                    self.collection,
                    prefetch=prefetch,
                    query=models.FusionQuery(fusion=models.Fusion.RRF),
                    limit=limit,
                    with_payload=True,
                ).points
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

    def stored_vectors(self, papers: Sequence[Paper]) -> dict[str, list[float]]:
        """The stored dense vector of each paper the index holds in the same version.

        Keys are arxiv ids; papers not in the index, or stored in another
        version (whose title or abstract may differ), are left out. The
        vectors embed `paper_text(paper)`.

        Qdrant failing is not an error here: the vectors are then cached or
        computed, and the job goes on (the recall and store stages report it).
        """
        if not papers:
            return {}
        wanted = {point_id(p.arxiv_id): p for p in papers}
        with self._lock:
            try:
                client = self._open()
                if not client.collection_exists(self.collection):
                    return {}
                records = client.retrieve(
                    self.collection,
                    ids=list(wanted),
                    with_payload=["arxiv_id", "version"],
                    with_vectors=[self.embedder.name],
                )
            except Exception as exc:  # any failure: Qdrant is away, vectors come from elsewhere
                self._drop_client()
                log.warning("stored_vectors_unavailable", error=str(exc))
                return {}
        found: dict[str, list[float]] = {}
        for record in records:
            paper = wanted.get(str(record.id))
            vector = _dense_vector(record, self.embedder.name)
            payload = record.payload or {}
            if paper is not None and payload.get("version") == paper.version and vector:
                found[paper.arxiv_id] = vector
        return found

    # --- writes --------------------------------------------------------------------

    def store(self, papers: Sequence[Paper], *, query: str, job_id: str) -> int:
        """Upsert a job's `papers` in one batch, remembering the query and job that found them.

        A stored summary is kept when the new record has none; a paper the
        index holds in the same version keeps its vectors (nothing is embedded
        again). Returns the number of points written.
        """
        if not papers:
            return 0

        def payload(paper: Paper, previous: dict[str, Any]) -> dict[str, Any]:
            return self._job_payload(paper, previous, query, job_id)

        return self._upsert(papers, payload, reuse_unchanged=False).written

    def store_snapshot(self, papers: Sequence[Paper]) -> SnapshotWrite:
        """Upsert papers read from an arXiv metadata snapshot, in one batch.

        A paper the index already holds from a snapshot in the same version is
        left alone; one a job stored keeps its summary, queries and job ids.
        Nothing already embedded for the same version is embedded again.
        """
        return self._upsert(papers, self._snapshot_payload, reuse_unchanged=True)

    def _upsert(
        self,
        papers: Sequence[Paper],
        payload_of: Callable[[Paper, dict[str, Any]], dict[str, Any]],
        *,
        reuse_unchanged: bool,
    ) -> SnapshotWrite:
        if not papers:
            return SnapshotWrite(0, 0)
        # One point per paper even if a batch names one twice: the last wins.
        by_id = {point_id(p.arxiv_id): p for p in papers}
        existing = self._existing(list(by_id))
        to_write: dict[str, Paper] = {}
        unchanged = 0
        for pid, paper in by_id.items():
            previous, _ = existing.get(pid, ({}, None))
            same_version = previous.get("version") == paper.version
            if reuse_unchanged and same_version and ORIGIN_SNAPSHOT in previous.get("origin", []):
                unchanged += 1
                continue
            to_write[pid] = paper
        if not to_write:
            return SnapshotWrite(0, unchanged)
        # A paper stored in the same version keeps its dense vector: the
        # embedding model is the costly part of a write.
        reused: dict[str, list[float]] = {}
        for pid, paper in to_write.items():
            previous, vector = existing.get(pid, ({}, None))
            if vector is not None and previous.get("version") == paper.version:
                reused[pid] = vector
        dense = {
            **reused,
            **self._new_vectors([p for pid, p in to_write.items() if pid not in reused]),
        }
        points = [
            models.PointStruct(
                id=pid,
                vector={
                    self.embedder.name: dense[pid],
                    SPARSE_VECTOR: _sparse(document_terms(paper.title, paper.abstract)),
                },
                payload=payload_of(paper, existing.get(pid, ({}, None))[0]),
            )
            for pid, paper in to_write.items()
        ]
        dimension = len(next(iter(dense.values())))
        with self._lock:
            client = self._ready_client(dimension)
            with self._failing_as("Qdrant write failed"):
                client.upsert(self.collection, points=points, wait=True)
        return SnapshotWrite(len(points), unchanged)

    def _new_vectors(self, papers: Sequence[Paper]) -> dict[str, list[float]]:
        """Dense vectors of papers the index does not hold yet, by point id: cached, or embedded."""
        cached = self._vector_cache.get_many(papers) if self._vector_cache and papers else {}
        to_embed = [paper for paper in papers if paper.arxiv_id not in cached]
        embedded = (
            self.embedder.embed([paper_text(paper) for paper in to_embed]) if to_embed else []
        )
        vectors = {**cached, **dict(zip((p.arxiv_id for p in to_embed), embedded, strict=True))}
        return {point_id(paper.arxiv_id): vectors[paper.arxiv_id] for paper in papers}

    def _existing(self, ids: list[str]) -> dict[str, tuple[dict[str, Any], list[float] | None]]:
        """Payload and dense vector of each id the collection holds already."""
        with self._lock:
            client = self._open()
            with self._failing_as("Qdrant read failed"):
                if not client.collection_exists(self.collection):
                    return {}
                records = client.retrieve(
                    self.collection,
                    ids=ids,
                    with_payload=True,
                    with_vectors=[self.embedder.name],
                )
        found: dict[str, tuple[dict[str, Any], list[float] | None]] = {}
        for record in records:
            dense = _dense_vector(record, self.embedder.name)
            found[str(record.id)] = (record.payload or {}, dense)
        return found

    def _base_payload(self, paper: Paper, previous: dict[str, Any], origin: str) -> dict[str, Any]:
        payload = paper.model_dump(mode="json", exclude={"relevance_score"})
        payload["published_day"] = day_number(paper.published_date)
        payload["embedding_model"] = self.embedder.name
        # Points written before `origin` existed were all stored by jobs.
        payload["origin"] = sorted(
            {*previous.get("origin", [ORIGIN_JOB] if previous else []), origin}
        )
        payload["stored_at"] = datetime.now(UTC).isoformat()
        return payload

    def _job_payload(
        self, paper: Paper, previous: dict[str, Any], query: str, job_id: str
    ) -> dict[str, Any]:
        payload = self._base_payload(paper, previous, ORIGIN_JOB)
        if paper.summary is None and previous.get("summary"):
            for key in ("summary", "summary_method", "summary_model"):
                payload[key] = previous.get(key)
        else:
            payload["summary_model"] = (
                self.summary_model if paper.summary_method in ("llm", "cached") else None
            )
        payload["queries"] = _merge_recent(previous.get("queries", []), query)
        payload["job_ids"] = _merge_recent(previous.get("job_ids", []), job_id)
        return payload

    def _snapshot_payload(self, paper: Paper, previous: dict[str, Any]) -> dict[str, Any]:
        payload = self._base_payload(paper, previous, ORIGIN_SNAPSHOT)
        for key in _JOB_KEYS:
            if key in previous:
                payload[key] = previous[key]
        return payload

    # --- what the index holds --------------------------------------------------------

    def count(self) -> int:
        """How many papers the collection holds (0 if it does not exist yet).

        Raises:
            MemoryUnavailable: Qdrant failed.
        """
        with self._lock:
            client = self._open()
            with self._failing_as("Qdrant count failed"):
                if not client.collection_exists(self.collection):
                    return 0
                return client.count(self.collection, exact=True).count

    def coverage(self) -> list[CoverageEntry]:
        """The completed snapshot ingests recorded in the collection (empty: none).

        Raises:
            MemoryUnavailable: Qdrant failed.
        """
        return self.holdings().coverage

    def holdings(self) -> IndexHoldings:
        """The coverage and the number of papers, from one read of the collection's info.

        The count is Qdrant's `points_count`: exact in the embedded store, kept
        up to date by a server without counting (`count()` counts exactly).

        Raises:
            MemoryUnavailable: Qdrant failed.
        """
        with self._lock:
            client = self._open()
            with self._failing_as("Qdrant failed"):
                if not client.collection_exists(self.collection):
                    return IndexHoldings(coverage=[], records=0)
                info = client.get_collection(self.collection)
        metadata = info.config.metadata or {}
        coverage = [
            CoverageEntry.model_validate(entry) for entry in metadata.get(_COVERAGE_KEY, [])
        ]
        return IndexHoldings(coverage=coverage, records=info.points_count or 0)

    def record_coverage(self, entry: CoverageEntry) -> list[CoverageEntry]:
        """Record a completed ingest (call it once every record of the ingest is written).

        An ingest of the same categories and start date as a recorded one
        replaces it if its watermark is newer.

        Returns the coverage now recorded.

        Raises:
            MemoryUnavailable: Qdrant failed, or the collection does not exist
                (nothing was ingested).
        """
        key = (entry.categories, entry.since)
        current = self.coverage()
        same = [old for old in current if (old.categories, old.since) == key]
        newest = max([entry, *same], key=lambda e: e.watermark)
        entries = [*(old for old in current if (old.categories, old.since) != key), newest]
        with self._lock:
            client = self._open()
            with self._failing_as("Qdrant failed"):
                client.update_collection(
                    self.collection,
                    metadata={_COVERAGE_KEY: [e.model_dump(mode="json") for e in entries]},
                )
        return entries

    def recorded_model(self) -> str | None:
        """The embedding model the collection was created for (None: no collection yet)."""
        with self._lock:
            client = self._open()
            with self._failing_as("Qdrant failed"):
                if not client.collection_exists(self.collection):
                    return None
                info = client.get_collection(self.collection)
        recorded = (info.config.metadata or {}).get("embedding_model")
        return str(recorded) if recorded else None


def _dense_vector(record: models.Record, name: str) -> list[float] | None:
    """The record's dense vector called `name`, or None if it has none."""
    vectors = record.vector if isinstance(record.vector, dict) else {}
    vector = vectors.get(name)
    if isinstance(vector, list) and vector and isinstance(vector[0], float | int):
        return [float(x) for x in vector]
    return None


def _recall_filter(
    start_date: date | None, end_date: date | None, categories: Sequence[str]
) -> models.Filter | None:
    conditions: list[models.Condition] = []
    if start_date or end_date:
        conditions.append(
            models.FieldCondition(
                key="published_day",
                range=models.Range(
                    gte=day_number(start_date) if start_date else None,
                    lte=day_number(end_date) if end_date else None,
                ),
            )
        )
    if categories:
        conditions.append(
            models.FieldCondition(key="categories", match=models.MatchAny(any=list(categories)))
        )
    return models.Filter(must=conditions) if conditions else None


def _commit_local_writes_without_fsync(client: QdrantClient) -> None:
    """Let embedded Qdrant's sqlite files commit without an fsync per point.

    qdrant-client's local mode commits every point of an upsert on its own,
    and each commit waits for the disk: most of the store stage's time
    (docs/performance.md has the figures). In WAL mode with
    synchronous=NORMAL a commit survives a crash of the process and syncs at
    checkpoints; a power cut may lose the last writes, which the next job to
    find those papers (or the next ingest from its checkpoint) writes again.
    The connections are private to qdrant-client, so anything not shaped as
    expected (a Qdrant server, a future version) is left alone.
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

    def flush(self, index: PaperIndex, max_batches: int = 20) -> int:
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
            written += index.store(papers, query=entry["query"], job_id=entry["job_id"])
            # Remove exactly this entry: another worker may have flushed it already.
            self.redis.lrem(self.key, 1, raw)  # type: ignore[arg-type]  # bytes work too
        return written

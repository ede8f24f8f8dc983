"""Paper vectors computed once per model, ever: from the store, a Redis cache, or the model.

Embedding a title and abstract with a transformer costs tens of milliseconds
of CPU, so a paper's vector is looked up before it is computed, in this order
(`PaperVectorLookup.vectors_for`):

1. a `StoredVectorSource`: the paper index that already holds the paper with a
   vector of the same model (the Qdrant index implements it);
2. `PaperVectorCache`: Redis, keyed by (model, arxiv_id, version), each vector
   as little-endian float32 bytes (1.5 KB for 384 dimensions), with a TTL;
3. the embedder, in one batched call for everything still missing; those
   vectors then go into the cache.

A paper's text for its vector is `paper_text` (title, newline, abstract), the
same text the index stores it under: one vector per paper, whoever computes it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import redis
from numpy.typing import NDArray

from schemas.research import Paper
from tasks.constants import PAPER_VECTOR_PREFIX
from tasks.embeddings import Embedder, EmbeddingBatch

# float32 halves the bytes of float64 and keeps far more precision than a
# cosine of two MiniLM vectors needs (differences of 1e-7).
_DTYPE = np.dtype("<f4")


def paper_text(paper: Paper) -> str:
    """The text a paper's vector is computed from: its title, a newline, its abstract."""
    return f"{paper.title}\n{paper.abstract}"


class StoredVectorSource(Protocol):
    """Something that already holds papers' vectors of the embedder's model (the paper index)."""

    def stored_vectors(self, papers: Sequence[Paper]) -> dict[str, list[float]]:
        """The stored vector of each paper it holds in the same version, by arxiv_id.

        Papers it does not hold, holds in another version, or holds with
        another model's vector are left out; an unreachable store returns {}
        (the vectors are then cached or computed, the job goes on).
        """
        ...


class PaperVectorCache:
    """Paper vectors in Redis, keyed by model, arxiv_id and version, expiring after a TTL."""

    def __init__(
        self,
        redis_client: redis.Redis,
        model: str,
        ttl_seconds: int,
        prefix: str = PAPER_VECTOR_PREFIX,
    ) -> None:
        """`model` names the vector space (the embedder's name); a TTL of 0 disables the cache."""
        self._redis = redis_client
        self._model = model
        self._ttl = ttl_seconds
        self._prefix = prefix

    def key(self, paper: Paper) -> str:
        return f"{self._prefix}{self._model}:{paper.arxiv_id}v{paper.version}"

    def get_many(self, papers: Sequence[Paper]) -> dict[str, list[float]]:
        """The cached vectors of `papers`, by arxiv_id (one MGET)."""
        if not papers or self._ttl == 0:
            return {}
        values = self._redis.mget([self.key(paper) for paper in papers])
        found: dict[str, list[float]] = {}
        for paper, value in zip(papers, values, strict=True):
            if isinstance(value, bytes) and value and len(value) % _DTYPE.itemsize == 0:
                vector: list[float] = np.frombuffer(value, dtype=_DTYPE).astype(float).tolist()
                found[paper.arxiv_id] = vector
        return found

    def put_many(self, papers: Sequence[Paper], vectors: Mapping[str, Sequence[float]]) -> None:
        """Cache the vector of each paper in `vectors` (by arxiv_id), in one round trip."""
        if self._ttl == 0:
            return
        pipeline = self._redis.pipeline(transaction=False)
        for paper in papers:
            vector = vectors.get(paper.arxiv_id)
            if vector is not None:
                blob = np.asarray(vector, dtype=_DTYPE).tobytes()
                pipeline.set(self.key(paper), blob, ex=self._ttl)
        pipeline.execute()


@dataclass(frozen=True)
class PaperVectors:
    """The vectors found or computed for some papers, and where they came from.

    `vectors` maps arxiv_id to a unit vector; `tokens` counts what computing
    `embedded` of them cost the model (for the job's usage ledger).
    """

    vectors: dict[str, list[float]]
    from_store: int
    from_cache: int
    embedded: int
    tokens: int


class PaperVectorLookup:
    """Finds each paper's vector in the store, then the cache, and embeds only the rest."""

    def __init__(
        self,
        embedder: Embedder,
        cache: PaperVectorCache | None,
        store: StoredVectorSource | None = None,
    ) -> None:
        """`cache` and `store` are optional; without both, every paper is embedded.

        A `MemoizingEmbedder` is also told the vectors found in the store and
        the cache, so a later `embed()` of the same paper's text (the index
        storing it) reuses them.
        """
        self.embedder = embedder
        self._cache = cache
        self._store = store

    def known_vectors(self, papers: Sequence[Paper]) -> PaperVectors:
        """The vectors the store and the cache hold for `papers`; nothing is embedded."""
        found: dict[str, list[float]] = {}
        from_store = 0
        if self._store is not None and papers:
            found.update(self._store.stored_vectors(papers))
            from_store = len(found)
        missing = [paper for paper in papers if paper.arxiv_id not in found]
        from_cache = self._cache.get_many(missing) if self._cache is not None else {}
        found.update(from_cache)
        if found and isinstance(self.embedder, MemoizingEmbedder):
            known = [paper for paper in papers if paper.arxiv_id in found]
            self.embedder.remember(
                [paper_text(paper) for paper in known], [found[p.arxiv_id] for p in known]
            )
        return PaperVectors(found, from_store, len(from_cache), embedded=0, tokens=0)

    def vectors_for(self, papers: Sequence[Paper], embeddable: int | None = None) -> PaperVectors:
        """Each paper's vector: stored, cached, or embedded now in one batch and cached.

        `papers` are distinct (by arxiv_id). With `embeddable`, only papers among
        the first `embeddable` are embedded; the others get a vector only if
        one is stored or cached (one look-up serves them all).
        """
        known = self.known_vectors(papers)
        missing = [paper for paper in papers[:embeddable] if paper.arxiv_id not in known.vectors]
        if not missing:
            return known
        batch = self.embedder.embed_with_usage([paper_text(paper) for paper in missing])
        if len(batch.vectors) != len(missing):
            raise ValueError(
                f"embedder {self.embedder.name!r} returned {len(batch.vectors)} vectors for"
                f" {len(missing)} texts"
            )
        fresh = {
            paper.arxiv_id: vector for paper, vector in zip(missing, batch.vectors, strict=True)
        }
        if self._cache is not None:
            self._cache.put_many(missing, fresh)
        return PaperVectors(
            vectors={**known.vectors, **fresh},
            from_store=known.from_store,
            from_cache=known.from_cache,
            embedded=len(fresh),
            tokens=batch.tokens,
        )


class MemoizingEmbedder:
    """An embedder that remembers the vectors of the last `capacity` texts of this process.

    The stages of one job run one after another, in the same process under the
    thread pool: the query recall embedded is the query rank scores with, and
    the papers rank looked up are the papers store writes. Remembering them
    spares a second run of the model. Vectors are kept as float32 arrays
    (1.5 KB each at 384 dimensions), the least recently used dropped first.
    """

    def __init__(self, inner: Embedder, capacity: int = 2048) -> None:
        """`inner` computes what is not remembered; `capacity` bounds the texts kept."""
        self._inner = inner
        self._capacity = capacity
        self._vectors: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._inner.name

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_with_usage(texts).vectors

    def embed_with_usage(self, texts: Sequence[str]) -> EmbeddingBatch:
        """Remembered vectors, and one call of the inner embedder for the rest.

        `tokens` counts only what the inner embedder read in this call.
        """
        with self._lock:
            found = {text: self._touch(text) for text in dict.fromkeys(texts)}
        missing = [text for text, vector in found.items() if vector is None]
        tokens = 0
        if missing:
            batch = self._inner.embed_with_usage(missing)
            tokens = batch.tokens
            self.remember(missing, batch.vectors)
            for text, fresh in zip(missing, batch.vectors, strict=True):
                found[text] = np.asarray(fresh, dtype=np.float32)
        vectors: list[list[float]] = []
        for text in texts:
            remembered = found[text]
            assert remembered is not None  # every missing text was embedded just above
            vectors.append(remembered.astype(float).tolist())
        return EmbeddingBatch(vectors=vectors, tokens=tokens)

    def remember(self, texts: Sequence[str], vectors: Sequence[Sequence[float]]) -> None:
        """Keep these texts' vectors (computed here, or found in a store or cache)."""
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                self._vectors[text] = np.asarray(vector, dtype=np.float32)
                self._vectors.move_to_end(text)
            while len(self._vectors) > self._capacity:
                self._vectors.popitem(last=False)

    def _touch(self, text: str) -> NDArray[np.float32] | None:
        vector = self._vectors.get(text)
        if vector is not None:
            self._vectors.move_to_end(text)
        return vector

"""A paper is embedded once per model: store, then Redis cache, then the model (fakeredis)."""

from __future__ import annotations

from collections.abc import Sequence

import fakeredis
import numpy as np
import pytest
from qdrant_client import QdrantClient

from schemas.research import Paper, ResearchRequest
from tasks.embeddings import EmbeddingBatch, HashingEmbedder
from tasks.job import JobState
from tasks.paper_index import PaperIndex
from tasks.paper_vectors import (
    MemoizingEmbedder,
    PaperVectorCache,
    PaperVectorLookup,
    paper_text,
)
from tasks.relevance import LEXICAL_WEIGHT
from tasks.stages.rank import rank as rank_stage
from tests.unit.factories import make_paper


class CountingEmbedder:
    """The hashing embedder, keeping the texts of every call and charging a token per word."""

    def __init__(self, name: str = "counting") -> None:
        self._inner = HashingEmbedder()
        self._name = name
        self.calls: list[list[str]] = []

    @property
    def name(self) -> str:
        return self._name

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_with_usage(texts).vectors

    def embed_with_usage(self, texts: Sequence[str]) -> EmbeddingBatch:
        self.calls.append(list(texts))
        tokens = sum(len(text.split()) for text in texts)
        return EmbeddingBatch(vectors=self._inner.embed(texts), tokens=tokens)


class FixedStore:
    """A paper index holding given vectors (what the Qdrant index will serve)."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def stored_vectors(self, papers: Sequence[Paper]) -> dict[str, list[float]]:
        return {p.arxiv_id: self.vectors[p.arxiv_id] for p in papers if p.arxiv_id in self.vectors}


def papers(count: int) -> list[Paper]:
    topics = ["graph neural networks", "protein folding", "text to sql", "galaxy surveys"]
    return [
        make_paper(
            f"2401.{index:05d}",
            title=f"On {topics[index % len(topics)]} number {index}",
            abstract=f"A study of {topics[index % len(topics)]}, part {index}.",
        )
        for index in range(1, count + 1)
    ]


@pytest.fixture
def redis_client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_cached_vectors_come_back_as_float32_under_model_id_and_version(
    redis_client: fakeredis.FakeRedis,
) -> None:
    cache = PaperVectorCache(redis_client, "all-MiniLM-L6-v2", ttl_seconds=60)
    paper = make_paper("2401.00001")
    vector = [0.6, 0.8, 0.0]

    cache.put_many([paper], {paper.arxiv_id: vector})

    assert cache.get_many([paper]) == {paper.arxiv_id: pytest.approx(vector, abs=1e-7)}
    assert redis_client.get("research-arm:paper-vector:all-MiniLM-L6-v2:2401.00001v1") == (
        np.asarray(vector, dtype="<f4").tobytes()
    )
    assert 0 < redis_client.ttl(cache.key(paper)) <= 60
    # Another version or another model is another vector.
    assert cache.get_many([make_paper("2401.00001", version=2)]) == {}
    assert PaperVectorCache(redis_client, "other-model", 60).get_many([paper]) == {}


def test_a_paper_is_embedded_once_then_served_from_the_cache(
    redis_client: fakeredis.FakeRedis,
) -> None:
    embedder = CountingEmbedder()
    lookup = PaperVectorLookup(embedder, PaperVectorCache(redis_client, embedder.name, 3600))
    candidates = papers(3)

    first = lookup.vectors_for(candidates)
    again = lookup.vectors_for(candidates)

    assert embedder.calls == [[paper_text(p) for p in candidates]]
    assert (first.embedded, first.from_cache, again.embedded, again.from_cache) == (3, 0, 0, 3)
    assert first.tokens > 0 and again.tokens == 0
    for paper in candidates:
        assert again.vectors[paper.arxiv_id] == pytest.approx(
            first.vectors[paper.arxiv_id], abs=1e-6
        )


def test_the_store_comes_first_then_the_cache_then_one_batch_for_the_rest(
    redis_client: fakeredis.FakeRedis,
) -> None:
    embedder = CountingEmbedder()
    cache = PaperVectorCache(redis_client, embedder.name, 3600)
    stored, cached, fresh = papers(3)
    cache.put_many([cached], {cached.arxiv_id: [1.0, 0.0]})
    lookup = PaperVectorLookup(embedder, cache, FixedStore({stored.arxiv_id: [0.0, 1.0]}))

    found = lookup.vectors_for([stored, cached, fresh])

    assert embedder.calls == [[paper_text(fresh)]]
    assert (found.from_store, found.from_cache, found.embedded) == (1, 1, 1)
    assert found.vectors[stored.arxiv_id] == [0.0, 1.0]


def test_a_ttl_of_zero_caches_nothing(redis_client: fakeredis.FakeRedis) -> None:
    cache = PaperVectorCache(redis_client, "m", ttl_seconds=0)
    paper = make_paper()

    cache.put_many([paper], {paper.arxiv_id: [1.0]})

    assert cache.get_many([paper]) == {}
    assert redis_client.dbsize() == 0


def test_the_memo_embeds_a_text_once_and_learns_cached_vectors(
    redis_client: fakeredis.FakeRedis,
) -> None:
    inner = CountingEmbedder()
    memo = MemoizingEmbedder(inner)
    candidates = papers(2)
    cache = PaperVectorCache(redis_client, memo.name, 3600)
    cache.put_many(candidates, {p.arxiv_id: [1.0, 0.0] for p in candidates})

    PaperVectorLookup(memo, cache).vectors_for(candidates)
    first = memo.embed_with_usage(["a query", paper_text(candidates[0])])
    second = memo.embed_with_usage(["a query"])

    # The paper's text was learnt from the cache; the query was embedded once.
    assert inner.calls == [["a query"]]
    assert first.vectors[1] == [1.0, 0.0]
    assert first.tokens == 2 and second.tokens == 0
    assert second.vectors == [first.vectors[0]]


def test_the_memo_forgets_the_least_recently_used_beyond_its_capacity() -> None:
    inner = CountingEmbedder()
    memo = MemoizingEmbedder(inner, capacity=2)

    memo.embed(["one", "two"])
    memo.embed(["one", "three"])  # "two" is now the oldest and goes
    memo.embed(["one", "two"])

    assert inner.calls == [["one", "two"], ["three"], ["two"]]


def job_with(candidates: list[Paper], max_papers: int) -> JobState:
    request = ResearchRequest(query="graph neural networks", max_papers=max_papers)
    return JobState(
        job_id="job-1",
        request=request,
        accepted_at="2026-01-01T00:00:00Z",  # type: ignore[arg-type]  # pydantic parses it
        embedding_model="counting",
        llm_model=None,
        candidates=candidates,
    )


def test_rank_stage_embeds_the_query_once_and_only_the_lexical_best_fresh_papers(
    redis_client: fakeredis.FakeRedis,
) -> None:
    embedder = CountingEmbedder()
    lookup = PaperVectorLookup(embedder, PaperVectorCache(redis_client, embedder.name, 3600))
    candidates = papers(8)
    job = job_with(candidates, max_papers=2)

    rank_stage(job, lookup, fresh=3)

    query_call, papers_call = embedder.calls
    assert query_call == ["graph neural networks"]
    # The papers about graph neural networks (4 and 8) lead the lexical order.
    assert len(papers_call) == 3
    assert paper_text(candidates[3]) in papers_call and paper_text(candidates[7]) in papers_call
    # The job's ledger holds both calls and every token they read.
    assert job.usage.embeddings.calls == 2
    assert job.usage.embeddings.tokens == sum(
        len(text.split()) for text in [*query_call, *papers_call]
    )
    assert {p.arxiv_id for p in job.papers} == {"2401.00004", "2401.00008"}


def test_rank_stage_never_embeds_fewer_than_max_papers(redis_client: fakeredis.FakeRedis) -> None:
    embedder = CountingEmbedder()
    lookup = PaperVectorLookup(embedder, PaperVectorCache(redis_client, embedder.name, 3600))
    job = job_with(papers(8), max_papers=4)

    rank_stage(job, lookup, fresh=0)

    assert len(embedder.calls[1]) == 4
    assert len(job.papers) == 4


def test_rank_stage_embeds_nothing_new_for_papers_seen_before(
    redis_client: fakeredis.FakeRedis,
) -> None:
    embedder = CountingEmbedder()
    lookup = PaperVectorLookup(embedder, PaperVectorCache(redis_client, embedder.name, 3600))
    candidates = papers(6)
    rank_stage(job_with(candidates, max_papers=3), lookup, fresh=6)
    embedder.calls.clear()

    again = job_with(candidates, max_papers=3)
    rank_stage(again, lookup, fresh=6)

    assert embedder.calls == [["graph neural networks"]]
    assert len(again.papers) == 3


def test_rank_stage_uses_a_known_vector_beyond_the_embedding_depth(
    redis_client: fakeredis.FakeRedis,
) -> None:
    embedder = CountingEmbedder()
    cache = PaperVectorCache(redis_client, embedder.name, 3600)
    lookup = PaperVectorLookup(embedder, cache)
    candidates = papers(8)
    # Paper 2 is about text to SQL: beyond the lexical top 3 for this query,
    # but its cached vector is the query's own, a perfect semantic match.
    (query_vector,) = embedder.embed(["graph neural networks"])
    cache.put_many([candidates[1]], {candidates[1].arxiv_id: query_vector})
    embedder.calls.clear()
    job = job_with(candidates, max_papers=3)

    rank_stage(job, lookup, fresh=3)

    assert paper_text(candidates[1]) not in embedder.calls[1]
    assert len(embedder.calls[1]) == 3
    scores = {p.arxiv_id: p.relevance_score for p in job.papers}
    # No lexical match: its whole score is the semantic share of a cosine of 1.
    assert scores[candidates[1].arxiv_id] == pytest.approx(1 - LEXICAL_WEIGHT, abs=1e-3)


def test_the_index_stores_a_paper_with_the_vector_rank_cached_and_embeds_only_the_others(
    redis_client: fakeredis.FakeRedis,
) -> None:
    # Given rank (in another worker process) cached the vector of one paper
    embedder = CountingEmbedder()
    cache = PaperVectorCache(redis_client, embedder.name, 3600)
    ranked, fresh = papers(2)
    cache.put_many([ranked], {ranked.arxiv_id: HashingEmbedder().embed([paper_text(ranked)])[0]})
    index = PaperIndex(
        lambda: QdrantClient(":memory:"), "papers", embedder, summary_model=None, vector_cache=cache
    )

    # When the store stage writes both
    index.store([ranked, fresh], query="graph neural networks", job_id="job-1")

    # Then only the other one went through the model, and both are held with their vectors
    assert embedder.calls == [[paper_text(fresh)]]
    assert set(index.stored_vectors([ranked, fresh])) == {ranked.arxiv_id, fresh.arxiv_id}
    index.close()

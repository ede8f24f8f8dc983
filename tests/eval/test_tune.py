"""The tuning helper's parts that need no job: the embedding cache and pool recall."""

from __future__ import annotations

from collections.abc import Sequence

from tasks.embeddings import HashingEmbedder
from tests.eval.relevance_set import JudgedQuery
from tests.eval.tune import CachingEmbedder, pool_recall


class CountingEmbedder:
    """The hashing embedder, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        self.inner = HashingEmbedder()
        self.texts: list[str] = []

    @property
    def name(self) -> str:
        return self.inner.name

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return self.inner.embed(texts)


def test_the_cache_embeds_each_text_once_and_keeps_the_order() -> None:
    counting = CountingEmbedder()
    cached = CachingEmbedder(counting)
    first = cached.embed(["graph neural networks", "text to sql"])
    second = cached.embed(["text to sql", "speech synthesis", "graph neural networks"])
    assert counting.texts == ["graph neural networks", "text to sql", "speech synthesis"]
    assert second[0] == first[1] and second[2] == first[0]
    assert second[1] == HashingEmbedder().embed(["speech synthesis"])[0]
    assert cached.name == counting.name


def test_pool_recall_counts_papers_graded_two_or_more() -> None:
    query = JudgedQuery("k00", "keyword", "tune", "q", (), {"a": 3, "b": 2, "c": 1})
    assert pool_recall(["a", "c", "x"], query) == 0.5
    assert pool_recall([], query) == 0.0

"""Memory in embedded Qdrant: deterministic ids, recall filters, reused summaries, parked writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import fakeredis
import pytest
from qdrant_client import QdrantClient, models

from tasks.corpus_coverage import CoverageEntry
from tasks.embeddings import HashingEmbedder
from tasks.errors import MemoryUnavailable
from tasks.paper_index import EmbeddingModelMismatch, PaperIndex, PendingWrites, point_id
from tests.unit.factories import make_paper

COLLECTION = "research_papers"


@pytest.fixture
def qdrant_path(tmp_path: Path) -> Path:
    return tmp_path / "qdrant"


@pytest.fixture
def memory(qdrant_path: Path) -> Iterator[PaperIndex]:
    store = PaperIndex(
        lambda: QdrantClient(path=str(qdrant_path)),
        COLLECTION,
        HashingEmbedder(),
        summary_model="model-a",
    )
    yield store
    store.close()


def test_point_ids_are_uuid5_of_the_versionless_abs_url() -> None:
    assert point_id("2502.13957") == str(
        uuid.uuid5(uuid.NAMESPACE_URL, "https://arxiv.org/abs/2502.13957")
    )


def test_storing_the_same_papers_twice_keeps_one_point_each(memory: PaperIndex) -> None:
    papers = [make_paper("2401.00001"), make_paper("2401.00002", title="Another paper")]

    memory.store(papers, query="first query", job_id="job-1")
    memory.store(
        [papers[0].model_copy(update={"version": 2})], query="second query", job_id="job-2"
    )

    assert memory.count() == 2


def test_holdings_give_the_coverage_and_the_size_in_one_read(memory: PaperIndex) -> None:
    assert memory.holdings().records == 0 and memory.holdings().coverage == []

    memory.store_snapshot([make_paper("2401.00001"), make_paper("2401.00002")])
    entry = CoverageEntry(categories=["cs.*"], watermark=date(2024, 1, 2))
    memory.record_coverage(entry)

    holdings = memory.holdings()
    assert holdings.records == memory.count() == 2
    assert holdings.coverage == memory.coverage() == [entry]


def test_recall_finds_similar_papers_within_the_date_range(memory: PaperIndex) -> None:
    old = make_paper("1901.00001", published_date=date(2019, 1, 5))
    new = make_paper("2401.00001", published_date=date(2024, 1, 5))
    off_topic = make_paper(
        "2401.00002",
        title="Medieval tax records of Flanders",
        abstract="An archival study of tax ledgers kept in medieval towns.",
    )
    memory.store([old, new, off_topic], query="q", job_id="job-1")

    recalled = memory.recall(
        "graph neural networks molecules", limit=5, min_similarity=0.3, start_date=date(2023, 1, 1)
    )

    assert [paper.arxiv_id for paper in recalled] == ["2401.00001"]


def test_recall_filters_by_category(memory: PaperIndex) -> None:
    memory.store(
        [make_paper("2401.00001", categories=["cs.CL"]), make_paper("2401.00002")],
        query="q",
        job_id="job-1",
    )

    recalled = memory.recall(
        "graph neural networks", limit=5, min_similarity=0.0, categories=["cs.CL"]
    )

    assert [paper.arxiv_id for paper in recalled] == ["2401.00001"]


def test_a_summary_of_the_same_llm_is_reused_and_one_of_another_is_not(
    qdrant_path: Path, memory: PaperIndex
) -> None:
    memory.store(
        [make_paper(summary="An LLM summary.", summary_method="llm")], query="q", job_id="job-1"
    )

    same_model = memory.recall("graph neural networks", limit=1, min_similarity=0.0)
    memory.close()
    other = PaperIndex(
        lambda: QdrantClient(path=str(qdrant_path)),
        COLLECTION,
        HashingEmbedder(),
        summary_model="model-b",
    )
    other_model = other.recall("graph neural networks", limit=1, min_similarity=0.0)
    other.close()

    assert (same_model[0].summary, same_model[0].summary_method) == ("An LLM summary.", "cached")
    assert (other_model[0].summary, other_model[0].summary_method) == (None, "none")


def test_a_record_without_summary_keeps_the_stored_one(memory: PaperIndex) -> None:
    memory.store([make_paper(summary="Kept.", summary_method="llm")], query="q1", job_id="job-1")

    memory.store([make_paper()], query="q2", job_id="job-2")

    recalled = memory.recall("graph neural networks", limit=1, min_similarity=0.0)
    assert recalled[0].summary == "Kept."


def test_vectors_of_another_model_are_refused(qdrant_path: Path, memory: PaperIndex) -> None:
    memory.store([make_paper()], query="q", job_id="job-1")
    memory.close()
    other = PaperIndex(
        lambda: QdrantClient(path=str(qdrant_path)),
        COLLECTION,
        HashingEmbedder(dimension=128),
        summary_model=None,
    )

    with pytest.raises(MemoryUnavailable, match="QDRANT_COLLECTION"):
        other.store([make_paper()], query="q", job_id="job-2")
    other.close()


def test_an_unreachable_qdrant_is_memory_unavailable() -> None:
    unreachable = PaperIndex(
        lambda: QdrantClient(url="http://127.0.0.1:9", timeout=1, check_compatibility=False),
        COLLECTION,
        HashingEmbedder(),
        summary_model=None,
    )

    with pytest.raises(MemoryUnavailable):
        unreachable.recall("anything at all", limit=1, min_similarity=0.0)
    unreachable.close()


def test_an_unreachable_qdrant_holds_no_stored_vectors_for_rank() -> None:
    # Given an index whose Qdrant is away
    unreachable = PaperIndex(
        lambda: QdrantClient(url="http://127.0.0.1:9", timeout=1, check_compatibility=False),
        COLLECTION,
        HashingEmbedder(),
        summary_model=None,
    )

    # When rank asks it for stored vectors, then it has none, and rank computes them
    assert unreachable.stored_vectors([make_paper("2401.00001")]) == {}
    unreachable.close()


def test_parked_writes_are_written_once_qdrant_answers(memory: PaperIndex) -> None:
    pending = PendingWrites(fakeredis.FakeRedis())
    pending.park([make_paper("2401.00001"), make_paper("2401.00002")], query="q", job_id="job-1")

    written = pending.flush(memory)

    assert written == 2
    assert pending.size() == 0
    assert memory.count() == 2


def test_a_parked_write_stays_parked_while_qdrant_is_away() -> None:
    pending = PendingWrites(fakeredis.FakeRedis())
    pending.park([make_paper()], query="q", job_id="job-1")
    away = PaperIndex(
        lambda: QdrantClient(url="http://127.0.0.1:9", timeout=1, check_compatibility=False),
        COLLECTION,
        HashingEmbedder(),
        summary_model=None,
    )

    with pytest.raises(MemoryUnavailable):
        pending.flush(away)

    assert pending.size() == 1
    away.close()


def test_bm25_finds_a_paper_whose_vector_is_too_far_for_the_dense_side(
    memory: PaperIndex,
) -> None:
    # A long abstract about something else dilutes the hashed vector; the rare
    # word still brings the paper in through its sparse BM25 vector.
    rare = make_paper(
        "2401.00003",
        title="Medieval tax records of Flanders",
        abstract="An archival study of tax ledgers kept by towns; one mentions zeolites once.",
    )
    memory.store([rare, make_paper("2401.00001")], query="q", job_id="job-1")

    recalled = memory.recall("zeolites", limit=5, min_similarity=0.9)

    assert [paper.arxiv_id for paper in recalled] == ["2401.00003"]


def test_stored_vectors_are_given_back_for_the_same_version_only(memory: PaperIndex) -> None:
    paper = make_paper("2401.00001")
    memory.store([paper], query="q", job_id="job-1")

    same = memory.stored_vectors([paper])
    newer = memory.stored_vectors([paper.model_copy(update={"version": 2})])

    assert list(same) == ["2401.00001"] and len(same["2401.00001"]) == 384
    assert newer == {}


def test_a_worker_of_another_model_is_refused_with_what_to_do(
    qdrant_path: Path, memory: PaperIndex
) -> None:
    memory.store([make_paper()], query="q", job_id="job-1")
    memory.close()
    other = PaperIndex(
        lambda: QdrantClient(path=str(qdrant_path)),
        COLLECTION,
        HashingEmbedder(dimension=128),
        summary_model=None,
    )

    with pytest.raises(EmbeddingModelMismatch) as refused:
        other.verify_model()
    other.close()

    message = str(refused.value)
    assert "local-hashing-v1-384" in message and "local-hashing-v1-128" in message
    assert "QDRANT_COLLECTION" in message and "EMBEDDING_MODEL" in message


def test_a_collection_from_before_the_hybrid_index_is_refused(qdrant_path: Path) -> None:
    client = QdrantClient(path=str(qdrant_path))
    client.create_collection(
        COLLECTION,
        vectors_config={
            "local-hashing-v1-384": models.VectorParams(size=384, distance=models.Distance.COSINE)
        },
    )
    client.close()
    index = PaperIndex(
        lambda: QdrantClient(path=str(qdrant_path)),
        COLLECTION,
        HashingEmbedder(),
        summary_model=None,
    )

    with pytest.raises(EmbeddingModelMismatch, match="no BM25 vector"):
        index.verify_model()
    index.close()

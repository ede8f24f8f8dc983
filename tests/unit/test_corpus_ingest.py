"""Snapshot ingest into embedded Qdrant: parsing, filters, idempotence, checkpoints, coverage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from tasks.corpus_ingest import (
    MalformedRecord,
    SnapshotFilter,
    checkpoint_path,
    ingest_snapshot,
    load_checkpoint,
    parse_snapshot_record,
)
from tasks.embeddings import HashingEmbedder
from tasks.paper_index import PaperIndex
from tests.support.snapshot_lines import SHARED_SAMPLE, snapshot_line, write_snapshot

COLLECTION = "research_papers"


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "qdrant"


@pytest.fixture
def index(store_path: Path) -> Iterator[PaperIndex]:
    store = PaperIndex(
        lambda: QdrantClient(path=str(store_path)),
        COLLECTION,
        HashingEmbedder(),
        summary_model=None,
    )
    yield store
    store.close()


def stored_payloads(index: PaperIndex, path: Path) -> dict[str, dict[str, object]]:
    """Every point's payload by arxiv id, read with a client of its own."""
    index.close()  # embedded Qdrant is one process's at a time
    client = QdrantClient(path=str(path))
    try:
        records, _ = client.scroll(COLLECTION, limit=10_000, with_payload=True)
    finally:
        client.close()
    return {str((r.payload or {})["arxiv_id"]): r.payload or {} for r in records}


def test_a_record_gives_its_latest_version_with_the_first_versions_date() -> None:
    line = snapshot_line(
        "2401.00001",
        versions=[date(2024, 1, 2), date(2024, 3, 5), date(2024, 6, 7)],
        categories="cs.CL cs.LG",
        doi="10.1000/xyz",
    )

    paper = parse_snapshot_record(line)

    assert (paper.version, paper.published_date, paper.updated_date) == (
        3,
        date(2024, 1, 2),
        date(2024, 6, 7),
    )
    assert paper.url == "https://arxiv.org/abs/2401.00001v3"
    assert paper.categories == ["cs.CL", "cs.LG"] and paper.primary_category == "cs.CL"
    assert paper.authors == ["Ada Lovelace", "Alan Turing"] and paper.doi == "10.1000/xyz"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"id": "2401.1", "title": "t", "abstract": "a"}), "no 'versions'"),
        (
            snapshot_line("2401.00001").replace("GMT", "GMTX").replace("12:00:00", "99:99"),
            "unreadable version date",
        ),
        (snapshot_line("2401.00001", title="   "), "no 'title' or 'abstract'"),
    ],
)
def test_a_malformed_record_says_why(line: str, reason: str) -> None:
    with pytest.raises(MalformedRecord, match=reason):
        parse_snapshot_record(line)


def test_the_shared_snapshot_sample_is_ingested_once_however_often_it_is_run(
    index: PaperIndex, tmp_path: Path
) -> None:
    if not SHARED_SAMPLE.is_file():
        pytest.skip(f"the shared snapshot sample is not at {SHARED_SAMPLE}")

    first = ingest_snapshot([SHARED_SAMPLE], index, SnapshotFilter(), tmp_path / "checkpoints")
    again = ingest_snapshot([SHARED_SAMPLE], index, SnapshotFilter(), tmp_path / "checkpoints")

    assert (first.counts.ingested, first.counts.malformed) == (200, 0)
    assert (again.counts.ingested, again.counts.unchanged) == (0, 200)
    assert index.count() == 200
    assert first.coverage[0].watermark == date(2007, 4, 2)
    assert first.coverage[0].categories is None


def test_malformed_lines_duplicates_and_filters_are_counted_and_never_abort(
    index: PaperIndex, tmp_path: Path, store_path: Path
) -> None:
    snapshot = write_snapshot(
        tmp_path / "snapshot.jsonl.gz",
        [
            snapshot_line("2401.00001", categories="cs.CL"),
            "{broken",
            snapshot_line("2401.00002", categories="math.CO"),
            snapshot_line("2401.00003", categories="cs.LG", versions=[date(2019, 5, 1)]),
            snapshot_line("2401.00001", categories="cs.CL", versions=[date(2024, 1, 2)] * 2),
            "",
            snapshot_line("2401.00004", categories="cs.AI", versions=[date(2025, 2, 1)]),
        ],
    )

    summary = ingest_snapshot(
        [snapshot],
        index,
        SnapshotFilter(categories=("cs.*",), since=date(2020, 1, 1)),
        tmp_path / "checkpoints",
    )

    counts = summary.counts
    assert (counts.ingested, counts.duplicates) == (2, 1)
    assert (counts.filtered_category, counts.filtered_date, counts.malformed) == (1, 1, 1)
    assert [number for number, _ in counts.malformed_lines] == [2]
    assert sorted(stored_payloads(index, store_path)) == ["2401.00001", "2401.00004"]
    coverage = summary.coverage[0]
    assert (coverage.categories, coverage.since, coverage.watermark) == (
        ["cs.*"],
        date(2020, 1, 1),
        date(2025, 2, 1),
    )


def test_the_latest_version_wins_when_an_id_comes_twice(index: PaperIndex, tmp_path: Path) -> None:
    snapshot = write_snapshot(
        tmp_path / "snapshot.jsonl",
        [
            snapshot_line("2401.00001", versions=[date(2024, 1, 2), date(2024, 2, 2)]),
            snapshot_line("2401.00001", versions=[date(2024, 1, 2)]),
        ],
    )

    ingest_snapshot([snapshot], index, SnapshotFilter(), tmp_path / "checkpoints")

    recalled = index.recall("graph neural networks molecular", limit=5, min_similarity=0.0)
    assert [(p.arxiv_id, p.version) for p in recalled] == [("2401.00001", 2)]


def test_an_interrupted_ingest_resumes_from_its_checkpoint(
    index: PaperIndex, tmp_path: Path, store_path: Path
) -> None:
    lines = [snapshot_line(f"2401.{n:05d}") for n in range(10)]
    snapshot = write_snapshot(tmp_path / "snapshot.jsonl", lines)
    checkpoints = tmp_path / "checkpoints"

    # Given a run that stopped after its first batch of 4 lines...
    def stop_after_first_batch(progress: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_snapshot(
            [snapshot],
            index,
            SnapshotFilter(),
            checkpoints,
            batch_lines=4,
            on_progress=stop_after_first_batch,
        )
    saved = load_checkpoint(checkpoints, snapshot, SnapshotFilter())
    assert (saved.next_line, saved.counts.ingested) == (5, 4)
    assert index.coverage() == []  # an unfinished ingest claims no coverage

    # ...the next run reads from line 5 on and completes the file.
    summary = ingest_snapshot([snapshot], index, SnapshotFilter(), checkpoints, batch_lines=4)

    assert summary.resumed_from == {str(snapshot): 5}
    assert summary.counts.ingested == 10 and summary.counts.unchanged == 0
    assert index.count() == 10
    assert not checkpoint_path(checkpoints, snapshot, SnapshotFilter()).exists()
    assert sorted(stored_payloads(index, store_path)) == [f"2401.{n:05d}" for n in range(10)]


def test_a_paper_a_job_stored_keeps_its_summary_and_queries_when_the_snapshot_arrives(
    index: PaperIndex, tmp_path: Path, store_path: Path
) -> None:
    from tests.unit.factories import make_paper

    index.store(
        [make_paper("2401.00001", summary="An LLM summary.", summary_method="llm")],
        query="molecules",
        job_id="job-1",
    )
    snapshot = write_snapshot(tmp_path / "s.jsonl", [snapshot_line("2401.00001")])

    ingest_snapshot([snapshot], index, SnapshotFilter(), tmp_path / "checkpoints")

    payload = stored_payloads(index, store_path)["2401.00001"]
    assert payload["origin"] == ["job", "snapshot"]
    assert payload["summary"] == "An LLM summary." and payload["queries"] == ["molecules"]

"""`python -m tests.eval` end to end on one query: BM25 alone, then a real job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.eval.__main__ import main, parse_env
from tests.eval.records import EvalDataMissing, _from_kaggle, load_records, write_snapshot_jsonl


@pytest.fixture(scope="module")
def shared_records() -> None:
    """Skips the test where the shared arXiv records are absent."""
    try:
        load_records()
    except EvalDataMissing as exc:
        pytest.skip(f"the shared arXiv records are not on this machine: {exc}")


def test_parse_env_reads_key_value_pairs() -> None:
    assert parse_env(["EMBEDDINGS=hashing", "A=b=c"]) == {"EMBEDDINGS": "hashing", "A": "b=c"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_env(["EMBEDDINGS"])


@pytest.mark.usefixtures("shared_records")
def test_an_unknown_query_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--system", "bm25-all", "--queries", "k99"]) == 2
    assert "no query k99" in capsys.readouterr().err


@pytest.mark.usefixtures("shared_records")
def test_bm25_over_all_records_finds_the_text_to_sql_papers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--system", "bm25-all", "--queries", "k01", "--per-query"]) == 0
    out = capsys.readouterr().out
    assert "split report, 1 queries (1 keyword, 0 paraphrase)" in out
    row = next(line for line in out.splitlines() if line.startswith("bm25-all   keyword"))
    # Six papers on text-to-SQL are graded 3; BM25 ranks one of them first.
    assert row.split()[5] == "1.000"  # MRR


@pytest.mark.integration
@pytest.mark.timeout(180)
@pytest.mark.usefixtures("shared_records")
def test_one_query_through_a_real_worker(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--system", "job", "--queries", "k01"]) == 0
    out = capsys.readouterr().out
    assert "embedding model " in out
    row = next(line for line in out.splitlines() if line.startswith("job        keyword"))
    assert float(row.split()[5]) > 0  # the job returned a relevant paper


@pytest.mark.usefixtures("shared_records")
def test_the_snapshot_writer_round_trips_through_the_kaggle_reader(tmp_path: Path) -> None:
    records = [
        record for record in load_records() if record.arxiv_id in ("0704.0001", "2603.10697")
    ]
    path = write_snapshot_jsonl(records, tmp_path / "snapshot.jsonl")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == [record.arxiv_id for record in records]
    again = [_from_kaggle(line) for line in lines]
    for before, after in zip(records, again, strict=True):
        assert (after.title, after.abstract, after.categories) == (
            before.title,
            before.abstract,
            before.categories,
        )
        assert after.authors == before.authors
        assert after.published == before.published and after.version == before.version

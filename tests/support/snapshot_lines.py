"""Lines of arXiv's metadata snapshot (Kaggle's JSON Lines format), for tests and benchmarks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The first 200 lines of the real snapshot, shared beside the repository.
SHARED_SAMPLE = (
    REPO_ROOT.parent
    / "shared"
    / "data"
    / "arxiv_metadata"
    / "kaggle_arxiv-metadata-oai-snapshot_head200.jsonl"
)


def _created(day: date) -> str:
    # The snapshot's own layout: "Mon, 2 Apr 2007 19:18:42 GMT".
    return day.strftime("%a, ") + f"{day.day} " + day.strftime("%b %Y 12:00:00 GMT")


def snapshot_line(
    arxiv_id: str,
    *,
    title: str = "Graph neural networks for molecular property prediction",
    abstract: str = "Message passing over atoms and bonds predicts molecular properties.",
    categories: str = "cs.LG q-bio.BM",
    versions: Sequence[date] = (date(2024, 1, 2),),
    authors: Sequence[tuple[str, str]] = (("Lovelace", "Ada"), ("Turing", "Alan")),
    doi: str | None = None,
) -> str:
    """One snapshot record as a JSON line (without the newline)."""
    record = {
        "id": arxiv_id,
        "submitter": "A. Submitter",
        "authors": ", ".join(f"{first} {last}" for last, first in authors),
        "title": title,
        "comments": None,
        "journal-ref": None,
        "doi": doi,
        "report-no": None,
        "categories": categories,
        "license": None,
        "abstract": f"  {abstract}\n",
        "versions": [
            {"version": f"v{number}", "created": _created(day)}
            for number, day in enumerate(versions, start=1)
        ],
        "update_date": versions[-1].isoformat(),
        "authors_parsed": [[last, first, ""] for last, first in authors],
    }
    return json.dumps(record)


def write_snapshot(path: Path, lines: Sequence[str]) -> Path:
    """Write `lines` as a snapshot file (gzip-compressed if the name ends in .gz)."""
    text = "".join(line + "\n" for line in lines).encode()
    if path.name.endswith(".gz"):
        import gzip

        path.write_bytes(gzip.compress(text))
    else:
        path.write_bytes(text)
    return path

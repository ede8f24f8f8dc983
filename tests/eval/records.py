"""The real arXiv records the evaluation runs over, read from the shared data folder.

Two files, never committed to the repository (they live beside it in
`../shared/data/arxiv_metadata`, or wherever EVAL_DATA_DIR points):

- `arxiv_api_cat_cs.CL_latest500_2026-03.json`: 500 recent cs.CL records as
  the arXiv API reported them (id with version, title, abstract, authors,
  year, categories);
- `kaggle_arxiv-metadata-oai-snapshot_head200.jsonl`: the first 200 lines of
  Kaggle's arXiv metadata snapshot (April 2007, mostly physics and maths).

`load_records()` reads both into `EvalRecord`s: the fake arXiv server's
`CorpusPaper`s, each saying which file it came from; `corpus_papers()` readies
them for the fake.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any, Final

from tests.support.arxiv_corpus import CorpusPaper

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DATA_DIR_VARIABLE: Final = "EVAL_DATA_DIR"
CS_CL_FILE: Final = "arxiv_api_cat_cs.CL_latest500_2026-03.json"
KAGGLE_FILE: Final = "kaggle_arxiv-metadata-oai-snapshot_head200.jsonl"
_VERSION_SUFFIX: Final = re.compile(r"v(\d+)$")


class EvalDataMissing(RuntimeError):
    """The shared records are not where the evaluation looks for them."""


@dataclass(frozen=True)
class EvalRecord(CorpusPaper):
    """One real arXiv paper of the evaluation's collection, as the fake arXiv serves it."""

    source: str = ""
    """Which file it came from: "cs.CL" or "kaggle"."""

    @property
    def text(self) -> str:
        """Title and abstract, as the BM25 baseline indexes them."""
        return f"{self.title}\n{self.abstract}"


def default_data_dir() -> Path:
    """EVAL_DATA_DIR if set, else `shared/data/arxiv_metadata` beside the repository."""
    configured = os.environ.get(DATA_DIR_VARIABLE)
    if configured:
        return Path(configured)
    return REPO_ROOT.parent / "shared" / "data" / "arxiv_metadata"


def require_data_dir(data_dir: Path | None = None) -> Path:
    """The data folder, checked to hold both files; raises EvalDataMissing with what to do."""
    folder = data_dir or default_data_dir()
    missing = [name for name in (CS_CL_FILE, KAGGLE_FILE) if not (folder / name).is_file()]
    if missing:
        raise EvalDataMissing(
            f"the evaluation's arXiv records are missing from {folder}: {', '.join(missing)}."
            f" Put the shared data beside the repository (../shared/data/arxiv_metadata)"
            f" or set {DATA_DIR_VARIABLE} to the folder holding them."
        )
    return folder


def load_records(data_dir: Path | None = None) -> list[EvalRecord]:
    """Every record of both files, cs.CL first, in file order; ids are unique."""
    folder = require_data_dir(data_dir)
    raw_cs_cl = json.loads((folder / CS_CL_FILE).read_text(encoding="utf-8"))
    records = [_from_api(item) for item in raw_cs_cl]
    with (folder / KAGGLE_FILE).open(encoding="utf-8") as lines:
        records += [_from_kaggle(json.loads(line)) for line in lines if line.strip()]
    seen: set[str] = set()
    for record in records:
        if record.arxiv_id in seen:
            raise ValueError(f"arXiv id {record.arxiv_id} appears twice in {folder}")
        seen.add(record.arxiv_id)
    return records


def corpus_papers(records: Sequence[EvalRecord]) -> list[CorpusPaper]:
    """The records as papers the fake arXiv server serves: an Atom entry names an author."""
    return [
        record if record.authors else dataclasses.replace(record, authors=("Unknown",))
        for record in records
    ]


def write_snapshot_jsonl(records: Sequence[EvalRecord], path: Path) -> Path:
    """Write `records` as lines of Kaggle's arXiv metadata snapshot (what an ingest reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            versions = [{"version": "v1", "created": format_datetime(record.published)}]
            if record.version > 1:
                versions += [
                    {"version": f"v{n}", "created": format_datetime(record.last_updated)}
                    for n in range(2, record.version + 1)
                ]
            line = {
                "id": record.arxiv_id,
                "submitter": None,
                "authors": ", ".join(record.authors),
                "title": record.title,
                "comments": None,
                "journal-ref": None,
                "doi": None,
                "report-no": None,
                "categories": " ".join(record.categories),
                "license": None,
                "abstract": record.abstract,
                "versions": versions,
                "update_date": record.last_updated.date().isoformat(),
                "authors_parsed": [_parsed_name(name) for name in record.authors],
            }
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def _parsed_name(name: str) -> list[str]:
    first, _, last = name.rpartition(" ")
    return [last, first, ""]


def _clean(text: str) -> str:
    # Titles and abstracts wrap lines and carry a few HTML entities ("Q&amp;A").
    return " ".join(html.unescape(text).split())


def _distinct(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value for value in values if value))


def _from_api(item: dict[str, Any]) -> EvalRecord:
    versioned = str(item["id"])
    match = _VERSION_SUFFIX.search(versioned)
    arxiv_id = versioned[: match.start()] if match else versioned
    # The API file gives only the year; a new-style id names the month (YYMM.NNNNN).
    year, month = 2000 + int(arxiv_id[:2]), int(arxiv_id[2:4])
    published = datetime(year, month, 1, tzinfo=UTC)
    return EvalRecord(
        arxiv_id=arxiv_id,
        title=_clean(item["title"]),
        abstract=_clean(item["abstract"]),
        authors=tuple(_clean(name) for name in item.get("authors", [])),
        categories=_distinct(item.get("categories", [])) or ("cs.CL",),
        published=published,
        updated=published,
        version=int(match[1]) if match else 1,
        source="cs.CL",
    )


def _from_kaggle(item: dict[str, Any]) -> EvalRecord:
    versions = item.get("versions") or [{"created": "Mon, 2 Apr 2007 00:00:00 GMT"}]
    created = [parsedate_to_datetime(version["created"]).astimezone(UTC) for version in versions]
    authors = tuple(
        _clean(" ".join(part for part in (first, last) if part))
        for last, first, *_ in item.get("authors_parsed", [])
    )
    return EvalRecord(
        arxiv_id=str(item["id"]),
        title=_clean(item["title"]),
        abstract=_clean(item["abstract"]),
        authors=authors,
        categories=_distinct(str(item.get("categories", "")).split()),
        published=created[0],
        updated=created[-1],
        version=len(versions),
        source="kaggle",
    )

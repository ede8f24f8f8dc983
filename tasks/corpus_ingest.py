"""Ingest arXiv's metadata snapshot (Kaggle's JSON Lines, `.jsonl` or `.jsonl.gz`) into the index.

The file is streamed line by line in batches, so memory stays flat whatever
its size. Each batch is parsed, filtered (categories, first-submission date),
embedded in one call and upserted in one request (`PaperIndex.store_snapshot`,
idempotent: a paper's point id is its uuid5). After each batch a checkpoint
records how far the file was read, so an ingest killed mid-way continues from
there. A malformed line is counted with its line number and reason, never
fatal. Once every file is read, the run's coverage (its filters and
watermark) is recorded in the index: only a completed ingest claims coverage.

`ingest_lines` is the unit of work, the same whether this process runs it
(`ingest_snapshot`) or a worker does (`research.ingest_chunk`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, Final, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.research import Paper
from tasks.corpus_coverage import CoverageEntry, matches_any
from tasks.paper_index import PaperIndex

# Lines per batch: one embedding call and one upsert each. Big enough that
# per-call overheads vanish, small enough that a kill loses little work.
DEFAULT_BATCH_LINES: Final = 64
# How many malformed lines a summary lists by number (all are counted).
MAX_LISTED_MALFORMED: Final = 50


class MalformedRecord(ValueError):
    """A snapshot line that is not a usable paper record; the message says why."""


@dataclass(frozen=True)
class SnapshotFilter:
    """Which records an ingest keeps: `categories` patterns (`cs.CL`, `cs.*`; empty: all)
    and the earliest first-submission date (`since`; None: all)."""

    categories: tuple[str, ...] = ()
    since: date | None = None

    def keeps(self, paper: Paper) -> str | None:
        """None if the paper is kept, else the reason it is skipped."""
        if self.categories and not matches_any(paper.categories, self.categories):
            return "category"
        if self.since is not None and paper.published_date < self.since:
            return "date"
        return None

    def coverage(self, watermark: date) -> CoverageEntry:
        return CoverageEntry(
            categories=sorted(self.categories) or None, since=self.since, watermark=watermark
        )

    def key(self) -> str:
        return json.dumps({"categories": sorted(self.categories), "since": str(self.since)})


def _snapshot_date(text: Any) -> date:
    # "Mon, 2 Apr 2007 19:18:42 GMT", as in every version entry of the snapshot.
    if not isinstance(text, str):
        raise MalformedRecord("a version's 'created' is not a string")
    try:
        return parsedate_to_datetime(text).date()
    except (TypeError, ValueError) as exc:
        raise MalformedRecord(f"unreadable version date {text!r}") from exc


def _author_names(record: dict[str, Any]) -> list[str]:
    parsed = record.get("authors_parsed")
    if isinstance(parsed, list) and parsed:
        names = []
        for parts in parsed:
            if isinstance(parts, list) and parts:
                last, first, suffix = ([*map(str, parts), "", ""])[:3]
                names.append(
                    " ".join(p for p in (first.strip(), last.strip(), suffix.strip()) if p)
                )
        if names:
            return names
    authors = record.get("authors")
    if isinstance(authors, str) and authors.strip():
        return [a.strip() for a in authors.replace(" and ", ", ").split(",") if a.strip()]
    return []


def _clean(text: Any) -> str:
    return " ".join(text.split()) if isinstance(text, str) else ""


def parse_snapshot_record(line: str) -> Paper:
    """One snapshot line as a Paper (latest version; published = version 1's date).

    Raises:
        MalformedRecord: not JSON, not an object, or missing what a paper needs
            (id, title, abstract, versions with dates, categories).
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise MalformedRecord(f"not JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(record, dict):
        raise MalformedRecord("not a JSON object")
    arxiv_id = record.get("id")
    if not isinstance(arxiv_id, str) or not arxiv_id.strip():
        raise MalformedRecord("no 'id'")
    arxiv_id = arxiv_id.strip()
    versions = record.get("versions")
    if not isinstance(versions, list) or not versions:
        raise MalformedRecord("no 'versions'")
    dated: list[tuple[int, date]] = []
    for entry in versions:
        if not isinstance(entry, dict):
            raise MalformedRecord("a version is not an object")
        label = str(entry.get("version", ""))
        number = int(label[1:]) if label[:1] == "v" and label[1:].isdigit() else len(dated) + 1
        dated.append((number, _snapshot_date(entry.get("created"))))
    dated.sort()
    version, updated = dated[-1]
    categories = _clean(record.get("categories")).split()
    title, abstract = _clean(record.get("title")), _clean(record.get("abstract"))
    if not title or not abstract:
        raise MalformedRecord("no 'title' or 'abstract'")
    if not categories:
        raise MalformedRecord("no 'categories'")
    try:
        return Paper(
            arxiv_id=arxiv_id,
            version=version,
            title=title,
            authors=_author_names(record),
            abstract=abstract,
            url=f"https://arxiv.org/abs/{arxiv_id}v{version}",
            pdf_url=f"https://arxiv.org/pdf/{arxiv_id}v{version}",
            published_date=dated[0][1],
            updated_date=updated,
            categories=categories,
            primary_category=categories[0],
            doi=_clean(record.get("doi")) or None,
            journal_ref=_clean(record.get("journal-ref")) or None,
        )
    except ValidationError as exc:
        raise MalformedRecord(f"invalid field: {exc.errors()[0]['msg']}") from exc


class IngestCounts(BaseModel):
    """What an ingest (or a chunk of one) did with its lines; JSON for Celery and checkpoints."""

    model_config = ConfigDict(extra="forbid")

    lines: int = 0
    ingested: int = 0  # points written
    unchanged: int = 0  # already in the index in this version: nothing embedded
    duplicates: int = 0  # the same id again within one batch
    filtered_category: int = 0
    filtered_date: int = 0
    malformed: int = 0
    malformed_lines: list[tuple[int, str]] = Field(default_factory=list)
    newest: date | None = None  # newest first-submission date read (filtered records too)

    def add(self, other: IngestCounts) -> None:
        for name in (
            "lines",
            "ingested",
            "unchanged",
            "duplicates",
            "filtered_category",
            "filtered_date",
            "malformed",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        room = MAX_LISTED_MALFORMED - len(self.malformed_lines)
        self.malformed_lines.extend(other.malformed_lines[: max(0, room)])
        if other.newest and (self.newest is None or other.newest > self.newest):
            self.newest = other.newest


def ingest_lines(
    lines: Sequence[str], first_line: int, snapshot_filter: SnapshotFilter, index: PaperIndex
) -> IngestCounts:
    """Parse, filter and index one batch of snapshot lines (`first_line` numbers the first).

    Raises:
        MemoryUnavailable: Qdrant failed (the batch is not done; a retry redoes it).
    """
    counts = IngestCounts(lines=len(lines))
    kept: dict[str, Paper] = {}
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue  # a blank line (e.g. the file's end) is no record
        try:
            paper = parse_snapshot_record(line)
        except MalformedRecord as exc:
            counts.malformed += 1
            if len(counts.malformed_lines) < MAX_LISTED_MALFORMED:
                counts.malformed_lines.append((number, str(exc)))
            continue
        if counts.newest is None or paper.published_date > counts.newest:
            counts.newest = paper.published_date
        reason = snapshot_filter.keeps(paper)
        if reason == "category":
            counts.filtered_category += 1
        elif reason == "date":
            counts.filtered_date += 1
        elif paper.arxiv_id in kept:
            counts.duplicates += 1
            if paper.version > kept[paper.arxiv_id].version:
                kept[paper.arxiv_id] = paper
        else:
            kept[paper.arxiv_id] = paper
    written = index.store_snapshot(list(kept.values()))
    counts.ingested, counts.unchanged = written.written, written.unchanged
    return counts


# --- reading files ------------------------------------------------------------------


class SnapshotReader:
    """Lines of one snapshot file from a byte offset of its (decompressed) text, with progress.

    `position()` is how far the file on disk has been read, compressed or
    not, so that `position() / size` is the share done.
    """

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.size = path.stat().st_size
        self._raw: IO[bytes] = path.open("rb")
        self._text: IO[bytes] = (
            cast(IO[bytes], gzip.GzipFile(fileobj=self._raw, mode="rb"))
            if path.name.endswith(".gz")
            else self._raw
        )
        if offset:
            self._text.seek(offset)  # gzip decompresses up to it; a plain file jumps
        self.offset = offset

    def position(self) -> int:
        return self._raw.tell()

    def batches(self, first_line: int, batch_lines: int) -> Iterator[tuple[int, list[str], int]]:
        """(number of the first line, lines, offset after them), batch after batch."""
        batch: list[str] = []
        number = first_line
        for raw in self._text:
            self.offset += len(raw)
            batch.append(raw.decode("utf-8", errors="replace"))
            if len(batch) == batch_lines:
                yield number, batch, self.offset
                number += len(batch)
                batch = []
        if batch:
            yield number, batch, self.offset

    def close(self) -> None:
        self._text.close()
        self._raw.close()


# --- checkpoints --------------------------------------------------------------------


class IngestCheckpoint(BaseModel):
    """How far one ingest of one file got: the next line to read and its byte offset."""

    model_config = ConfigDict(extra="forbid")

    path: str
    size: int
    mtime_ns: int
    filter_key: str
    next_line: int = 1
    offset: int = 0
    done: bool = False
    counts: IngestCounts = Field(default_factory=IngestCounts)


def checkpoint_path(directory: Path, path: Path, snapshot_filter: SnapshotFilter) -> Path:
    """Where the checkpoint of ingesting `path` with `snapshot_filter` lives."""
    identity = f"{path.resolve()}\n{snapshot_filter.key()}".encode()
    return directory / f"{path.name}.{hashlib.sha256(identity).hexdigest()[:16]}.json"


def load_checkpoint(
    directory: Path, path: Path, snapshot_filter: SnapshotFilter
) -> IngestCheckpoint:
    """The checkpoint to resume from, or a fresh one (none yet, or the file changed since)."""
    stat = path.stat()
    fresh = IngestCheckpoint(
        path=str(path.resolve()),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        filter_key=snapshot_filter.key(),
    )
    try:
        saved = IngestCheckpoint.model_validate_json(
            checkpoint_path(directory, path, snapshot_filter).read_text(encoding="utf-8")
        )
    except (OSError, ValueError):
        return fresh
    if (saved.size, saved.mtime_ns) != (fresh.size, fresh.mtime_ns):
        return fresh
    return saved


def save_checkpoint(
    directory: Path, path: Path, snapshot_filter: SnapshotFilter, checkpoint: IngestCheckpoint
) -> None:
    """Write the checkpoint atomically: a kill never leaves half of one."""
    directory.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(directory, path, snapshot_filter)
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(checkpoint.model_dump_json(), encoding="utf-8")
    os.replace(temporary, target)


# --- a whole ingest -----------------------------------------------------------------


@dataclass
class IngestProgress:
    """What a progress display shows; `bytes_done / bytes_total` is the share done."""

    bytes_done: int
    bytes_total: int
    counts: IngestCounts
    seconds: float
    resumed_lines: int  # lines done by earlier runs, not counted in this run's rate


@dataclass
class IngestSummary:
    counts: IngestCounts
    seconds: float
    resumed_from: dict[str, int] = field(default_factory=dict)  # file -> first line read now
    coverage: list[CoverageEntry] = field(default_factory=list)


ProgressCallback = Callable[[IngestProgress], None]


# Ingests one file from its checkpoint, saving the checkpoint as batches
# settle, and calls `show(bytes read in the file, the file's counts so far)`.
FileIngest = Callable[[Path, IngestCheckpoint, Callable[[int, IngestCounts], None]], None]


@dataclass
class CheckpointedRun:
    """What `ingest_files` did: the counts of every file, and where earlier runs had stopped."""

    counts: IngestCounts
    seconds: float
    resumed_from: dict[str, int]


def ingest_files(
    paths: Sequence[Path],
    snapshot_filter: SnapshotFilter,
    checkpoint_dir: Path,
    ingest_file: FileIngest,
    on_progress: ProgressCallback | None = None,
) -> CheckpointedRun:
    """Ingest each file with `ingest_file`, resuming from its checkpoint; files done are skipped.

    The progress shown covers every file: bytes across all of them, and the
    counts of this run plus those resumed from checkpoints.
    """
    started = time.monotonic()
    totals = IngestCounts()
    resumed: dict[str, int] = {}
    bytes_total = sum(path.stat().st_size for path in paths)
    bytes_before = 0
    resumed_lines = 0
    for path in paths:
        checkpoint = load_checkpoint(checkpoint_dir, path, snapshot_filter)
        if checkpoint.next_line > 1:
            resumed[str(path)] = checkpoint.next_line
            resumed_lines += checkpoint.counts.lines
        if not checkpoint.done:

            def show(
                position: int,
                done: IngestCounts,
                before: int = bytes_before,
                earlier: int = resumed_lines,
            ) -> None:
                if on_progress is None:
                    return
                shown = totals.model_copy(deep=True)
                shown.add(done)
                on_progress(
                    IngestProgress(
                        before + position, bytes_total, shown, time.monotonic() - started, earlier
                    )
                )

            ingest_file(path, checkpoint, show)
            checkpoint.done = True
            save_checkpoint(checkpoint_dir, path, snapshot_filter, checkpoint)
        totals.add(checkpoint.counts)
        bytes_before += path.stat().st_size
    return CheckpointedRun(totals, time.monotonic() - started, resumed)


def ingest_snapshot(
    paths: Sequence[Path],
    index: PaperIndex,
    snapshot_filter: SnapshotFilter,
    checkpoint_dir: Path,
    *,
    batch_lines: int = DEFAULT_BATCH_LINES,
    on_progress: ProgressCallback | None = None,
) -> IngestSummary:
    """Ingest snapshot files in this process, resuming each from its checkpoint.

    Args:
        paths: snapshot files (`.jsonl`, or `.jsonl.gz`).
        index: the index the papers go to.
        snapshot_filter: which records to keep.
        checkpoint_dir: where the per-file checkpoints live (kept until the
            whole ingest is done and its coverage recorded).
        batch_lines: lines per embedding call and upsert.
        on_progress: called after each batch.

    Raises:
        MemoryUnavailable: Qdrant failed; the checkpoint keeps what was done.
        OSError: a file cannot be read.
    """

    def ingest_file(
        path: Path, checkpoint: IngestCheckpoint, show: Callable[[int, IngestCounts], None]
    ) -> None:
        reader = SnapshotReader(path, checkpoint.offset)
        try:
            for first, lines, offset in reader.batches(checkpoint.next_line, batch_lines):
                checkpoint.counts.add(ingest_lines(lines, first, snapshot_filter, index))
                checkpoint.next_line, checkpoint.offset = first + len(lines), offset
                save_checkpoint(checkpoint_dir, path, snapshot_filter, checkpoint)
                show(reader.position(), checkpoint.counts)
        finally:
            reader.close()

    run = ingest_files(paths, snapshot_filter, checkpoint_dir, ingest_file, on_progress)
    coverage = finish_ingest(paths, index, snapshot_filter, checkpoint_dir, run.counts)
    return IngestSummary(run.counts, run.seconds, run.resumed_from, coverage)


def finish_ingest(
    paths: Sequence[Path],
    index: PaperIndex,
    snapshot_filter: SnapshotFilter,
    checkpoint_dir: Path,
    totals: IngestCounts,
) -> list[CoverageEntry]:
    """Record the completed ingest's coverage, then drop its checkpoints.

    Returns the coverage now recorded (unchanged if no record was read).
    """
    coverage = (
        index.record_coverage(snapshot_filter.coverage(totals.newest))
        if totals.newest is not None and index.count() > 0
        else index.coverage()
    )
    for path in paths:
        checkpoint_path(checkpoint_dir, path, snapshot_filter).unlink(missing_ok=True)
    return coverage

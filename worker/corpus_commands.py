"""`research-arm corpus ingest` and `corpus status`: the work behind the CLI's corpus commands.

Ingest runs in this process (`ingest_here`), or spreads over the workers
(`ingest_via_queue`): this process reads the files and sends their lines in
chunks as `research.ingest_chunk` tasks, keeps a bounded number in flight,
checkpoints the line below which every chunk is done, and shows progress;
the workers parse, embed and write. Either way, a progress line with rate and
ETA goes to stderr and a summary follows.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import IO, Any

from tasks.constants import QUEUE, TASK_INGEST_CHUNK, TASK_INGEST_COMMIT
from tasks.corpus_coverage import CoverageEntry
from tasks.corpus_ingest import (
    DEFAULT_BATCH_LINES,
    IngestCheckpoint,
    IngestCounts,
    IngestProgress,
    IngestSummary,
    SnapshotFilter,
    SnapshotReader,
    checkpoint_path,
    ingest_files,
    ingest_snapshot,
    save_checkpoint,
)
from tasks.corpus_status import CorpusStatus, corpus_status, read_corpus_status, write_corpus_status
from tasks.errors import MemoryUnavailable
from worker.corpus_admin import open_standalone_index, refresh_status_file, store_path
from worker.settings import Settings

# Lines per chunk sent to a worker, and chunks in flight per ingest: enough to
# keep every worker busy, few enough that the queue holds little and a kill
# redoes little.
QUEUE_CHUNK_LINES = 256
QUEUE_CHUNKS_IN_FLIGHT = 8


class ProgressLine:
    """One line on stderr: share done, records, rate and ETA, redrawn in place on a terminal."""

    def __init__(self, stream: IO[str] = sys.stderr, interval: float = 0.5) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        # Off a terminal (a log file), a line every 10 s rather than a redraw.
        self._interval = interval if self._tty else 10.0
        self._last = 0.0

    def __call__(self, progress: IngestProgress) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        self._stream.write(("\r" if self._tty else "") + describe_progress(progress))
        if not self._tty:
            self._stream.write("\n")
        self._stream.flush()

    def finish(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()


def describe_progress(progress: IngestProgress) -> str:
    share = progress.bytes_done / progress.bytes_total if progress.bytes_total else 1.0
    counts = progress.counts
    lines_now = counts.lines - progress.resumed_lines
    rate = lines_now / progress.seconds if progress.seconds > 0 else 0.0
    remaining = (1.0 - share) * progress.seconds / max(share - _share_before(progress), 1e-9)
    eta = _duration(remaining) if lines_now else "?"
    return (
        f"ingest {share:6.1%}  {counts.lines:,} lines  {counts.ingested:,} written  "
        f"{rate:,.0f} lines/s  ETA {eta}   "
    )


def _share_before(progress: IngestProgress) -> float:
    # The share resumed from a checkpoint is not part of this run's speed.
    if not progress.counts.lines or not progress.bytes_total:
        return 0.0
    done = progress.bytes_done / progress.bytes_total
    return done * progress.resumed_lines / progress.counts.lines


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def summary_text(summary: IngestSummary) -> str:
    """The closing report of an ingest, for people."""
    counts = summary.counts
    lines = [
        f"ingested {counts.ingested:,} records in {summary.seconds:.1f} s "
        f"({counts.lines:,} lines read)",
        f"skipped: {counts.unchanged:,} already indexed, {counts.duplicates:,} duplicate ids, "
        f"{counts.filtered_category:,} other categories, {counts.filtered_date:,} before --since, "
        f"{counts.malformed:,} malformed",
    ]
    for path, line in summary.resumed_from.items():
        lines.append(f"resumed {path} from line {line:,}")
    for number, reason in counts.malformed_lines:
        lines.append(f"  line {number}: {reason}")
    if counts.malformed > len(counts.malformed_lines):
        lines.append(f"  ... and {counts.malformed - len(counts.malformed_lines):,} more")
    watermark = max((entry.watermark for entry in summary.coverage), default=None)
    lines.append(f"watermark: {watermark or 'none'}")
    return "\n".join(lines)


def summary_json(summary: IngestSummary) -> dict[str, Any]:
    return {
        **summary.counts.model_dump(mode="json"),
        "seconds": round(summary.seconds, 3),
        "resumed_from": summary.resumed_from,
        "coverage": [entry.model_dump(mode="json") for entry in summary.coverage],
    }


def ingest_here(
    settings: Settings,
    paths: Sequence[Path],
    snapshot_filter: SnapshotFilter,
    *,
    batch_lines: int = DEFAULT_BATCH_LINES,
) -> IngestSummary:
    """Ingest in this process (the embedded store must not be held by a running worker).

    Raises:
        MemoryUnavailable: Qdrant failed; the checkpoints keep what was done.
    """
    index = open_standalone_index(settings)
    progress = ProgressLine()
    try:
        summary = ingest_snapshot(
            paths,
            index,
            snapshot_filter,
            settings.data_dir / "ingest",
            batch_lines=batch_lines,
            on_progress=progress,
        )
        refresh_status_file(index, settings)
    finally:
        progress.finish()
        index.close()
    return summary


def ingest_via_queue(
    settings: Settings,
    paths: Sequence[Path],
    snapshot_filter: SnapshotFilter,
    *,
    chunk_lines: int = QUEUE_CHUNK_LINES,
    in_flight: int = QUEUE_CHUNKS_IN_FLIGHT,
) -> IngestSummary:
    """Ingest through the workers: chunks as `research.ingest_chunk` tasks on the queue.

    Raises:
        RuntimeError: no broker is configured or recorded.
        celery errors: a chunk failed on a worker (its line numbers are in the message).
    """
    from worker.client import celery_client

    app = celery_client(settings.broker_url())
    categories = sorted(snapshot_filter.categories)
    since = snapshot_filter.since.isoformat() if snapshot_filter.since else None
    checkpoints = settings.data_dir / "ingest"
    progress = ProgressLine()

    def send_file(
        path: Path, checkpoint: IngestCheckpoint, show: Callable[[int, IngestCounts], None]
    ) -> None:
        _send_file(
            app, path, checkpoint, snapshot_filter, checkpoints, chunk_lines, in_flight, show
        )

    try:
        run = ingest_files(paths, snapshot_filter, checkpoints, send_file, progress)
        totals = run.counts
        coverage: list[CoverageEntry] = []
        if totals.newest is not None and totals.ingested + totals.unchanged > 0:
            committed = app.send_task(
                TASK_INGEST_COMMIT,
                args=(categories, since, totals.newest.isoformat()),
                queue=QUEUE,
            ).get(timeout=None, propagate=True)
            coverage = [CoverageEntry.model_validate(entry) for entry in committed]
        for path in paths:
            checkpoint_path(checkpoints, path, snapshot_filter).unlink(missing_ok=True)
    finally:
        progress.finish()
        app.close()
    # The worker that ran research.ingest_commit refreshed its status file.
    return IngestSummary(totals, run.seconds, run.resumed_from, coverage)


def _send_file(
    app: Any,
    path: Path,
    checkpoint: IngestCheckpoint,
    snapshot_filter: SnapshotFilter,
    checkpoints: Path,
    chunk_lines: int,
    in_flight: int,
    show: Callable[[int, IngestCounts], None],
) -> None:
    """Send one file's lines as chunk tasks, at most `in_flight` at a time, from its checkpoint."""
    categories = sorted(snapshot_filter.categories)
    since = snapshot_filter.since.isoformat() if snapshot_filter.since else None
    reader = SnapshotReader(path, checkpoint.offset)
    pending: deque[tuple[Any, int, int]] = deque()

    def settle_oldest() -> None:
        # Chunks finish in any order; the checkpoint moves past a chunk only
        # once it and every chunk before it are done.
        result, next_line, offset = pending.popleft()
        counts = IngestCounts.model_validate(result.get(timeout=None, propagate=True))
        result.forget()
        checkpoint.counts.add(counts)
        checkpoint.next_line, checkpoint.offset = next_line, offset
        save_checkpoint(checkpoints, path, snapshot_filter, checkpoint)
        show(reader.position(), checkpoint.counts)

    try:
        for first, lines, offset in reader.batches(checkpoint.next_line, chunk_lines):
            result = app.send_task(
                TASK_INGEST_CHUNK,
                args=(lines, first, categories, since),
                queue=QUEUE,
                argsrepr=f"(<{len(lines)} lines from line {first}>,)",
            )
            pending.append((result, first + len(lines), offset))
            if len(pending) >= in_flight:
                settle_oldest()
        while pending:
            settle_oldest()
    finally:
        reader.close()


def read_status(settings: Settings) -> tuple[CorpusStatus | None, str | None]:
    """The index's status read from Qdrant, else from the status file, with a note why.

    Returns (status or None, note or None).
    """
    index = open_standalone_index(settings)
    try:
        status = corpus_status(index, store_path(settings))
        write_corpus_status(settings.data_dir, status)
        return status, None
    except MemoryUnavailable as exc:
        saved = read_corpus_status(settings.data_dir)
        note = f"Qdrant not readable now ({exc}); "
        if saved is None:
            return None, note + "no status file either"
        return saved, note + f"as recorded at {saved.updated_at.isoformat(timespec='seconds')}"
    finally:
        index.close()


def parse_categories(text: str | None) -> tuple[str, ...]:
    """`cs.CL,cs.LG` or `cs.*` as a tuple of patterns."""
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def parse_since(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None

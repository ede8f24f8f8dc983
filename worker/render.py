"""What the CLI prints for people: a progress line while a job runs, a ranked list after."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable
from typing import TextIO

from schemas.research import ResearchResponse
from worker.client import JobStatus

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class ProgressDisplay:
    """One self-rewriting line on a terminal; one line per change elsewhere."""

    def __init__(
        self, stream: TextIO = sys.stderr, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.ticks = 0
        self.last_line = ""
        self.interactive = stream.isatty()

    def show(self, status: JobStatus) -> None:
        stage = status.stage or status.state.lower()
        counts = f" {status.done}/{status.total}" if status.total else ""
        line = f"{status.job_id[:8]} {stage}{counts}"
        elapsed = self.clock() - self.started
        if self.interactive:
            spinner = _SPINNER[self.ticks % len(_SPINNER)]
            self.ticks += 1
            self.stream.write(f"\r\x1b[2K{spinner} {line}  {elapsed:5.1f}s")
            self.stream.flush()
        elif line != self.last_line:
            self.stream.write(f"{line} ({elapsed:.1f}s)\n")
            self.stream.flush()
        self.last_line = line

    def finish(self, status: JobStatus) -> None:
        elapsed = self.clock() - self.started
        prefix = "\r\x1b[2K" if self.interactive else ""
        self.stream.write(f"{prefix}{status.job_id[:8]} {status.state.lower()} in {elapsed:.1f}s\n")
        self.stream.flush()


def render_response(response: ResearchResponse, width: int = 100) -> str:
    """The papers best first, with score, summary and citation, then the provenance essentials."""
    lines = [
        f"{len(response.papers)} of {response.total_found} papers for {response.query_used!r} "
        f"(confidence {response.confidence:.2f}, {response.search_time_ms / 1000:.2f}s)",
        "",
    ]
    for rank, paper in enumerate(response.papers, start=1):
        authors = ", ".join(paper.authors[:3]) + (" et al." if len(paper.authors) > 3 else "")
        lines.append(f"{rank}. [{paper.relevance_score:.2f}] {paper.title}")
        lines.append(
            f"   {authors} · arXiv:{paper.arxiv_id}v{paper.version} · {paper.published_date}"
        )
        if paper.summary:
            wrapped = textwrap.fill(
                paper.summary, width=width, initial_indent="   ", subsequent_indent="   "
            )
            lines.append(f"{wrapped}\n   ({paper.summary_method} summary)")
        lines.append(
            textwrap.fill(
                paper.citation, width=width, initial_indent="   ", subsequent_indent="     "
            )
        )
        lines.append("")
    provenance = response.provenance
    lines.append(f"job {provenance.job_id} · models {provenance.models.model_dump()}")
    lines.append(
        "stages "
        + ", ".join(f"{s.name} {s.duration_ms:.0f}ms {s.outcome}" for s in provenance.stages)
    )
    lines.extend(f"warning: {warning}" for warning in provenance.warnings)
    return "\n".join(lines)

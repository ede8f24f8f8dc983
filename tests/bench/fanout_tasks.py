"""Benchmark-only tasks: two shapes of the summaries' fan-out, on the worker's own LLM client.

- `bench.fanout_threads`: one task summarises every paper on a bounded
  thread pool (`tasks.summarizer.summarize_papers`, what research.summarize does);
- `bench.fanout_chord`: one task per paper in a Celery chord, gathered by a
  callback.

Both summarise `count` papers that no cache knows (`salt` makes their ids
new), so every paper costs one LLM call. Only the benchmark's worker imports
this module (see `tests.bench.worker_main`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from celery import Task, chord, shared_task

from schemas.research import Paper
from tasks.constants import QUEUE
from tasks.resources import stage_resources
from tasks.summarizer import summarize_papers
from tests.support.arxiv_corpus import default_corpus

FANOUT_THREADS = "bench.fanout_threads"
FANOUT_CHORD = "bench.fanout_chord"
SUMMARIZE_ONE = "bench.summarize_one"
GATHER = "bench.gather"


def sample_papers(count: int, salt: int) -> list[Paper]:
    """`count` papers with the corpus's text and arXiv ids of their own (`salt` picks them)."""
    corpus = default_corpus()
    papers = []
    for index in range(count):
        source = corpus[(salt * 31 + index) % len(corpus)]
        papers.append(
            Paper(
                arxiv_id=f"2501.{(salt * 64 + index) % 99_999 + 1:05d}",
                version=1,
                title=source.title,
                authors=list(source.authors),
                abstract=source.abstract,
                url="https://arxiv.org/abs/2501.00001v1",
                pdf_url="https://arxiv.org/pdf/2501.00001v1",
                published_date=date(2025, 1, 1),
                updated_date=date(2025, 1, 1),
                categories=list(source.categories),
            )
        )
    return papers


@shared_task(name=FANOUT_THREADS)  # type: ignore[untyped-decorator]
def fanout_threads(count: int, salt: int) -> int:
    """Summarise the papers on the summarizer's thread pool; returns how many the LLM wrote."""
    resources = stage_resources()
    batch = summarize_papers(
        sample_papers(count, salt),
        resources.summarizer,
        resources.summary_cache,
        concurrency=resources.settings.summary_concurrency,
        final_attempt=True,
    )
    return batch.count("llm")


@shared_task(bind=True, name=FANOUT_CHORD)  # type: ignore[untyped-decorator]
def fanout_chord(self: Task, count: int, salt: int) -> None:
    """Become a chord: one summarize_one task per paper, then gather."""
    header = [
        summarize_one.s(paper.model_dump(mode="json")).set(queue=QUEUE)
        for paper in sample_papers(count, salt)
    ]
    raise self.replace(chord(header, gather.s().set(queue=QUEUE)))


@shared_task(name=SUMMARIZE_ONE)  # type: ignore[untyped-decorator]
def summarize_one(paper: dict[str, Any]) -> str:
    summarizer = stage_resources().summarizer
    assert summarizer is not None, "the benchmark's worker always has an LLM"
    return summarizer.summarize(Paper.model_validate(paper))


@shared_task(name=GATHER)  # type: ignore[untyped-decorator]
def gather(summaries: list[str]) -> int:
    return len(summaries)

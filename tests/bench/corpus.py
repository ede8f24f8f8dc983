"""The corpus benchmark: ingest rate, and index size, RSS and hybrid retrieval latency by size.

    .venv/bin/python -m tests.bench.corpus                        # 10 000 and 100 000 records
    .venv/bin/python -m tests.bench.corpus --sizes 10000 --queries 200
    .venv/bin/python -m tests.bench.corpus --cases ingest
    .venv/bin/python -m tests.bench.corpus --cases job --jobs 10

`ingest`: real records (the shared snapshot sample, its 200 lines repeated
under new ids up to --ingest-records) through `ingest_snapshot` with the
embedder the settings choose (EMBEDDINGS), in this process.

`job`: a real worker over the ingested sample, the fake LLM answering in
500 ms, jobs whose date range ends before the watermark (no arXiv call), 5
papers each, summary cache emptied before each; submit-to-result p50.

`retrieval`: per size, one embedded (local mode) store in a fresh child
process, filled with synthetic papers: vectors of the sample's real records
plus Gaussian noise, titles and abstracts made of the sample's words
reshuffled (retrieval cost does not depend on what the vectors mean). Then
--queries hybrid recalls (dense + BM25, RRF, with a date filter on half of
them) are timed: p50 and p95 in milliseconds; the child's peak RSS and the
store's bytes on disk are reported beside them.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient

from schemas.research import Paper
from tasks.corpus_ingest import SnapshotFilter, ingest_snapshot, parse_snapshot_record
from tasks.corpus_status import directory_bytes
from tasks.paper_index import PaperIndex
from tests.support.snapshot_lines import SHARED_SAMPLE
from worker.resources import build_embedder, openai_client_for
from worker.settings import load_settings

COLLECTION = "research_papers"


def sample_papers() -> list[Paper]:
    lines = SHARED_SAMPLE.read_text(encoding="utf-8").splitlines()
    return [parse_snapshot_record(line) for line in lines if line.strip()]


# --- ingest -------------------------------------------------------------------------


def ingest_case(records: int, work_dir: Path) -> str:
    settings = load_settings()
    client = openai_client_for(settings) if settings.embeddings == "openai" else None
    embedder = build_embedder(settings, client)
    lines = SHARED_SAMPLE.read_text(encoding="utf-8").splitlines()
    snapshot = work_dir / "ingest.jsonl"
    with snapshot.open("w", encoding="utf-8") as out:
        for n in range(records):
            record = json.loads(lines[n % len(lines)])
            record["id"] = f"{record['id']}-{n // len(lines)}"
            out.write(json.dumps(record) + "\n")
    index = PaperIndex(
        lambda: QdrantClient(path=str(work_dir / "ingest-qdrant")),
        COLLECTION,
        embedder,
        summary_model=None,
    )
    try:
        summary = ingest_snapshot([snapshot], index, SnapshotFilter(), work_dir / "checkpoints")
    finally:
        index.close()
    rate = summary.counts.ingested / summary.seconds
    return (
        f"ingest, one process, embedder {embedder.name}: {summary.counts.ingested} records "
        f"in {summary.seconds:.1f} s = {rate:,.0f} records/s"
    )


# --- a job over the corpus ---------------------------------------------------------


def job_case(jobs: int, work_dir: Path) -> str:
    """Jobs answered by the corpus alone (end date before the watermark), LLM 500 ms, 5 papers."""
    import redis

    from tasks.constants import SUMMARY_CACHE_PREFIX
    from tests.support.fake_arxiv import FakeArxivServer
    from tests.support.fake_openai import FakeOpenAIServer
    from tests.support.stack import Stack
    from tests.support.worker_process import run_cli

    env = {"QDRANT_PATH": str(work_dir / "job-qdrant"), "DATA_DIR": str(work_dir / "job-data")}
    ingested = run_cli("corpus", "ingest", str(SHARED_SAMPLE), env=env)
    if ingested.returncode != 0:
        raise RuntimeError(f"the corpus ingest failed:\n{ingested.stderr[-2000:]}")
    titles = [p.title for p in sample_papers()]
    wall, reported = [], []
    stages: dict[str, list[float]] = {}
    with Stack(
        work_dir / "job-stack",
        arxiv=FakeArxivServer(),
        llm=FakeOpenAIServer(latency_seconds=0.5),
    ) as stack:
        stack.start_worker("job", **env)
        client = stack.client()
        with redis.Redis.from_url(stack.redis_url) as plain:
            for n in range(jobs + 1):
                # Fresh summaries each time: the LLM's 500 ms is part of every job.
                for key in plain.scan_iter(f"{SUMMARY_CACHE_PREFIX}*"):
                    plain.delete(key)
                started = time.perf_counter()
                job_id = client.submit(
                    {"query": titles[n * 7 % len(titles)], "end_date": "2007-03-31"}
                )
                response = client.result(job_id, timeout=60)
                if n:  # the first job opens the store and warms the worker
                    wall.append((time.perf_counter() - started) * 1000)
                    reported.append(response.search_time_ms)
                    for stage in response.provenance.stages:
                        stages.setdefault(stage.name, []).append(stage.duration_ms)
        arxiv_requests = len(stack.arxiv.requests)
    return (
        f"job over the corpus (200 records), 5 papers, LLM 500 ms, {jobs} jobs: "
        f"submit-to-result p50 {statistics.median(wall):.0f} ms, max {max(wall):.0f} ms; "
        f"search_time_ms p50 {statistics.median(reported):.0f}; arXiv requests {arxiv_requests}\n"
        "  stage p50 ms: "
        + ", ".join(f"{name} {statistics.median(ms):.0f}" for name, ms in stages.items())
    )


# --- retrieval ----------------------------------------------------------------------


class NoisyEmbedder:
    """Real vectors plus noise: each text gets a sample vector chosen by its hash, perturbed."""

    def __init__(self, base: np.ndarray, name: str, noise: float = 0.3, seed: int = 7) -> None:
        self._base = base
        self._name = name
        self._noise = noise
        self._rng = np.random.default_rng(seed)

    @property
    def name(self) -> str:
        return self._name

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        rows = self._base[self._rng.integers(0, len(self._base), len(texts))]
        noisy = rows + self._rng.normal(0.0, self._noise / np.sqrt(rows.shape[1]), rows.shape)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        result: list[list[float]] = noisy.tolist()
        return result


def synthetic_papers(sample: list[Paper], count: int, first: int) -> list[Paper]:
    """`count` papers numbered from `first` (their ids), reproducibly random."""
    rng = random.Random(first)
    words = [w for p in sample for w in f"{p.title} {p.abstract}".split()]
    start = date(2007, 4, 1)
    categories = sorted({c for p in sample for c in p.categories})
    papers = []
    for n in range(first, first + count):
        template = sample[n % len(sample)]
        day = start + timedelta(days=rng.randrange(6000))
        papers.append(
            template.model_copy(
                update={
                    "arxiv_id": f"9{n:09d}",
                    "title": " ".join(rng.choices(words, k=10)),
                    "abstract": " ".join(rng.choices(words, k=150)),
                    "published_date": day,
                    "updated_date": day,
                    "categories": rng.sample(categories, k=2),
                }
            )
        )
    return papers


def retrieval_child(size: int, queries: int, store: Path) -> dict[str, float]:
    """Fill a store with `size` synthetic papers and time `queries` recalls (run in a child)."""
    sample = sample_papers()
    settings = load_settings()
    real = build_embedder(settings, None)
    base = np.asarray(real.embed([f"{p.title}\n{p.abstract}" for p in sample]))
    embedder = NoisyEmbedder(base, real.name)
    index = PaperIndex(
        lambda: QdrantClient(path=str(store)), COLLECTION, embedder, summary_model=None
    )
    loaded = time.perf_counter()
    batch = 1000
    for first in range(0, size, batch):
        index.store_snapshot(synthetic_papers(sample, min(batch, size - first), first))
    load_seconds = time.perf_counter() - loaded
    rng = random.Random(1)
    texts = [p.title for p in sample]
    timings = []
    for n in range(queries):
        query = rng.choice(texts)
        dated = n % 2 == 0
        started = time.perf_counter()
        index.recall(
            query,
            limit=15,
            min_similarity=0.3,
            start_date=date(2012, 1, 1) if dated else None,
            end_date=date(2020, 12, 31) if dated else None,
        )
        timings.append((time.perf_counter() - started) * 1000)
    index.close()
    return retrieval_figures(size, load_seconds, timings, store)


def retrieval_figures(
    size: int, load_seconds: float, timings_ms: Sequence[float], store: Path
) -> dict[str, float]:
    """A retrieval child's figures: load time, query p50 and p95, peak RSS, bytes on disk."""
    timings = sorted(timings_ms)
    return {
        "size": size,
        "load_seconds": load_seconds,
        "p50_ms": statistics.median(timings),
        "p95_ms": timings[int(0.95 * (len(timings) - 1))],
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "bytes_on_disk": directory_bytes(store),
    }


def retrieval_case(
    sizes: Sequence[int],
    queries: int,
    work_dir: Path,
    *,
    module: str = "tests.bench.corpus",
    engine: str = "embedded local mode",
) -> str:
    """Per size, `python -m MODULE --child SIZE QUERIES STORE` in a fresh process; a table."""
    rows = ["size      load s   p50 ms   p95 ms   RSS MiB   on disk MiB"]
    for size in sizes:
        store = work_dir / f"retrieval-{size}"
        child = [sys.executable, "-m", module, "--child", str(size), str(queries), str(store)]
        done = subprocess.run(child, capture_output=True, text=True, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(
            f"{size:<9,} {figures['load_seconds']:7.1f} {figures['p50_ms']:8.1f} "
            f"{figures['p95_ms']:8.1f} {figures['rss_mib']:9.0f} "
            f"{figures['bytes_on_disk'] / 2**20:13.1f}"
        )
    return f"hybrid retrieval, {engine}, limit 15:\n" + "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.corpus", description=__doc__)
    parser.add_argument("--cases", default="ingest,retrieval,job")
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--ingest-records", type=int, default=2000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        size, queries, store = args.child
        print(json.dumps(retrieval_child(int(size), int(queries), Path(store))))
        return 0
    if not SHARED_SAMPLE.is_file():
        print(f"the shared snapshot sample is not at {SHARED_SAMPLE}", file=sys.stderr)
        return 2
    cases = args.cases.split(",")
    with tempfile.TemporaryDirectory(prefix="corpus-bench-") as tmp:
        work_dir = Path(tmp)
        if "ingest" in cases:
            print(ingest_case(args.ingest_records, work_dir), flush=True)
        if "job" in cases:
            print(job_case(args.jobs, work_dir), flush=True)
        if "retrieval" in cases:
            sizes = [int(size) for size in args.sizes.split(",")]
            print(retrieval_case(sizes, args.queries, work_dir), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

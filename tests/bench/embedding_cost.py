"""What the local embedding model costs on this machine: CPU and wall time per text.

    .venv/bin/python -m tests.bench.embedding_cost [--texts 96] [--repeats 3]

Embeds title + abstract of real arXiv records (the Kaggle snapshot's first 200
lines in ../shared/data/arxiv_metadata, read at run time; without it, the
synthetic corpus of the fake arXiv server) with the packaged
all-MiniLM-L6-v2 (int8, ONNX Runtime), at several token lengths, batch sizes
and intra-op thread counts, and prints one markdown table. CPU is this
process's user + system time (ONNX Runtime's threads included); each figure
is the median of --repeats passes over the same texts. Nothing here asserts:
it prints what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from tasks.onnx_embedder import OnnxEmbedder, OnnxOptions, packaged_model_files
from tests.support.arxiv_corpus import default_corpus

RECORDS = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "arxiv_metadata"
    / "kaggle_arxiv-metadata-oai-snapshot_head200.jsonl"
)


def paper_texts(limit: int) -> tuple[list[str], str]:
    """Title and abstract of `limit` papers, as the rank stage embeds them, and their source."""
    if not RECORDS.is_file():
        corpus = default_corpus()[:limit]
        return [f"{p.title}\n{p.abstract}" for p in corpus], "the fake arXiv's synthetic corpus"
    texts = []
    with RECORDS.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            title = " ".join(record["title"].split())
            abstract = " ".join(record["abstract"].split())
            texts.append(f"{title}\n{abstract}")
            if len(texts) == limit:
                break
    return texts, str(RECORDS)


def measure(
    texts: Sequence[str], max_tokens: int, batch_size: int, threads: int, repeats: int
) -> tuple[float, float, float]:
    """Median CPU ms per text, wall ms per text, and mean tokens per text."""
    options = OnnxOptions(max_tokens=max_tokens, batch_size=batch_size, threads=threads)
    embedder = OnnxEmbedder.load(packaged_model_files(), "all-MiniLM-L6-v2", options)
    embedder.embed(texts[:batch_size])  # warm-up: first runs allocate buffers
    cpu, wall = [], []
    tokens = 0
    for _ in range(repeats):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        tokens = embedder.embed_with_usage(texts).tokens
        cpu.append((time.process_time() - start_cpu) * 1000 / len(texts))
        wall.append((time.perf_counter() - start_wall) * 1000 / len(texts))
    return statistics.median(cpu), statistics.median(wall), tokens / len(texts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.embedding_cost")
    parser.add_argument("--texts", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", default="32,64,128,256")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args(argv)
    texts, source = paper_texts(args.texts)
    print(f"- {len(texts)} title + abstract texts from {source}; {os.cpu_count()} cores")
    print(f"- load average at start: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("| max tokens | batch | threads | tokens/text | CPU ms/text | wall ms/text |")
    print("|---:|---:|---:|---:|---:|---:|")
    for length in (int(x) for x in args.lengths.split(",")):
        for batch in (int(x) for x in args.batches.split(",")):
            for threads in (int(x) for x in args.threads.split(",")):
                cpu, wall, tokens = measure(texts, length, batch, threads, args.repeats)
                print(
                    f"| {length} | {batch} | {threads} | {tokens:.0f} | {cpu:.1f} | {wall:.1f} |",
                    flush=True,
                )
    print(f"\n- load average at end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What embedding only the lexical best of a job's fresh candidates costs in ranking.

    .venv/bin/python -m tests.bench.rerank_depth

A proxy, not the graded evaluation (`make eval`): for each query below, the
pool is the 15 best BM25 matches among the real arXiv records in
../shared/data/arxiv_metadata (about what arXiv's keyword search hands a
5-paper job), and the reference is the top 5 after ranking the whole pool
with the model (every candidate embedded, 128 tokens). It prints how many of
those 5 each cheaper choice keeps: ranking on BM25 alone, embedding only the
lexical top k of the pool (the rest ranked on BM25 alone), or cutting texts
at 64 tokens. Nothing here asserts: it prints what it measured.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from schemas.research import Paper
from tasks.onnx_embedder import OnnxEmbedder, OnnxOptions, packaged_model_files
from tasks.paper_vectors import paper_text
from tasks.relevance import lexical_scores, paper_lexical_scores, rank_candidates

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "arxiv_metadata"
POOL = 15
KEPT = 5
DEPTHS = (5, 8, 10)

# Written for the topics of the cs.CL records; the paraphrases avoid the words
# the relevant titles use.
QUERIES = {
    "keyword": [
        "retrieval augmented generation agents",
        "machine translation for low-resource languages",
        "self-supervised speech models",
        "hallucination mitigation in large language models",
        "mixture of experts training",
        "reinforcement learning for LLM reasoning",
        "text normalization for speech synthesis",
        "toxic span detection",
        "instruction following benchmark",
        "punctuation restoration dataset",
    ],
    "paraphrase": [
        "making chatbots stop inventing facts",
        "deciding when to talk in a spoken conversation",
        "computers translating between rarely written languages",
        "finding the right spreadsheet to answer a hard question",
        "assistants that look things up on the web to write a long report",
        "running big text generators on ordinary processors",
    ],
}


def load_records() -> list[Paper]:
    """The cs.CL records (arXiv API JSON) and the Kaggle snapshot's first 200, as Papers."""
    raw: list[dict[str, str]] = []
    raw += json.loads((DATA / "arxiv_api_cat_cs.CL_latest500_2026-03.json").read_text())
    with (DATA / "kaggle_arxiv-metadata-oai-snapshot_head200.jsonl").open() as lines:
        raw += [json.loads(line) for line in lines]
    papers = []
    for number, record in enumerate(raw):
        arxiv_id = f"2601.{number:05d}"
        papers.append(
            Paper(
                arxiv_id=arxiv_id,
                version=1,
                title=" ".join(record["title"].split()),
                authors=["A. Author"],
                abstract=" ".join(record["abstract"].split()),
                url=f"https://arxiv.org/abs/{arxiv_id}v1",
                pdf_url=f"https://arxiv.org/pdf/{arxiv_id}v1",
                published_date=date(2026, 1, 1),
                updated_date=date(2026, 1, 1),
                categories=["cs.CL"],
            )
        )
    return papers


def top_ids(
    query: str,
    pool: Sequence[Paper],
    query_vector: list[float] | None,
    vectors: dict[str, list[float]] | None,
) -> set[str]:
    if vectors is None:  # BM25 alone
        ranked = rank_candidates(
            query, pool, max_papers=KEPT, lexical_weight=1.0, paper_vectors={}, query_vector=[0.0]
        )
    else:
        ranked = rank_candidates(
            query, pool, max_papers=KEPT, query_vector=query_vector, paper_vectors=vectors
        )
    return {paper.arxiv_id for paper in ranked}


def main() -> int:
    records = load_records()
    texts = [f"{p.title}\n{p.title}\n{p.abstract}" for p in records]
    model128 = OnnxEmbedder.load(packaged_model_files(), "m", OnnxOptions(max_tokens=128))
    model64 = OnnxEmbedder.load(packaged_model_files(), "m", OnnxOptions(max_tokens=64))
    print(f"- {len(records)} real arXiv records from {DATA}")
    print(f"- pool: the {POOL} best BM25 matches; reference: the top {KEPT} with all embedded")
    print()
    print("| queries | BM25 alone | " + " | ".join(f"embed top {k}" for k in DEPTHS), end="")
    print(" | all at 64 tokens |")
    print("|:---|---:|" + "---:|" * len(DEPTHS) + "---:|")
    started = time.monotonic()
    for group, queries in QUERIES.items():
        kept: dict[str, list[int]] = {"bm25": [], "64": [], **{str(k): [] for k in DEPTHS}}
        for query in queries:
            scores = lexical_scores(query, texts)
            best = sorted(range(len(records)), key=lambda i: -scores[i])[:POOL]
            pool = [records[i] for i in best]
            pool_texts = [paper_text(p) for p in pool]
            query128 = model128.embed([query])[0]
            vectors128 = dict(
                zip([p.arxiv_id for p in pool], model128.embed(pool_texts), strict=True)
            )
            vectors64 = dict(
                zip([p.arxiv_id for p in pool], model64.embed(pool_texts), strict=True)
            )
            reference = top_ids(query, pool, query128, vectors128)
            kept["bm25"].append(len(reference & top_ids(query, pool, None, None)))
            lexical = paper_lexical_scores(query, pool)
            order = [pool[i] for i in sorted(range(len(pool)), key=lambda i: -lexical[i])]
            for depth in DEPTHS:
                some = {p.arxiv_id: vectors128[p.arxiv_id] for p in order[:depth]}
                kept[str(depth)].append(len(reference & top_ids(query, pool, query128, some)))
            query64 = model64.embed([query])[0]
            kept["64"].append(len(reference & top_ids(query, pool, query64, vectors64)))
        cells = [kept["bm25"], *(kept[str(k)] for k in DEPTHS), kept["64"]]
        print(
            f"| {group} ({len(queries)}) | "
            + " | ".join(f"{statistics.fmean(c):.1f} of {KEPT}" for c in cells)
            + " |"
        )
    print(f"\n_{time.monotonic() - started:.0f} s._")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

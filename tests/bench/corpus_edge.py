"""Hybrid retrieval in qdrant-edge-py (Qdrant's engine in-process), for comparison with local mode.

qdrant-edge-py is not a dependency of research-arm: this script measures
whether it would serve as the embedded store. Run it from a venv that has it,
with the project on the path:

    python3 -m venv /tmp/edge && /tmp/edge/bin/pip install qdrant-edge-py numpy
    PYTHONPATH=.:.venv/lib/python3.11/site-packages /tmp/edge/bin/python \\
        -m tests.bench.corpus_edge --sizes 10000,100000

Same synthetic records as `tests.bench.corpus` (real vectors plus noise, the
sample's words reshuffled), the same BM25 term weights (`tasks.bm25_terms`),
a dense and a sparse (IDF) prefetch fused with RRF, a date filter on half the
queries; each size in a child process, whose peak RSS is reported.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from tasks.bm25_terms import document_terms, query_terms
from tasks.embeddings import HashingEmbedder
from tasks.paper_index import day_number
from tests.bench.corpus import (
    NoisyEmbedder,
    retrieval_case,
    retrieval_figures,
    sample_papers,
    synthetic_papers,
)

DENSE = "dense"
SPARSE = "bm25"


def child(size: int, queries: int, store: Path) -> dict[str, float]:
    import qdrant_edge as edge

    sample = sample_papers()
    base = np.asarray(HashingEmbedder().embed([f"{p.title}\n{p.abstract}" for p in sample]))
    embedder = NoisyEmbedder(base, DENSE)
    config = edge.EdgeConfig(
        vectors={DENSE: edge.EdgeVectorParams(size=base.shape[1], distance=edge.Distance.Cosine)},
        sparse_vectors={SPARSE: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
    )
    shard = edge.EdgeShard.create(str(store), config)
    shard.update(
        edge.UpdateOperation.create_field_index("published_day", edge.PayloadSchemaType.Integer)
    )
    started = time.perf_counter()
    batch = 1000
    for first in range(0, size, batch):
        papers = synthetic_papers(sample, min(batch, size - first), first)
        vectors = embedder.embed([f"{p.title}\n{p.abstract}" for p in papers])
        points = []
        for number, (paper, vector) in enumerate(zip(papers, vectors, strict=True), start=first):
            terms = document_terms(paper.title, paper.abstract)
            points.append(
                edge.Point(
                    id=number + 1,
                    vector={DENSE: vector, SPARSE: edge.SparseVector(terms.indices, terms.values)},
                    payload={
                        "published_day": day_number(paper.published_date),
                        "categories": paper.categories,
                    },
                )
            )
        shard.update(edge.UpdateOperation.upsert_points(points))
    shard.flush()
    shard.optimize()  # builds the HNSW graph, as the server's optimizer would
    load_seconds = time.perf_counter() - started

    rng = random.Random(1)
    texts = [p.title for p in sample]
    dated_filter = edge.Filter(
        must=[
            edge.FieldCondition(
                key="published_day",
                range=edge.RangeFloat(
                    gte=day_number(date(2012, 1, 1)), lte=day_number(date(2020, 12, 31))
                ),
            )
        ]
    )
    timings = []
    for n in range(queries):
        text = rng.choice(texts)
        chosen_filter: Any = dated_filter if n % 2 == 0 else None
        started = time.perf_counter()
        dense = embedder.embed([text])[0]
        sparse = query_terms(text)
        shard.query(
            edge.QueryRequest(
                limit=15,
                prefetches=[
                    edge.Prefetch(
                        limit=30,
                        query=edge.Query.Nearest(dense, using=DENSE),
                        filter=chosen_filter,
                        score_threshold=0.3,
                    ),
                    edge.Prefetch(
                        limit=30,
                        query=edge.Query.Nearest(
                            edge.SparseVector(sparse.indices, sparse.values), using=SPARSE
                        ),
                        filter=chosen_filter,
                    ),
                ],
                query=edge.Fusion.Rrf(k=60),
                with_payload=True,
            )
        )
        timings.append((time.perf_counter() - started) * 1000)
    shard.close()
    return retrieval_figures(size, load_seconds, timings, store)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.corpus_edge", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        size, queries, store = args.child
        print(json.dumps(child(int(size), int(queries), Path(store))))
        return 0
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="corpus-edge-") as tmp:
        table = retrieval_case(
            sizes,
            args.queries,
            Path(tmp),
            module="tests.bench.corpus_edge",
            engine="qdrant-edge-py",
        )
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

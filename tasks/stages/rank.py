"""Rank: score the candidates, keep the best `max_papers`, and cite each kept paper."""

from __future__ import annotations

from tasks.citations import apa_reference, bibtex_entry
from tasks.embeddings import Embedder
from tasks.job import JobState, record_embedding
from tasks.paper_vectors import PaperVectorLookup
from tasks.relevance import lexical_order, rank_candidates
from tasks.resources import StageResources
from tasks.stage import Attempt, Stage, StageResult


def rank(
    job: JobState, embedder: Embedder, vectors: PaperVectorLookup | None = None, fresh: int = 0
) -> StageResult:
    """Score, sort and keep the best papers; each kept paper gets its citations.

    With `vectors`, the query is embedded once and each paper's vector is
    looked up (store, cache) before it is computed; only candidates among the
    lexical best `max(fresh, max_papers)` are embedded when no vector is
    known, the others without one are ranked on the lexical score alone
    (docs/embeddings.md says why).
    Without it, `embedder` embeds the query and every candidate.
    What the embedding model read goes into the job's usage ledger.
    """
    request = job.request
    query_vector, paper_vectors = None, None
    tokens = 0
    if vectors is not None and job.candidates:
        query_batch = vectors.embedder.embed_with_usage([request.query])
        ordered = lexical_order(request.query, job.candidates)
        depth = max(fresh, request.max_papers)
        found = vectors.vectors_for(ordered[:depth])
        known_beyond = vectors.known_vectors(ordered[depth:])
        query_vector = query_batch.vectors[0]
        paper_vectors = {**known_beyond.vectors, **found.vectors}
        record_embedding(job, query_batch.tokens)
        record_embedding(job, found.tokens)
        tokens = query_batch.tokens + found.tokens
    ranked = rank_candidates(
        request.query,
        job.candidates,
        embedder,
        max_papers=request.max_papers,
        min_relevance=request.min_relevance,
        query_vector=query_vector,
        paper_vectors=paper_vectors,
    )
    job.papers = [
        paper.model_copy(update={"citation": apa_reference(paper), "bibtex": bibtex_entry(paper)})
        for paper in ranked
    ]
    job.candidates = []  # no need to carry the losers down the chain
    return StageResult(embedding_tokens=tokens)


def run(job: JobState, resources: StageResources, attempt: Attempt) -> StageResult:
    return rank(job, resources.embedder, resources.paper_vectors, resources.fresh_embeddings)


STAGE = Stage(name="rank", service="embeddings", run=run)

"""Rank: score the candidates, keep the best `max_papers`, and cite each kept paper."""

from __future__ import annotations

from tasks.citations import apa_reference, bibtex_entry
from tasks.job import JobState, record_embedding
from tasks.paper_vectors import PaperVectorLookup
from tasks.relevance import paper_lexical_scores, rank_candidates
from tasks.resources import StageResources
from tasks.stage import Attempt, Stage, StageResult


def rank(job: JobState, vectors: PaperVectorLookup, fresh: int) -> StageResult:
    """Score, sort and keep the best papers; each kept paper gets its citations.

    The query is embedded once, and each candidate's vector is looked up
    (store, cache) before it is computed; only candidates among the lexical
    best `max(fresh, max_papers)` are embedded when no vector is known, the
    others without one are ranked on the lexical score alone
    (docs/embeddings.md says why). What the embedding model read goes into
    the job's usage ledger.
    """
    request = job.request
    candidates = job.candidates
    if not candidates:
        job.papers = []
        return StageResult()
    lexical = paper_lexical_scores(request.query, candidates)
    by_lexical_score = sorted(range(len(candidates)), key=lambda position: -lexical[position])
    query = vectors.embedder.embed_with_usage([request.query])
    found = vectors.vectors_for(
        [candidates[position] for position in by_lexical_score],
        embeddable=max(fresh, request.max_papers),
    )
    record_embedding(job, query.tokens)
    record_embedding(job, found.tokens)
    ranked = rank_candidates(
        request.query,
        candidates,
        max_papers=request.max_papers,
        min_relevance=request.min_relevance,
        query_vector=query.vectors[0],
        paper_vectors=found.vectors,
        lexical=lexical,
    )
    job.papers = [
        paper.model_copy(update={"citation": apa_reference(paper), "bibtex": bibtex_entry(paper)})
        for paper in ranked
    ]
    job.candidates = []  # no need to carry the losers down the chain
    return StageResult(embedding_tokens=query.tokens + found.tokens)


def run(job: JobState, resources: StageResources, attempt: Attempt) -> StageResult:
    return rank(job, resources.paper_vectors, resources.fresh_embeddings)


STAGE = Stage(name="rank", service="embeddings", run=run)

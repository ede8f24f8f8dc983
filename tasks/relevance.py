"""Relevance of candidate papers to the query: score, sort, keep the best.

A paper's score in [0, 1] blends two signals:

- lexical: BM25 over the candidates, normalised against the ideal so that it
  reads as "how much of the query this paper covers" (`lexical_scores`);
- semantic: the cosine between the query's and the paper's embeddings,
  negative values counted as 0 (`rank_candidates`, with any `Embedder`, or
  with vectors the caller looked up: `tasks.paper_vectors`). A paper without
  a vector (the rank stage embeds only the lexical best of the fresh
  candidates) has no semantic evidence and scores 0 on that part.

The job's confidence (`job_confidence`) then summarises the papers kept.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
from numpy.typing import NDArray

from schemas.research import Paper
from tasks.embeddings import Embedder
from tasks.paper_vectors import paper_text
from tasks.text_terms import stemmed_terms

# BM25's usual constants: k1 sets how fast repeated terms stop adding score,
# b how much a long document is penalised for its length.
BM25_K1: Final = 1.5
BM25_B: Final = 0.75

# The lexical score's share of the blend, the semantic model's the rest. Tuned
# on the evaluation's tune half with all-MiniLM-L6-v2 (`python -m tests.eval.tune`):
# 0.2-0.5 rank alike there; lexical-heavier blends lose the paraphrased queries.
LEXICAL_WEIGHT: Final = 0.3


def lexical_scores(query: str, documents: Sequence[str]) -> list[float]:
    """BM25 score of each document for `query`, as a fraction of the ideal, in [0, 1].

    Args:
        query: the user's search text.
        documents: the candidates' texts; term rarity (IDF) is measured among them.

    A document's BM25 is divided by what it would score if every query term
    occurred in it without limit (the sum over query terms of idf·(k1+1)). The
    score thus grows with how much of the query the document covers, each term
    weighted by its rarity among the candidates, and is never rescaled to the
    best candidate: a weak lot scores low. A document of average length that
    mentions every query term once scores 1/(k1+1) = 0.4; repeats raise that.
    A term repeated in the query counts once; a query with no content words
    (only stopwords) scores 0 everywhere.
    """
    if not documents:
        return []
    query_terms = list(dict.fromkeys(stemmed_terms(query)))
    if not query_terms:
        return [0.0] * len(documents)

    term_counts = [Counter(stemmed_terms(document)) for document in documents]
    lengths = [sum(counts.values()) for counts in term_counts]
    average_length = sum(lengths) / len(lengths)
    if average_length == 0:
        return [0.0] * len(documents)

    n_documents = len(documents)
    idf = {}
    for term in query_terms:
        frequency = sum(1 for counts in term_counts if term in counts)
        # The "+1" inside the log keeps IDF positive even for a term in every document.
        idf[term] = math.log(1.0 + (n_documents - frequency + 0.5) / (frequency + 0.5))
    ideal = sum(idf[term] * (BM25_K1 + 1.0) for term in query_terms)

    scores = []
    for counts, length in zip(term_counts, lengths, strict=True):
        length_penalty = BM25_K1 * (1.0 - BM25_B + BM25_B * length / average_length)
        score = 0.0
        for term in query_terms:
            frequency = counts[term]
            score += idf[term] * frequency * (BM25_K1 + 1.0) / (frequency + length_penalty)
        scores.append(min(1.0, score / ideal))
    return scores


def paper_lexical_scores(query: str, papers: Sequence[Paper]) -> list[float]:
    """`lexical_scores` of each paper's title and abstract, as `rank_candidates` blends them."""
    return lexical_scores(query, [document_text(paper.title, paper.abstract) for paper in papers])


def document_text(title: str, abstract: str) -> str:
    """What a paper's lexical score reads, here and in the index's BM25 vectors.

    The title twice: a query term in the title says more than one in the abstract.
    """
    return f"{title}\n{title}\n{abstract}"


def rank_candidates(
    query: str,
    papers: Sequence[Paper],
    embedder: Embedder | None = None,
    *,
    max_papers: int,
    min_relevance: float = 0.0,
    lexical_weight: float = LEXICAL_WEIGHT,
    query_vector: Sequence[float] | None = None,
    paper_vectors: Mapping[str, Sequence[float]] | None = None,
    lexical: Sequence[float] | None = None,
) -> list[Paper]:
    """Score `papers` for `query` and return the best, best first.

    Args:
        query: the user's search text.
        papers: the candidates, with distinct arxiv_ids (the caller deduplicates).
        embedder: embeds what is not given below; without `paper_vectors`, the
            query and every paper go in one `embed()` call.
        max_papers: how many papers to keep at most (at least 1).
        min_relevance: papers scoring below this are dropped.
        lexical_weight: the lexical score's share of the blend, in [0, 1]; the
            semantic score gets the rest.
        query_vector: the query's unit vector, if the job has it already.
        paper_vectors: unit vectors by arxiv_id, looked up by the caller
            (`tasks.paper_vectors`); a paper missing from it scores 0 on the
            semantic part.
        lexical: `paper_lexical_scores(query, papers)`, if the caller has them.

    Returns:
        New `Paper` objects with `relevance_score` set (rounded to 4 places);
        equal scores are ordered by newer `updated_date`, then by `arxiv_id`, so
        the same candidates always come back in the same order.

    Raises whatever the embedder raises (an `UpstreamError` for a remote one).
    """
    if max_papers < 1:
        raise ValueError(f"max_papers must be at least 1, got {max_papers}")
    if not 0.0 <= lexical_weight <= 1.0:
        raise ValueError(f"lexical_weight must be within [0, 1], got {lexical_weight}")
    if not papers:
        return []

    if lexical is None:
        lexical = paper_lexical_scores(query, papers)
    semantic = _semantic_scores(query, papers, embedder, query_vector, paper_vectors)

    blended = np.clip(
        lexical_weight * np.asarray(lexical) + (1.0 - lexical_weight) * semantic, 0.0, 1.0
    )
    scored = [
        paper.model_copy(update={"relevance_score": round(float(score), 4)})
        for paper, score in zip(papers, blended, strict=True)
    ]
    scored.sort(
        key=lambda paper: (-paper.relevance_score, -paper.updated_date.toordinal(), paper.arxiv_id)
    )
    kept = [paper for paper in scored if paper.relevance_score >= min_relevance]
    return kept[:max_papers]


def _semantic_scores(
    query: str,
    papers: Sequence[Paper],
    embedder: Embedder | None,
    query_vector: Sequence[float] | None,
    paper_vectors: Mapping[str, Sequence[float]] | None,
) -> NDArray[np.float64]:
    """Each paper's cosine with the query, in [0, 1]; 0 for a paper without a vector."""
    if paper_vectors is None:
        if embedder is None:
            raise ValueError("rank_candidates needs an embedder or paper_vectors")
        texts = [paper_text(paper) for paper in papers]
        vectors = embedder.embed(texts if query_vector is not None else [query, *texts])
        expected = len(texts) + (query_vector is None)
        if len(vectors) != expected:
            raise ValueError(
                f"embedder {embedder.name!r} returned {len(vectors)} vectors for {expected} texts"
            )
        if query_vector is None:
            query_vector, vectors = vectors[0], vectors[1:]
        paper_vectors = {
            paper.arxiv_id: vector for paper, vector in zip(papers, vectors, strict=True)
        }
    if query_vector is None:
        if embedder is None:
            raise ValueError("rank_candidates needs an embedder or query_vector")
        query_vector = embedder.embed([query])[0]
    known = [position for position, paper in enumerate(papers) if paper.arxiv_id in paper_vectors]
    semantic = np.zeros(len(papers), dtype=np.float64)
    if known:
        matrix = np.asarray(
            [paper_vectors[papers[position].arxiv_id] for position in known], dtype=np.float64
        )
        # Unit vectors, so the dot product is the cosine; an opposite direction
        # is no more relevant than an unrelated one.
        semantic[known] = np.clip(matrix @ np.asarray(query_vector, dtype=np.float64), 0.0, 1.0)
    return semantic


def job_confidence(scores: Sequence[float], max_papers: int) -> float:
    """How much to trust a job's answer, in [0, 1].

    Confidence is the mean relevance of the papers kept times the share of the
    requested papers that were found (min(1, papers kept / max_papers)); a job
    that found no paper has confidence 0.

    Args:
        scores: the relevance scores of the papers kept.
        max_papers: how many papers the request asked for (at least 1).
    """
    if max_papers < 1:
        raise ValueError(f"max_papers must be at least 1, got {max_papers}")
    if not scores:
        return 0.0
    mean = sum(scores) / len(scores)
    coverage = min(1.0, len(scores) / max_papers)
    return round(min(1.0, max(0.0, mean * coverage)), 4)

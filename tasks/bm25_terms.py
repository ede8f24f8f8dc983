"""BM25 as sparse vectors: term weights computed here, term rarity (IDF) by Qdrant.

BM25's score of a document for a query is the sum, over the query's terms, of
the term's IDF times its saturated frequency in the document:

    tf · (k1 + 1) / (tf + k1 · (1 - b + b · length / average_length))

The saturated frequency depends on the document alone, so it is computed when
the paper is indexed and stored as the weight of the term in the paper's
sparse vector. The IDF depends on the whole collection: Qdrant applies it at
query time (`modifier=IDF` on the sparse vector), from the current counts.
A query's sparse vector has weight 1 on each of its distinct terms, so the dot
product Qdrant computes is exactly BM25.

Terms are the ranker's own (`tasks.text_terms.stemmed_terms`): content words,
lower-cased, lightly stemmed, the title counted twice. A term's index in the
sparse vector is a 32-bit hash of its text (blake2b), the same in every process
and on every machine, unlike Python's salted `hash()`. Two terms colliding on one index
(odds about n²/2³³ for n distinct terms: a few pairs among a million terms)
merely share an IDF and add up.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from tasks.relevance import BM25_B, BM25_K1, document_text
from tasks.text_terms import content_words, stem

# The length (in terms) of a typical indexed paper, title twice plus abstract.
# BM25 penalises longer documents relative to this; it is fixed rather than
# measured on the collection so that a paper's weights never change after it
# is stored. The mean is 92 terms over the 2007 papers of the snapshot sample
# in ../shared and 150 over 500 recent cs.CL papers: abstracts grew longer.
AVERAGE_DOCUMENT_TERMS: Final = 120.0


@dataclass(frozen=True)
class SparseTerms:
    """A sparse vector: parallel lists of term indices (sorted) and their weights."""

    indices: list[int]
    values: list[float]


def term_index(term: str) -> int:
    """The stable 32-bit index of `term` in every sparse vector."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big")


# A pure function of the word, memoised: stemming and hashing each word of
# each record was most of an ingest's time outside the embedder, and a
# language's common words are few.
@lru_cache(maxsize=1 << 17)
def _word_index(word: str) -> int:
    return term_index(stem(word))


def _term_indices(text: str) -> list[int]:
    return [_word_index(word) for word in content_words(text)]


def document_terms(title: str, abstract: str) -> SparseTerms:
    """The BM25-saturated weight of each term of the paper; empty if it has no content word."""
    counts = Counter(_term_indices(document_text(title, abstract)))
    length = sum(counts.values())
    penalty = BM25_K1 * (1.0 - BM25_B + BM25_B * length / AVERAGE_DOCUMENT_TERMS)
    indices = sorted(counts)
    values = [counts[i] * (BM25_K1 + 1.0) / (counts[i] + penalty) for i in indices]
    return SparseTerms(indices, values)


def query_terms(query: str) -> SparseTerms:
    """Weight 1 on each distinct term of `query` (a term repeated in a query counts once)."""
    indices = sorted(set(_term_indices(query)))
    return SparseTerms(indices, [1.0] * len(indices))

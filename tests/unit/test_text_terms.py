"""What a word is, which words are dropped, and how a word becomes a term."""

from __future__ import annotations

import hashlib

import pytest

from tasks.embeddings import HashingEmbedder
from tasks.text_terms import (
    SEARCH_STOPWORDS,
    STOPWORDS,
    WORD,
    content_words,
    normalise,
    query_word_parts,
    query_words,
    stem,
    stemmed_terms,
)


def test_a_word_is_letters_and_digits_in_any_script_and_the_underscore_separates() -> None:
    assert WORD.findall("word_piece GPT-4, 3.5 l'été Москва 東京") == [
        "word",
        "piece",
        "GPT",
        "4",
        "3",
        "5",
        "l",
        "été",
        "Москва",
        "東京",
    ]


def test_a_query_word_keeps_inner_hyphens_and_dots_and_drops_query_syntax() -> None:
    assert query_words('Retrieval-augmented GPT-4 (v3.5) -neg "x" cat:hep-th a--b end.') == [
        "Retrieval-augmented",
        "GPT-4",
        "v3.5",
        "neg",
        "x",
        "cat",
        "hep-th",
        "a",
        "b",
        "end",
    ]


def test_a_query_word_keeps_its_case_and_a_combining_accent() -> None:
    assert query_words("Schro\u0308dinger") == ["Schrödinger"]


def test_a_query_word_splits_into_its_casefolded_parts() -> None:
    assert query_word_parts("LLM-based") == ["llm", "based"]
    assert query_word_parts("GPT-3.5") == ["gpt", "3", "5"]


def test_normalising_folds_case_ligatures_and_full_width_forms() -> None:
    full_width_gpt = "\uff27\uff30\uff34"

    assert normalise(f"Straße ﬁne-tuning {full_width_gpt}") == "strasse fine-tuning gpt"


def test_content_words_are_normalised_words_without_stopwords() -> None:
    assert content_words("The paper's results on ﬁne_tuning") == [
        "paper",
        "s",
        "results",
        "fine",
        "tuning",
    ]


def test_an_arxiv_query_also_drops_what_is_left_of_a_contraction() -> None:
    assert {"s", "t"} == SEARCH_STOPWORDS - STOPWORDS


def test_the_stopword_list_is_the_one_stored_vectors_were_made_with() -> None:
    # The hashing embedder's vectors and the BM25 term ids in Qdrant drop these
    # words. If this fails, stored vectors move: bump HashingEmbedder's version
    # and index the corpus again, or leave the list alone.
    digest = hashlib.sha256(" ".join(sorted(STOPWORDS)).encode()).hexdigest()
    assert (len(STOPWORDS), digest[:16]) == (126, "43cd7b6c2f051ad9")


@pytest.mark.parametrize(
    ("word", "term"),
    [
        ("caches", "cach"),
        ("cache", "cach"),
        ("approaches", "approach"),
        ("studies", "studi"),
        ("study", "studi"),
        ("class", "class"),
        ("corpus", "corpus"),
        ("analysis", "analysis"),
        ("gas", "gas"),
    ],
)
def test_stemming_gives_a_word_and_its_plural_one_term(word: str, term: str) -> None:
    assert stem(word) == term


def test_the_rankers_terms_are_stemmed_content_words() -> None:
    assert stemmed_terms("The studies of caches") == ["studi", "cach"]


@pytest.mark.parametrize(
    "text",
    [
        "word_piece tokenisation of the GPT-4 paper's results",
        "ﬁne-tuning \uff27\uff30\uff34 on Straße names",
        "Schro\u0308dinger l'été Москва 東京 x²",
        "   ",
        "the and of",
    ],
)
def test_the_hashing_embedder_finds_exactly_the_content_words(text: str) -> None:
    # Its numpy word split must agree with WORD: its vector of a text is the
    # vector of that text's content words alone.
    embedder = HashingEmbedder()

    assert embedder.embed([text]) == embedder.embed([" ".join(content_words(text))])

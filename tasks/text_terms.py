"""What a word is and which words say nothing, for every module that splits text into words.

Two word patterns, each for its own purpose:

- `WORD`: a run of letters and digits in any script (`str.isalnum`); the
  underscore, like every other character, separates ("word_piece" is two
  words). The lexical ranker, the BM25 sparse vectors, the hashing embedder and
  BibTeX keys split on it.
- `QUERY_WORD`: WORDs joined by single inner hyphens or dots ("GPT-4", "3.5",
  "hep-th"), so that an arXiv search term stays whole. Everything else,
  including every character with a meaning in arXiv's query syntax (quotes,
  brackets, colon, backslash, * ? ^ ~ + ! and a leading "-"), separates words
  and is never sent.

One stopword list, `STOPWORDS`; an arXiv query also drops `SEARCH_STOPWORDS`.

Stored data depends on this module: the hashing embedder's vectors and the
BM25 term ids held in Qdrant come from `WORD`, `normalise`, `STOPWORDS` and
`stem`. Changing any of them moves vectors already stored: the hashing
embedder's name (`local-hashing-v1-…`) must then take a new version, and the
corpus be indexed again.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

WORD: Final = re.compile(r"[^\W_]+")
QUERY_WORD: Final = re.compile(r"[^\W_]+(?:[-.][^\W_]+)*")
# What joins the parts of a QUERY_WORD.
_QUERY_WORD_JOINER: Final = re.compile(r"[-.]")

# The usual English function words.
STOPWORDS: Final[frozenset[str]] = frozenset(
    """
    a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during
    each few for from further had has have having he her here hers herself him
    himself his how i if in into is it its itself just me more most my myself no nor
    not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves
    """.split()  # noqa: SIM905 -- a word list reads better as prose than as quoted strings
)
# Plus "s" and "t", what is left of "paper's" and "don't" once the apostrophe
# separates words: quoted alone in an arXiv query they match nearly every paper.
# The stored features keep them (see the module's docstring).
SEARCH_STOPWORDS: Final[frozenset[str]] = STOPWORDS | {"s", "t"}

# Singular words that end in "s" and must keep it: "class", "corpus", "analysis".
_SINGULAR_S_ENDINGS: Final = ("ss", "us", "is")


def normalise(text: str) -> str:
    """`text` as words are compared: compatibility forms folded, then case-folded.

    NFKC makes ligatures and full-width forms the letters they look like ("ﬁ"
    becomes "fi"); casefold is lower-casing that also folds "ß" to "ss".
    """
    return unicodedata.normalize("NFKC", text).casefold()


def content_words(text: str) -> list[str]:
    """The normalised `WORD`s of `text`, in order, without STOPWORDS."""
    return [word for word in WORD.findall(normalise(text)) if word not in STOPWORDS]


def stem(word: str) -> str:
    """Light plural stemming, so that a word and its plural give the same term.

    Strips a plural "ies", "es" or "s" (words of four letters or more), then a
    final "e", and turns a final "y" into "i". The result need not be a word:
    "caches" and "cache" both give "cach", "approaches" and "approach" give
    "approach", "studies" and "study" give "studi". Deliberately crude (no
    dictionary); it is applied alike to the query and the papers.
    """
    if len(word) > 3 and word.endswith("s") and not word.endswith(_SINGULAR_S_ENDINGS):
        if word.endswith("ies"):
            word = word[:-3] + "i"
        elif word.endswith("es"):
            word = word[:-2]
        else:
            word = word[:-1]
    if len(word) > 2 and word.endswith("e"):
        word = word[:-1]
    elif len(word) > 2 and word.endswith("y"):
        word = word[:-1] + "i"
    return word


def stemmed_terms(text: str) -> list[str]:
    """The lexical ranker's terms of `text`: its content words, stemmed, in order."""
    return [stem(word) for word in content_words(text)]


def query_words(text: str) -> list[str]:
    """Every `QUERY_WORD` of `text` in order, as typed (case kept), in NFC."""
    # NFC first, so an accent typed as a combining mark stays inside its word.
    return QUERY_WORD.findall(unicodedata.normalize("NFC", text))


def query_word_parts(word: str) -> list[str]:
    """The case-folded parts of a `QUERY_WORD`: "GPT-4" gives ["gpt", "4"]."""
    return _QUERY_WORD_JOINER.split(word.casefold())

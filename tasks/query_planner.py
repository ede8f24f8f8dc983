"""Plan the arXiv searches for a request: a precise query first, a broad one if it finds too few.

One query that ORs every word of the request lets generic words ("models",
"LLMs", "generation") fill the candidate pool, and ranking can only reorder the
wrong papers. So the search stage asks arXiv, through the shared rate gate,
for the *precise* query first: every content term AND-ed, with the phrases the
user put in double quotes kept as phrases. Only when that finds fewer than
the pool size (`SearchPlan.max_results`) does it spend a second request on the *broad*
query: the specific terms OR-ed (the generic ones dropped, each phrase
followed by its words), so arXiv's relevance order still puts papers matching
more of them first.

    >>> plan = plan_search('"sparse retrieval" LLMs for medicine', ["cs.CL"], pool_size=15)
    >>> plan.precise
    'all:"sparse retrieval" AND all:"LLMs" AND all:"medicine" AND cat:cs.CL'
    >>> plan.broad
    '(all:"sparse retrieval" OR all:"sparse" OR all:"retrieval" OR all:"medicine") AND cat:cs.CL'

The plan is a pure function of the request's text, categories, date range and
the pool size, so a caller may narrow the date range (e.g. to what a local
corpus does not hold) and plan again. The user's text never reaches arXiv as
syntax: every term is a quoted `all:"..."` made only of words (see
`tasks.arxiv_query`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

from tasks.arxiv_query import (
    BOOLEAN_OPERATORS,
    MAX_TERMS,
    all_of,
    any_of,
    searchable_words,
    with_filters,
)
from tasks.text_terms import SEARCH_STOPWORDS, query_word_parts, query_words

# Each term AND-ed narrows the precise query; past a handful, few papers hold
# them all. It keeps the phrases and most specific words up to this many.
MAX_PRECISE_TERMS: Final = 6
# Longer quoted spans are cut to their first words: a whole sentence in quotes
# would match only itself.
MAX_PHRASE_WORDS: Final = 6

# How the two queries appear together in `query_used` when both were sent.
QUERY_SEPARATOR: Final = " ; "

# Straight and typographic double quotes open and close a phrase; any of them
# closes the one an other opened, since users mix them when pasting.
_QUOTE: Final = re.compile(r"[\"\u201c\u201d\u201e\u00ab\u00bb]")

# Words so common in arXiv titles and abstracts that, OR-ed, they match a large
# part of a category, and that AND-ed restrict little. Casefolded. A hyphenated
# word is generic when all its parts are generic words or stopwords ("LLM-based").
GENERIC_WORDS: Final = frozenset(
    # A word list reads better as text than as one word a line.
    """
    ai algorithm algorithms analysis application applications approach approaches
    art artificial based benchmark benchmarks better case data dataset datasets
    deep effective efficient evaluating evaluation framework frameworks general
    generation generative improve improved improving intelligence language large
    learning llm llms machine method methods model modeling modelling models
    network networks neural new novel paper performance problem problems
    research result results review robust state study studies survey system
    systems task tasks technique techniques text toward towards use used using
    via work
    """.split()  # noqa: SIM905
)


@dataclass(frozen=True)
class SearchTerm:
    """One thing to look for: a word, or a phrase the user quoted (its words, space-joined)."""

    text: str
    phrase: bool
    generic: bool

    @property
    def clause(self) -> str:
        # Safe inside quotes: `text` is only words (letters, digits, inner - and .) and spaces.
        return f'all:"{self.text}"'


@dataclass(frozen=True)
class SearchPlan:
    """The arXiv searches for one request, and when to send the second.

    Attributes:
        precise: the search_query sent first.
        broad: the search_query sent when the precise one finds fewer than
            `enough` papers; None when it would find nothing more (one term).
        max_results: how many papers each request asks for (the pool size); a
            precise answer this large makes the broad query unnecessary.
    """

    precise: str
    broad: str | None
    max_results: int

    def needs_broad(self, precise_results: int) -> bool:
        """Whether the broad query is worth a request, given what the precise one returned."""
        return self.broad is not None and precise_results < self.max_results


def plan_search(
    query: str,
    categories: Sequence[str] = (),
    start_date: date | None = None,
    end_date: date | None = None,
    *,
    pool_size: int,
    today: date | None = None,
) -> SearchPlan:
    """The precise and broad arXiv queries for a request, with the pool size.

    Args:
        query: the user's free text; "double-quoted" spans are searched as phrases.
        categories: arXiv categories such as `cs.CL`; a paper matches any of them.
        start_date: earliest first-submission date, inclusive; None means open.
        end_date: latest first-submission date, inclusive; None means up to `today`.
        pool_size: how many candidates the search should gather (ARXIV_CANDIDATE_FACTOR
            x max_papers, capped by ARXIV_MAX_CANDIDATES); each request asks for
            this many, and the broad one is sent only if the precise one returns fewer.
        today: the current UTC date, injectable for tests; defaults to the clock.

    Raises:
        ValueError: the query has no letter or digit, a category is not an arXiv
            category, start_date is after end_date, or pool_size is below 1.
    """
    if pool_size < 1:
        raise ValueError(f"pool_size must be 1 or more, got {pool_size}")
    terms = plan_terms(query)
    precise_terms = _most_specific(terms, MAX_PRECISE_TERMS)
    specific = [term for term in terms if not term.generic]
    broad_terms = _most_specific(_with_phrase_words(specific or terms), MAX_TERMS)

    def filtered(text_clause: str) -> str:
        return with_filters(text_clause, categories, start_date, end_date, today=today)

    precise = filtered(all_of([term.clause for term in precise_terms]))
    broad = filtered(any_of([term.clause for term in broad_terms]))
    return SearchPlan(
        precise=precise,
        # One term (or one phrase) OR-ed is the precise query again: nothing more to find.
        broad=None if broad == precise else broad,
        max_results=pool_size,
    )


def plan_terms(query: str) -> list[SearchTerm]:
    """The phrases and content words of `query`, in order, without duplicates.

    A double-quoted span (straight or typographic quotes) is one phrase of its
    words; an unmatched quote is ignored. Outside phrases, stopwords and arXiv's
    boolean operators are dropped; when nothing else is left ("to be or not to
    be") the words themselves are kept, as `tasks.arxiv_query.search_terms` does.

    Raises:
        ValueError: `query` contains no letter or digit.
    """
    pieces = _QUOTE.split(query)
    # Odd pieces sit between two quotes; a last odd piece has no closing quote.
    closed = len(pieces) if len(pieces) % 2 == 1 else len(pieces) - 1
    found: list[SearchTerm] = []
    loose: list[str] = []
    for index, piece in enumerate(pieces):
        words = query_words(piece)
        if index % 2 == 1 and index < closed and len(words) > 1:
            found.append(SearchTerm(" ".join(words[:MAX_PHRASE_WORDS]), phrase=True, generic=False))
        else:
            found.extend(SearchTerm(word, phrase=False, generic=False) for word in words)
            loose.extend(words)
    if not found:
        raise ValueError(f"query {query!r} has no letter or digit to search for")

    has_phrase = any(term.phrase for term in found)
    keep = _content_words(loose, has_phrase=has_phrase)
    terms = [
        term if term.phrase else SearchTerm(term.text, False, _is_generic(term.text))
        for term in found
        if term.phrase or term.text.casefold() in keep
    ]
    unique: dict[str, SearchTerm] = {}
    for term in terms:
        unique.setdefault(term.text.casefold(), term)
    return list(unique.values())


def joined_queries(queries: Sequence[str]) -> str:
    """The search_queries sent for one job, as `query_used` shows them (QUERY_SEPARATOR)."""
    return QUERY_SEPARATOR.join(queries)


def _content_words(words: Sequence[str], *, has_phrase: bool) -> set[str]:
    """Casefolded words worth searching for: not stopwords nor operators, unless nothing is."""
    # A quoted phrase is content enough: the stopwords around it are dropped.
    return {word.casefold() for word in searchable_words(words, fallback=not has_phrase)}


def _is_generic(word: str) -> bool:
    parts = query_word_parts(word)
    return all(part in GENERIC_WORDS or part in SEARCH_STOPWORDS for part in parts) and any(
        part in GENERIC_WORDS for part in parts
    )


def _with_phrase_words(terms: Sequence[SearchTerm]) -> list[SearchTerm]:
    """The terms, each phrase followed by its own specific words (the phrase relaxed).

    OR-ed, a paper that has the phrase then matches more terms than one that has
    a single word of it, so arXiv's relevance order still puts it first.
    """
    relaxed: dict[str, SearchTerm] = {}
    for term in terms:
        relaxed.setdefault(term.text.casefold(), term)
        if term.phrase:
            for word in term.text.split(" "):
                folded = word.casefold()
                if folded not in SEARCH_STOPWORDS | BOOLEAN_OPERATORS and not _is_generic(word):
                    relaxed.setdefault(folded, SearchTerm(word, phrase=False, generic=False))
    return list(relaxed.values())


def _most_specific(terms: Sequence[SearchTerm], limit: int) -> list[SearchTerm]:
    """At most `limit` terms, phrases then specific words then generic ones, in query order."""
    if len(terms) <= limit:
        return list(terms)
    by_priority = sorted(range(len(terms)), key=lambda i: (not terms[i].phrase, terms[i].generic))
    chosen = sorted(by_priority[:limit])
    return [terms[i] for i in chosen]

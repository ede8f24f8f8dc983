"""Turn a user's free text, categories and date range into an arXiv `search_query`.

The text is untrusted: a user who types `") OR all:x` or `cat:hep-th` must not
change the structure of the query we send. So we never pass characters through
that mean something to arXiv's Lucene-style parser; each kept word becomes a
quoted phrase `all:"word"`. How the phrases combine is `tasks.query_planner`'s
choice (AND-ed for the precise query, the specific ones OR-ed for the broad
one), built from the pieces here (`any_of`, `all_of`, `with_filters`).
`build_search_query` ORs every kept word: the broadest query, which the
planner benchmark (`python -m tests.bench.planner`) measures the planner against.

    >>> build_search_query("Retrieval-augmented generation for GPT-4", ["cs.CL"])
    '(all:"Retrieval-augmented" OR all:"generation" OR all:"GPT-4") AND cat:cs.CL'

A word is a `tasks.text_terms.QUERY_WORD`: letters and digits, with inner
hyphens and dots kept ("GPT-4", "3.5").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Final

from tasks.text_terms import SEARCH_STOPWORDS, query_words

# arXiv's collection starts in August 1991; an open start date means "from the beginning".
ARXIV_FIRST_DAY: Final = date(1991, 1, 1)
MAX_TERMS: Final = 12
# arXiv refuses max_results above 2000 per request.
MAX_RESULTS_PER_REQUEST: Final = 2000

# arXiv's boolean operators: typed as words they would be read as operators.
BOOLEAN_OPERATORS: Final = frozenset({"and", "or", "andnot", "not"})

# Same shape as schemas.research's category check: archive and optional subject class.
_CATEGORY: Final = re.compile(r"^[a-z][a-z-]{0,15}(\.[A-Za-z][A-Za-z-]{0,15})?$")


def build_search_query(
    query: str,
    categories: Sequence[str] = (),
    start_date: date | None = None,
    end_date: date | None = None,
    *,
    today: date | None = None,
) -> str:
    """Build the exact arXiv `search_query` string for a research request.

    Args:
        query: the user's free text; only its words are used, never its syntax.
        categories: arXiv categories such as `cs.CL`; a paper matches any of them.
        start_date: earliest first-submission date, inclusive; None means open.
        end_date: latest first-submission date, inclusive; None means up to `today`.
        today: the current UTC date, injectable for tests; defaults to the clock.

    Returns:
        The terms OR-ed together, AND-ed with the categories and the date range,
        unencoded (the HTTP client percent-encodes it).

    Raises:
        ValueError: the query has no letter or digit, a category is not an arXiv
            category, or start_date is after end_date.
    """
    return with_filters(
        any_of([f'all:"{term}"' for term in search_terms(query)]),
        categories,
        start_date,
        end_date,
        today=today,
    )


def with_filters(
    text_clause: str,
    categories: Sequence[str] = (),
    start_date: date | None = None,
    end_date: date | None = None,
    *,
    today: date | None = None,
) -> str:
    """`text_clause` AND-ed with the categories (any of them) and the submittedDate range.

    Args:
        text_clause: the text part of the query, already safe, and parenthesised
            if it holds an OR (as `any_of` returns it).
        categories, start_date, end_date, today: as for `build_search_query`.

    Raises:
        ValueError: a category is not an arXiv category, or start_date is after end_date.
    """
    clauses = [text_clause]
    if categories:
        clauses.append(any_of([f"cat:{category}" for category in _checked(categories)]))
    if start_date is not None or end_date is not None:
        clauses.append(_submitted_between(start_date, end_date, today))
    return " AND ".join(clauses)


def search_terms(query: str) -> list[str]:
    """The words of `query` worth searching for: at most 12, no duplicates, no syntax.

    Stopwords and arXiv's boolean operators are dropped. When nothing else is
    left ("to be or not to be"), the words themselves are kept: quoted, even an
    operator is just a word.

    Raises:
        ValueError: `query` contains no letter or digit.
    """
    words = query_words(query)
    if not words:
        raise ValueError(f"query {query!r} has no letter or digit to search for")
    unique: dict[str, str] = {}
    for word in searchable_words(words):
        unique.setdefault(word.casefold(), word)
    return list(unique.values())[:MAX_TERMS]


def searchable_words(words: Sequence[str], *, fallback: bool = True) -> list[str]:
    """The `words` worth searching for, in order: neither stopwords nor arXiv's operators.

    With `fallback`, when none is left ("to be or not to be") the words that
    are not operators are kept, or failing those all of them: quoted, even an
    operator is just a word.
    """
    not_operators = [word for word in words if word.casefold() not in BOOLEAN_OPERATORS]
    content = [word for word in not_operators if word.casefold() not in SEARCH_STOPWORDS]
    if content or not fallback:
        return content
    return not_operators or list(words)


def build_query_params(search_query: str, max_results: int, start: int = 0) -> dict[str, str]:
    """The query parameters of one arXiv API request, sorted by relevance.

    Args:
        search_query: the string from `build_search_query`.
        max_results: how many entries to ask for (1 to 2000, arXiv's limit).
        start: offset of the first entry, for paging.

    Raises:
        ValueError: max_results or start is out of range.
    """
    if not 1 <= max_results <= MAX_RESULTS_PER_REQUEST:
        raise ValueError(f"max_results must be 1..{MAX_RESULTS_PER_REQUEST}, got {max_results}")
    if start < 0:
        raise ValueError(f"start must be 0 or more, got {start}")
    return {
        "search_query": search_query,
        "start": str(start),
        "max_results": str(max_results),
        "sortBy": "relevance",
        "sortOrder": "descending",
    }


def any_of(clauses: Sequence[str]) -> str:
    """The clauses OR-ed, in parentheses unless there is only one (as arXiv's examples write it)."""
    return clauses[0] if len(clauses) == 1 else "(" + " OR ".join(clauses) + ")"


def all_of(clauses: Sequence[str]) -> str:
    """The clauses AND-ed; no parentheses, since the filters are AND-ed to it too."""
    return " AND ".join(clauses)


def _checked(categories: Sequence[str]) -> list[str]:
    # Categories are validated upstream too; checking here keeps this function safe
    # on its own, since a category is written into the query unquoted.
    unique: dict[str, None] = {}
    for category in categories:
        if not _CATEGORY.match(category):
            raise ValueError(f"{category!r} is not an arXiv category such as cs.CL or hep-th")
        unique[category] = None
    return list(unique)


def _submitted_between(start_date: date | None, end_date: date | None, today: date | None) -> str:
    first = start_date or ARXIV_FIRST_DAY
    last = end_date or today or datetime.now(UTC).date()
    if first > last:
        raise ValueError(f"start date {first.isoformat()} is after end date {last.isoformat()}")
    # submittedDate is the first version's submission time, in minutes (GMT).
    return f"submittedDate:[{first:%Y%m%d}0000 TO {last:%Y%m%d}2359]"
